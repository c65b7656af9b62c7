"""Latency and call hooks.

A real gateway call takes time: while one is in flight, webhooks arrive, `recover()` runs in
another process and the clock moves on. `during_next_call` runs a test's code at that moment,
once, deterministically, through the fake's call hooks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from bountyescrow.testing._fake_gateway._failures import _MODES_BY_KIND, FailureKind

if TYPE_CHECKING:
    from bountyescrow.testing._fake_gateway._gateway import FakeGateway

#: Where a keyed call is when `FakeGateway`'s call hooks run: ``"before"`` it takes effect
#: (its key is in use), ``"after"`` (the answer is stored and on its way back: the key
#: replays it).
CallPhase = Literal["before", "after"]
#: A call hook: ``hook(kind, idempotency_key, phase)``, run without the fake's lock.
CallHook = Callable[[str, str, CallPhase], None]


def during_next_call(
    fake: FakeGateway,
    kind: FailureKind,
    callback: Callable[[], object],
    *,
    when: CallPhase = "before",
) -> None:
    """Run `callback` inside the next `kind` call Stripe executes, once.

    ``when="before"``: the request reached Stripe (its key is in use: another request with
    the same key gets ``idempotency_key_in_use``) and has not taken effect yet.
    ``when="after"``: it took effect or was refused, and its answer is stored under the key
    but has not reached the caller. A replayed answer does not count as a call.

    The callback may do anything a test does: deliver webhooks, run ``service.recover()``,
    move a `ManualClock` past the lease, a backoff or the 23 h key window, make other calls
    (they do not fire it again: it is used up before it runs).

    Raises:
        ValueError: unknown `kind` or `when`.
    """
    if kind not in _MODES_BY_KIND:
        raise ValueError(f"unknown kind {kind!r}: use one of {sorted(_MODES_BY_KIND)}")
    if when not in ("before", "after"):
        raise ValueError(f"when must be 'before' or 'after', got {when!r}")
    used = threading.Event()

    def hook(call_kind: str, key: str, phase: CallPhase) -> None:
        if call_kind != kind or phase != when:
            return
        with fake._lock:
            if used.is_set():
                return
            used.set()
            fake._call_hooks.remove(hook)
        callback()

    with fake._lock:
        fake._call_hooks.append(hook)
