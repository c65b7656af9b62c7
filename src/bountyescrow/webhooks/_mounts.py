"""Framework-free mounts: an ASGI 3 application and a WSGI application around a dispatcher."""

from __future__ import annotations

import asyncio
import functools
import http
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

from bountyescrow.webhooks._dispatcher import WebhookDispatcher, log
from bountyescrow.webhooks._response import Failure, WebhookResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_WSGI_CHUNK = 64 * 1024


def _method_not_allowed() -> WebhookResponse:
    return WebhookResponse.refused(405, Failure.METHOD_NOT_ALLOWED, {"Allow": "POST"})


def _not_found() -> WebhookResponse:
    return WebhookResponse.refused(404, Failure.NOT_FOUND)


def _too_large() -> WebhookResponse:
    log.warning("webhook refused: %s", Failure.BODY_TOO_LARGE.value)
    return WebhookResponse.refused(400, Failure.BODY_TOO_LARGE)


def _cap(dispatcher: WebhookDispatcher, max_body_bytes: int | None) -> int:
    cap = dispatcher.max_body_bytes if max_body_bytes is None else max_body_bytes
    if isinstance(cap, bool) or not isinstance(cap, int) or cap <= 0:
        raise ValueError(f"max_body_bytes must be a positive integer, got {cap!r}")
    return cap


def _declared_length(value: str | None) -> int | None:
    """A Content-Length as an integer; None when absent; -1 when it is not a number."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    return int(value) if value.isdigit() else -1


class AsgiWebhookApp:
    """An ASGI 3 application answering Stripe webhook POSTs with a `WebhookDispatcher`.

    Built by `asgi_app`. It reads the body in chunks and stops at the cap, then runs the
    (blocking) dispatcher in a worker thread so the event loop never waits on the database
    or on Stripe.
    """

    def __init__(
        self, dispatcher: WebhookDispatcher, *, path: str | None, max_body_bytes: int
    ) -> None:
        self.dispatcher = dispatcher
        self.path = path
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (``http``; ``lifespan`` is acknowledged)."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"the webhook app serves HTTP only, not {scope['type']!r}")
        if self.path is not None and scope.get("path") != self.path:
            await self._send(send, _not_found())
            return
        if scope.get("method") != "POST":
            await self._send(send, _method_not_allowed())
            return
        headers: list[tuple[bytes, bytes]] = [
            (bytes(name), bytes(value)) for name, value in scope.get("headers") or ()
        ]
        declared = _declared_length(
            next((v.decode("latin-1") for k, v in headers if k.lower() == b"content-length"), None)
        )
        if declared is not None and declared > self.max_body_bytes:
            # Refuse before reading a byte of a body announced too large.
            await self._send(send, _too_large())
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away; nothing to answer
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await self._send(send, _too_large())
                return
            if not message.get("more_body", False):
                break
        response = await asyncio.to_thread(
            functools.partial(self.dispatcher.handle, bytes(body), headers)
        )
        await self._send(send, response)

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        # Nothing to set up or tear down; answering lets the app run as a server's root app.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _send(send: Send, response: WebhookResponse) -> None:
        headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()
        ]
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})


class WsgiWebhookApp:
    """A WSGI application answering Stripe webhook POSTs with a `WebhookDispatcher`.

    Built by `wsgi_app`. It reads at most ``CONTENT_LENGTH`` bytes and refuses a length above
    the cap without reading the body.
    """

    def __init__(
        self, dispatcher: WebhookDispatcher, *, path: str | None, max_body_bytes: int
    ) -> None:
        self.dispatcher = dispatcher
        self.path = path
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one WSGI request."""
        response = self._respond(environ)
        reason = http.HTTPStatus(response.status).phrase
        headers = [*response.headers.items(), ("Content-Length", str(len(response.body)))]
        start_response(f"{response.status} {reason}", headers)
        return [response.body]

    def _respond(self, environ: WSGIEnvironment) -> WebhookResponse:
        if self.path is not None and environ.get("PATH_INFO", "") != self.path:
            return _not_found()
        if environ.get("REQUEST_METHOD") != "POST":
            return _method_not_allowed()
        declared = _declared_length(environ.get("CONTENT_LENGTH"))
        if declared == -1:
            log.warning("webhook refused: %s", Failure.INVALID_CONTENT_LENGTH.value)
            return WebhookResponse.refused(400, Failure.INVALID_CONTENT_LENGTH)
        if declared is not None and declared > self.max_body_bytes:
            return _too_large()
        stream = environ["wsgi.input"]
        if declared is None:
            # PEP 3333: without a length read nothing, unless the server says the stream
            # ends with the body (chunked requests); then read up to one byte past the cap.
            limit = self.max_body_bytes + 1 if environ.get("wsgi.input_terminated") else 0
        else:
            limit = declared
        body = bytearray()
        while len(body) < limit:
            chunk = stream.read(min(_WSGI_CHUNK, limit - len(body)))
            if not chunk:
                break
            body += chunk
        if len(body) > self.max_body_bytes:
            return _too_large()
        headers = [
            (key[5:].replace("_", "-"), str(value))
            for key, value in environ.items()
            if key.startswith("HTTP_")
        ]
        if environ.get("CONTENT_TYPE"):
            headers.append(("Content-Type", str(environ["CONTENT_TYPE"])))
        return self.dispatcher.handle(bytes(body), headers)


def asgi_app(
    dispatcher: WebhookDispatcher, *, path: str | None = None, max_body_bytes: int | None = None
) -> AsgiWebhookApp:
    """An ASGI 3 application for the dispatcher, to mount in any ASGI framework or server.

    Args:
        dispatcher: the dispatcher that verifies and applies events.
        path: answer only this exact ``scope["path"]`` (404 otherwise); None: any path, for
            mounting under a route of the host's framework.
        max_body_bytes: body size cap (default: the dispatcher's); a larger body gets 400
            without being read past the cap.

    Only POST is answered (405 with ``Allow: POST`` otherwise). The dispatcher runs in a
    worker thread (`asyncio.to_thread`).
    """
    return AsgiWebhookApp(dispatcher, path=path, max_body_bytes=_cap(dispatcher, max_body_bytes))


def wsgi_app(
    dispatcher: WebhookDispatcher, *, path: str | None = None, max_body_bytes: int | None = None
) -> WsgiWebhookApp:
    """A WSGI application for the dispatcher, to mount in any WSGI framework or server.

    Args:
        dispatcher: the dispatcher that verifies and applies events.
        path: answer only this exact ``PATH_INFO`` (404 otherwise); None: any path.
        max_body_bytes: body size cap (default: the dispatcher's); a ``CONTENT_LENGTH`` above
            it gets 400 without the body being read.

    Only POST is answered (405 with ``Allow: POST`` otherwise).
    """
    return WsgiWebhookApp(dispatcher, path=path, max_body_bytes=_cap(dispatcher, max_body_bytes))
