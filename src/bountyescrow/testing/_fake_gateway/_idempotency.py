"""Idempotency and key expiry: how `FakeGateway` runs a keyed call as Stripe runs a request
(replay, mismatch, key in use, stored errors, injected failures) and forgets keys after 24 h.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Final, TypeVar, cast

from bountyescrow.errors import (
    GatewayError,
    GatewayUnavailableError,
    IdempotencyMismatchError,
)
from bountyescrow.testing._fake_gateway._failures import (
    _AT_ONCE,
    _failure_at_once,
    _raising,
    _refuse,
    _StoreError,
)
from bountyescrow.testing._fake_gateway._hooks import CallPhase
from bountyescrow.testing._fake_gateway._state import _FakeState, _KeyEntry

#: Stripe forgets idempotency keys after 24 hours.
KEY_LIFETIME: Final = timedelta(hours=24)

_T = TypeVar("_T")


class _KeyedCalls(_FakeState):
    """The keyed-call machinery the port's creating calls go through."""

    # --- keyed-call machinery ---------------------------------------------------------------

    def _keyed(
        self,
        kind: str,
        key: str,
        request: Mapping[str, Any],
        execute: Callable[[str | None], _T],
    ) -> _T:
        """Run `execute` under idempotency key `key`, as Stripe runs a request.

        The key is in use from the moment the request is accepted until its answer is
        stored. The call hooks run in between (``"before"``) and once the answer is stored
        (``"after"``), without the lock: other threads, and the hook itself, may call the
        fake meanwhile, and a call with the same key gets `IdempotencyKeyInUseError` before,
        the stored answer after.
        """
        fingerprint = json.dumps(request, sort_keys=True, default=str)
        with self._lock:
            request_id = self._next_id("req")
            self._forget_old_keys()
            failures = self._failures[kind]
            if failures and failures[0] in _AT_ONCE:
                raise _failure_at_once(failures.popleft(), key, request_id)
            entry = self._keys.get(key)
            if entry is not None:
                if entry.fingerprint != fingerprint:
                    raise IdempotencyMismatchError(
                        f"Keys for idempotent requests can only be used with the same "
                        f"parameters they were first used with. Try using a key other than "
                        f"{key!r} if you meant to execute a different request.",
                        code="idempotency_error",
                        request_id=request_id,
                    )
                if entry.error is not None:
                    raise entry.error.build(replayed=True, request_id=request_id)
                return cast(_T, entry.answer)
            if key in self._in_flight:
                raise _failure_at_once("key_in_use", key, request_id)
            self._in_flight.add(key)
        try:
            self._run_call_hooks(kind, key, "before")
            with self._lock:
                answer = self._execute(kind, key, fingerprint, request_id, execute)
        finally:
            with self._lock:
                self._in_flight.discard(key)
        self._run_call_hooks(kind, key, "after")
        return answer()

    def _run_call_hooks(self, kind: str, key: str, phase: CallPhase) -> None:
        with self._lock:
            hooks = list(self._call_hooks)
        for hook in hooks:
            hook(kind, key, phase)

    def _execute(
        self,
        kind: str,
        key: str,
        fingerprint: str,
        request_id: str,
        execute: Callable[[str | None], _T],
    ) -> Callable[[], _T]:
        """Take effect (or fail) and store the answer; return what hands it to the caller."""
        failures = self._failures[kind]
        mode = failures.popleft() if failures else None
        if mode in _AT_ONCE:
            # Queued while the call waited in a hook: it fails as it would have on arrival.
            return _raising(_failure_at_once(mode, key, request_id))
        try:
            _refuse(kind, mode)
            answer = execute(mode)
        except _StoreError as stored:
            self._keys[key] = _KeyEntry(fingerprint, self._clock.now(), error=stored.error)
            return _raising(stored.error.build(replayed=False, request_id=request_id))
        except GatewayError as exc:
            exc.request_id = exc.request_id or request_id
            return _raising(exc)
        self._keys[key] = _KeyEntry(fingerprint, self._clock.now(), answer=answer)
        if mode == "timeout_after_effect":
            return _raising(
                GatewayUnavailableError(
                    "Request to Stripe timed out (simulated: it took effect, the answer was lost).",
                    code="timeout",
                    request_id=request_id,
                )
            )
        return lambda: answer

    def _forget_old_keys(self) -> None:
        now = self._clock.now()
        expired = [k for k, e in self._keys.items() if now - e.first_used >= KEY_LIFETIME]
        for key in expired:
            del self._keys[key]
