"""`asgi_app` and `wsgi_app`: the dispatcher behind plain ASGI 3 and WSGI callables."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from wsgiref.util import setup_testing_defaults

import attrs
import httpx
import pytest

from bountyescrow import EscrowService, EscrowStatus
from bountyescrow.testing import FakeGateway, InMemoryStore
from bountyescrow.webhooks import WebhookDispatcher, asgi_app, wsgi_app

from .support import JSON, nothing_written, open_escrow, payload_of, signed


@pytest.fixture
def paid(service: EscrowService, fake: FakeGateway) -> JSON:
    esc = open_escrow(service)
    assert esc.payment_ref is not None
    fake.pay(esc.payment_ref)
    return payload_of(fake, "payment_intent.succeeded")


def is_funded(service: EscrowService) -> bool:
    [esc] = service.find(bounty_id="b1")
    return esc.status is EscrowStatus.FUNDED


# --- ASGI ------------------------------------------------------------------------------------


@attrs.define
class AsgiResult:
    status: int | None = None
    headers: dict[bytes, bytes] = attrs.Factory(dict)
    body: bytes = b""
    received: int = 0  # how many request messages the app read


def call_asgi(
    app: Any,
    *,
    method: str = "POST",
    path: str = "/stripe/webhooks",
    headers: Sequence[tuple[bytes, bytes]] = (),
    chunks: Sequence[bytes] = (b"",),
) -> AsgiResult:
    """Drive one HTTP request through an ASGI app, as a server would."""
    result = AsgiResult()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": list(headers),
    }
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        result.received += 1
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            result.status = message["status"]
            result.headers = dict(message["headers"])
        else:
            result.body += message.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return result


def asgi_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in headers.items()]


def asgi_request(fake: FakeGateway, payload: JSON, **signing: Any) -> dict[str, Any]:
    """`call_asgi` keywords for the payload signed by the fake, sent in one chunk."""
    body, headers = signed(fake, payload, **signing)
    return {"headers": asgi_headers(headers), "chunks": [body]}


class TestAsgi:
    def test_a_signed_post_is_applied(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher, paid: JSON
    ) -> None:
        result = call_asgi(asgi_app(dispatcher), **asgi_request(fake, paid))
        assert result.status == 200
        assert result.body == b'{"status":"processed","event":"evt_0001"}'
        assert result.headers[b"content-type"] == b"application/json"
        assert result.headers[b"content-length"] == str(len(result.body)).encode()
        assert is_funded(service)

    def test_the_body_is_read_in_chunks(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher, paid: JSON
    ) -> None:
        body, headers = signed(fake, paid)
        chunks = [body[i : i + 100] for i in range(0, len(body), 100)]
        result = call_asgi(asgi_app(dispatcher), headers=asgi_headers(headers), chunks=chunks)
        assert result.status == 200
        assert result.received == len(chunks)
        assert is_funded(service)

    def test_the_dispatcher_runs_in_a_worker_thread(
        self, fake: FakeGateway, dispatcher: WebhookDispatcher, paid: JSON
    ) -> None:
        threads: list[threading.Thread] = []
        handle = dispatcher.handle

        def spy(body: bytes, headers: Any) -> Any:
            threads.append(threading.current_thread())
            return handle(body, headers)

        dispatcher.handle = spy  # type: ignore[method-assign]
        call_asgi(asgi_app(dispatcher), **asgi_request(fake, paid))
        assert len(threads) == 1
        assert threads[0] is not threading.main_thread()

    @pytest.mark.parametrize("method", ["GET", "PUT", "HEAD", "DELETE"])
    def test_only_post_is_answered(
        self,
        method: str,
        service: EscrowService,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
    ) -> None:
        with nothing_written(store, service):
            result = call_asgi(asgi_app(dispatcher), method=method)
        assert result.status == 405
        assert result.headers[b"allow"] == b"POST"
        assert result.body == b'{"error":"method_not_allowed"}'
        assert result.received == 0

    def test_a_body_announced_too_large_is_not_read(
        self, service: EscrowService, dispatcher: WebhookDispatcher, store: InMemoryStore
    ) -> None:
        app = asgi_app(dispatcher, max_body_bytes=1_000)
        with nothing_written(store, service):
            result = call_asgi(app, headers=[(b"content-length", b"5000")], chunks=[b"x" * 5000])
        assert (result.status, result.body) == (400, b'{"error":"body_too_large"}')
        assert result.received == 0

    def test_reading_stops_at_the_cap(
        self,
        service: EscrowService,
        fake: FakeGateway,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
        paid: JSON,
    ) -> None:
        body, headers = signed(fake, paid)
        app = asgi_app(dispatcher, max_body_bytes=250)
        chunks = [body[i : i + 100] for i in range(0, len(body), 100)]
        with nothing_written(store, service):
            result = call_asgi(app, headers=asgi_headers(headers), chunks=chunks)
        assert (result.status, result.body) == (400, b'{"error":"body_too_large"}')
        assert result.received == 3  # 300 bytes read, then it stopped
        assert len(chunks) > 3

    def test_a_bad_signature_is_a_400(
        self,
        service: EscrowService,
        fake: FakeGateway,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
        paid: JSON,
    ) -> None:
        request = asgi_request(fake, paid, secret="whsec_wrong")
        with nothing_written(store, service):
            result = call_asgi(asgi_app(dispatcher), **request)
        assert (result.status, result.body) == (400, b'{"error":"signature_mismatch"}')

    def test_a_path_limits_what_is_answered(
        self, fake: FakeGateway, dispatcher: WebhookDispatcher, paid: JSON
    ) -> None:
        app = asgi_app(dispatcher, path="/stripe/webhooks")
        request = asgi_request(fake, paid)
        elsewhere = call_asgi(app, path="/other", **request)
        assert (elsewhere.status, elsewhere.body) == (404, b'{"error":"not_found"}')
        here = call_asgi(app, **request)
        assert here.status == 200

    def test_a_client_that_disconnects_gets_nothing(
        self, service: EscrowService, dispatcher: WebhookDispatcher, store: InMemoryStore
    ) -> None:
        with nothing_written(store, service):
            result = call_asgi(asgi_app(dispatcher), chunks=[])
        assert result.status is None

    def test_lifespan_is_acknowledged(self, dispatcher: WebhookDispatcher) -> None:
        sent: list[str] = []
        incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

        async def receive() -> dict[str, Any]:
            return incoming.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])

        asyncio.run(asgi_app(dispatcher)({"type": "lifespan"}, receive, send))
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

    def test_websockets_are_refused(self, dispatcher: WebhookDispatcher) -> None:
        async def receive() -> dict[str, Any]:
            raise AssertionError("not read")

        async def send(message: dict[str, Any]) -> None:
            raise AssertionError("nothing to send")

        with pytest.raises(ValueError, match="HTTP only"):
            asyncio.run(asgi_app(dispatcher)({"type": "websocket"}, receive, send))

    def test_through_httpx_asgi_transport(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher, paid: JSON
    ) -> None:
        body, headers = signed(fake, paid)

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=asgi_app(dispatcher))
            async with httpx.AsyncClient(transport=transport, base_url="http://hooks") as client:
                return await client.post("/stripe/webhooks", content=body, headers=headers)

        response = asyncio.run(go())
        assert response.status_code == 200
        assert response.json() == {"status": "processed", "event": "evt_0001"}
        assert is_funded(service)


# --- WSGI ------------------------------------------------------------------------------------


class NoReading(io.RawIOBase):
    """A wsgi.input that fails the test if the app reads it."""

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body was read")


@attrs.define
class WsgiResult:
    status: str
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> int:
        return int(self.status.split()[0])


def call_wsgi(
    app: Any,
    *,
    method: str = "POST",
    path: str = "/stripe/webhooks",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    content_length: str | None = "auto",
    stream: Any = None,
    **environ: Any,
) -> WsgiResult:
    """Call a WSGI app with a wsgiref-style environ."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "wsgi.input": stream if stream is not None else io.BytesIO(body),
        **environ,
    }
    if content_length == "auto":
        env["CONTENT_LENGTH"] = str(len(body))
    elif content_length is not None:
        env["CONTENT_LENGTH"] = content_length
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        env[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
    setup_testing_defaults(env)
    captured: list[Any] = []

    def start_response(
        status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        captured.append((status, dict(response_headers)))
        return lambda data: None

    chunks: Iterable[bytes] = app(env, start_response)
    [(status, response_headers)] = captured
    return WsgiResult(status, response_headers, b"".join(chunks))


def refused_unread(
    app: Any, store: InMemoryStore, service: EscrowService, content_length: str
) -> bytes:
    """Call `app` with a body it must not read; it answers 400 and nothing is written."""
    with nothing_written(store, service):
        result = call_wsgi(app, content_length=content_length, stream=NoReading())
    assert result.code == 400
    return result.body


def call_terminated(app: Any, body: bytes, headers: dict[str, str]) -> WsgiResult:
    """Call `app` the way a de-chunking server does: no length, ``wsgi.input_terminated``."""
    environ: dict[str, Any] = {"wsgi.input_terminated": True}
    return call_wsgi(app, body=body, headers=headers, content_length=None, **environ)


class TestWsgi:
    def test_a_signed_post_is_applied(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher, paid: JSON
    ) -> None:
        body, headers = signed(fake, paid)
        result = call_wsgi(wsgi_app(dispatcher), body=body, headers=headers)
        assert result.status == "200 OK"
        assert result.body == b'{"status":"processed","event":"evt_0001"}'
        assert result.headers["Content-Length"] == str(len(result.body))
        assert is_funded(service)

    @pytest.mark.parametrize("method", ["GET", "PUT", "HEAD"])
    def test_only_post_is_answered(
        self,
        method: str,
        service: EscrowService,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
    ) -> None:
        with nothing_written(store, service):
            result = call_wsgi(wsgi_app(dispatcher), method=method, stream=NoReading())
        assert result.status == "405 Method Not Allowed"
        assert result.headers["Allow"] == "POST"

    def test_a_content_length_over_the_cap_is_refused_unread(
        self, service: EscrowService, dispatcher: WebhookDispatcher, store: InMemoryStore
    ) -> None:
        app = wsgi_app(dispatcher, max_body_bytes=1_000)
        assert refused_unread(app, store, service, "1001") == b'{"error":"body_too_large"}'

    def test_the_dispatcher_cap_is_the_default(
        self, dispatcher: WebhookDispatcher, service: EscrowService, store: InMemoryStore
    ) -> None:
        length = str(dispatcher.max_body_bytes + 1)
        refused = refused_unread(wsgi_app(dispatcher), store, service, length)
        assert refused == b'{"error":"body_too_large"}'

    def test_an_invalid_content_length_is_refused(
        self, service: EscrowService, dispatcher: WebhookDispatcher, store: InMemoryStore
    ) -> None:
        refused = refused_unread(wsgi_app(dispatcher), store, service, "12abc")
        assert refused == b'{"error":"invalid_content_length"}'

    def test_only_content_length_bytes_are_read(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher, paid: JSON
    ) -> None:
        """Bytes after the announced length belong to the next request on the connection."""
        body, headers = signed(fake, paid)
        result = call_wsgi(
            wsgi_app(dispatcher),
            body=body + b"GET / HTTP/1.1\r\n",
            headers=headers,
            content_length=str(len(body)),
        )
        assert result.code == 200

    def test_without_a_length_nothing_is_read(
        self,
        service: EscrowService,
        fake: FakeGateway,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
        paid: JSON,
    ) -> None:
        body, headers = signed(fake, paid)
        with nothing_written(store, service):
            result = call_wsgi(
                wsgi_app(dispatcher), body=body, headers=headers, content_length=None
            )
        assert (result.code, result.body) == (400, b'{"error":"signature_mismatch"}')

    def test_a_terminated_input_is_read_to_its_end(
        self, service: EscrowService, fake: FakeGateway, dispatcher: WebhookDispatcher, paid: JSON
    ) -> None:
        """Servers that de-chunk a request set wsgi.input_terminated instead of a length."""
        body, headers = signed(fake, paid)
        result = call_terminated(wsgi_app(dispatcher), body, headers)
        assert result.code == 200
        assert is_funded(service)

    def test_a_terminated_input_over_the_cap_is_refused(
        self,
        service: EscrowService,
        fake: FakeGateway,
        dispatcher: WebhookDispatcher,
        store: InMemoryStore,
        paid: JSON,
    ) -> None:
        body, headers = signed(fake, paid)
        app = wsgi_app(dispatcher, max_body_bytes=100)
        with nothing_written(store, service):
            result = call_terminated(app, body, headers)
        assert (result.code, result.body) == (400, b'{"error":"body_too_large"}')

    def test_a_path_limits_what_is_answered(self, dispatcher: WebhookDispatcher) -> None:
        app = wsgi_app(dispatcher, path="/stripe/webhooks")
        result = call_wsgi(app, path="/elsewhere", stream=NoReading())
        assert (result.status, result.body) == ("404 Not Found", b'{"error":"not_found"}')


# --- both ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mount", [asgi_app, wsgi_app], ids=["asgi", "wsgi"])
@pytest.mark.parametrize("cap", [0, -1])
def test_the_cap_must_be_positive(
    dispatcher: WebhookDispatcher, mount: Callable[..., Any], cap: int
) -> None:
    with pytest.raises(ValueError, match="max_body_bytes"):
        mount(dispatcher, max_body_bytes=cap)
