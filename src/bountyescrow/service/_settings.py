"""Service settings, validated at the edge with pydantic."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bountyescrow.domain.currencies import CURRENCIES, MAX_AMOUNT, replacement_hint


class EscrowSettings(BaseModel):
    """Settings of an `EscrowService`. Every field has a safe default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Currencies escrows may be opened in: with `source_transaction`, a transfer must be in
    #: the charge's settlement currency, so only currencies the platform settles in work.
    settlement_currencies: frozenset[str] = frozenset({"usd"})
    #: Payment method types on every PaymentIntent.
    payment_method_types: tuple[str, ...] = ("card",)
    #: The largest amount, in minor units, one escrow or operation may hold. At most the
    #: library's own cap of eight digits (`currencies.MAX_AMOUNT`): Stripe's limits depend on
    #: the payment method, which is unknown when an escrow opens.
    max_amount: int = Field(default=MAX_AMOUNT, gt=0)
    #: How long money may be held before `nearing_max_hold` lists the escrow.
    max_hold: timedelta = timedelta(days=90)
    #: How long a caller owns an operation it is driving (DESIGN §7 `claimed_until`). It must
    #: outlast the longest gateway call (the gateway's `max_call_duration`, its own retries
    #: included), or `recover()` could resend while the first call is still in flight. None
    #: (the default): twice the gateway's `max_call_duration`, and at least 60 s.
    lease: timedelta | None = None
    #: How long idempotency keys of host calls are remembered.
    idempotency_ttl: timedelta = timedelta(hours=24)
    #: After this age a retry first looks the gateway object up (Stripe forgets keys at 24 h).
    gateway_key_window: timedelta = timedelta(hours=23)
    #: How often `recover()` polls objects whose outcome waits on the payer or the bank.
    poll_interval: timedelta = timedelta(minutes=15)
    #: How long an event naming an escrow not yet committed is answered 500 (then ignored).
    event_not_ready_window: timedelta = timedelta(minutes=10)
    #: Units of work retried on a transient storage error (deadlock, serialization).
    storage_retries: int = Field(default=5, ge=0)
    #: After this long pending on the library or the gateway, `recover()` raises the
    #: ``operation_pending_too_long`` alert for an operation, then again at each multiple.
    pending_alert_after: timedelta = timedelta(hours=1)

    @field_validator("pending_alert_after")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"pending_alert_after must be positive, got {value}")
        return value

    @field_validator("gateway_key_window")
    @classmethod
    def _inside_stripes_key_memory(cls, value: timedelta) -> timedelta:
        # Past 24 h Stripe may have forgotten the key: a resend could move the money again.
        if not timedelta(0) < value < timedelta(hours=24):
            raise ValueError(
                f"gateway_key_window must be between 0 and 24 h (Stripe keeps keys for 24 h), "
                f"got {value}"
            )
        return value

    @field_validator("max_amount")
    @classmethod
    def _within_the_librarys_cap(cls, value: int) -> int:
        # Above the cap the setting would promise amounts every request then refuses.
        if value > MAX_AMOUNT:
            raise ValueError(
                f"max_amount must be at most {MAX_AMOUNT} minor units (eight digits, the "
                f"largest amount the library sends), got {value}"
            )
        return value

    @field_validator("settlement_currencies")
    @classmethod
    def _known(cls, value: frozenset[str]) -> frozenset[str]:
        unknown = sorted(c for c in value if c not in CURRENCIES)
        if unknown:
            hints = [h for h in map(replacement_hint, unknown) if h is not None]
            raise ValueError(
                "; ".join([f"unknown currencies {unknown}: use lower-case ISO 4217 codes", *hints])
            )
        return value
