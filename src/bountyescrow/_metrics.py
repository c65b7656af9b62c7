"""Metrics through the OpenTelemetry metrics API (DESIGN §16), meter ``bountyescrow``.

Install ``bountyescrow[otel]`` and configure an SDK ``MeterProvider`` in the host (with the
Prometheus exporter, say): every instrument below then reports through it. Without
``opentelemetry-api`` every function here returns at once; with the API but no SDK, the API's
own no-op provider swallows the values. Nothing here touches the database: the pending gauges
report what the last `recover()` pass read anyway.

Instruments (docs/operations.md, Metrics):

- ``bountyescrow.operations`` (counter): step 3 of each gateway call, by ``kind`` and
  ``outcome`` (the operation's status after it: succeeded, failed, cancelled, pending,
  awaiting_payee).
- ``bountyescrow.webhook.events`` (counter): events through the dispatcher, by ``outcome``
  (processed, ignored, failed, not_ready, refused).
- ``bountyescrow.recovery.runs`` (counter): `recover()` passes, by ``result`` (ok, errors).
- ``bountyescrow.alerts`` (counter): alerts raised, by ``alert`` (the alert's kind).
- ``bountyescrow.operations.pending`` (observable gauge): operations pending on the library
  or the gateway, as the last `recover()` pass counted them, by ``namespace``.
- ``bountyescrow.operations.oldest_pending_age`` (observable gauge, s): the age of the oldest
  of them, by ``namespace``.
- ``bountyescrow.gateway.duration`` (histogram, s): gateway calls, by ``kind`` and, when the
  call raised, ``error.type``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from time import perf_counter
from typing import Any, TypeVar

S = TypeVar("S")
Op = TypeVar("Op")
R = TypeVar("R")

try:
    from opentelemetry import metrics as otel_metrics  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # the core install: no metrics
    otel_metrics = None  # type: ignore[assignment, unused-ignore]

METER_NAME = "bountyescrow"
#: Histogram buckets for gateway calls (s): Stripe answers in ~0.2-2 s; retries take longer.
_DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]

#: Per namespace: (pending count, oldest pending `created_at`, the service clock's `now`).
_pending: dict[str, tuple[int, datetime | None, Callable[[], datetime]]] = {}
_lock = threading.Lock()


class _Instruments:
    """The instruments, made from one meter."""

    def __init__(self, meter: Any) -> None:
        self.operations = meter.create_counter(
            "bountyescrow.operations",
            unit="{operation}",
            description="Gateway calls recorded (step 3), by operation kind and outcome",
        )
        self.webhook_events = meter.create_counter(
            "bountyescrow.webhook.events",
            unit="{event}",
            description="Webhook events through the dispatcher, by outcome",
        )
        self.recovery_runs = meter.create_counter(
            "bountyescrow.recovery.runs",
            unit="{run}",
            description="recover() passes, by result",
        )
        self.alerts = meter.create_counter(
            "bountyescrow.alerts", unit="{alert}", description="Alerts raised, by kind"
        )
        self.gateway_duration = meter.create_histogram(
            "bountyescrow.gateway.duration",
            unit="s",
            description="Duration of gateway calls, by operation kind",
            # In seconds: the SDK's default buckets are made for milliseconds.
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        meter.create_observable_gauge(
            "bountyescrow.operations.pending",
            callbacks=[_observe_pending],
            unit="{operation}",
            description="Operations pending on the library or the gateway (last recover pass)",
        )
        meter.create_observable_gauge(
            "bountyescrow.operations.oldest_pending_age",
            callbacks=[_observe_oldest_age],
            unit="s",
            description="Age of the oldest operation pending on the library or the gateway",
        )


_instruments: _Instruments | None = None


def _get() -> _Instruments | None:
    global _instruments
    if otel_metrics is None:
        return None
    if _instruments is None:
        with _lock:
            if _instruments is None:
                # Before the host sets a provider the API hands out proxies that follow it.
                _instruments = _Instruments(otel_metrics.get_meter(METER_NAME))
    return _instruments


def use_meter_provider(provider: Any | None) -> None:
    """Record through `provider` from now on (None: the global one again). For tests."""
    global _instruments
    if otel_metrics is None:
        return
    with _lock:
        _instruments = None if provider is None else _Instruments(provider.get_meter(METER_NAME))
        _pending.clear()


def operation_recorded(kind: str, outcome: str) -> None:
    """Step 3 of a gateway call recorded an operation of `kind` as `outcome` (its status)."""
    if (m := _get()) is not None:
        m.operations.add(1, {"kind": kind, "outcome": outcome})


def webhook_event(outcome: str) -> None:
    """The dispatcher answered an event: processed, ignored, failed, not_ready or refused."""
    if (m := _get()) is not None:
        m.webhook_events.add(1, {"outcome": outcome})


def recovery_run(*, errors: int) -> None:
    """A `recover()` pass ended, with `errors` errors."""
    if (m := _get()) is not None:
        m.recovery_runs.add(1, {"result": "errors" if errors else "ok"})


def alert_raised(kind: str) -> None:
    """An alert of `kind` was raised."""
    if (m := _get()) is not None:
        m.alerts.add(1, {"alert": kind})


def pending_seen(
    namespace: str, count: int, oldest: datetime | None, now: Callable[[], datetime]
) -> None:
    """What a `recover()` pass read: `count` pending operations, the oldest created at
    `oldest`. The age gauge measures from `oldest` with `now` when it is read, so it keeps
    growing if recovery stops."""
    if otel_metrics is not None:
        with _lock:
            _pending[namespace] = (count, oldest, now)


@contextmanager
def gateway_call(kind: str) -> Iterator[None]:
    """Time a gateway call for the duration histogram (the error's class when it raises)."""
    m = _get()
    if m is None:
        yield
        return
    start = perf_counter()
    attributes = {"kind": kind}
    try:
        yield
    except BaseException as exc:
        attributes["error.type"] = type(exc).__name__
        raise
    finally:
        m.gateway_duration.record(perf_counter() - start, attributes)


def timed_gateway_call(call: Callable[[S, Op], R]) -> Callable[[S, Op], R]:
    """Decorate a driver's `_call(self, op)`: its duration goes to the histogram by op kind."""

    @functools.wraps(call)
    def timed(self: S, op: Op) -> R:
        if _get() is None:
            return call(self, op)
        with gateway_call(str(getattr(getattr(op, "kind", None), "value", "unknown"))):
            return call(self, op)

    return timed


def _observations() -> list[tuple[str, int, datetime | None, Callable[[], datetime]]]:
    with _lock:
        return [(ns, *values) for ns, values in _pending.items()]


def _observe_pending(options: Any) -> Iterable[Any]:
    assert otel_metrics is not None
    for namespace, count, _, _ in _observations():
        yield otel_metrics.Observation(count, {"namespace": namespace})


def _observe_oldest_age(options: Any) -> Iterable[Any]:
    assert otel_metrics is not None
    for namespace, _, oldest, now in _observations():
        age = 0.0 if oldest is None else max((now() - oldest).total_seconds(), 0.0)
        yield otel_metrics.Observation(age, {"namespace": namespace})
