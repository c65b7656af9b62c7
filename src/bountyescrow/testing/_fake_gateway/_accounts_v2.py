"""The fake's Accounts v2 view of a connected account (``FakeGateway(accounts="v2")``).

A v2 account is the same account as a v1 one (the same ``acct_`` id, the same balance, v1
transfers reach it); what differs is the shape Stripe shows it in and where readiness is read:
the recipient configuration's ``stripe_balance.stripe_transfers`` capability, ``active`` once
onboarding is complete and ``restricted`` while Stripe needs information (v1 says
``inactive``). The snapshot is read from that shape, as `StripeGateway` reads Stripe's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from bountyescrow.domain.gateway_objects import AccountSnapshot
from bountyescrow.testing._fake_stripe_json import AccountRecord

#: v1 ``capabilities.transfers`` -> v2 ``stripe_transfers.status``.
_V2_STATUS: Final[Mapping[str, str]] = {"active": "active", "inactive": "restricted"}


def transfers_status(account: AccountRecord) -> str:
    """The v2 status of the account's ``stripe_balance.stripe_transfers`` capability."""
    return _V2_STATUS.get(account.transfers, account.transfers)


def account_v2_json(account: AccountRecord, *, livemode: bool) -> dict[str, Any]:
    """Render the account as ``GET /v2/core/accounts/{id}?include=configuration.recipient``."""
    status = transfers_status(account)
    details = (
        []
        if status == "active"
        else [{"code": "requirements_past_due", "resolution": "provide_info"}]
    )
    created = datetime.fromtimestamp(account.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {
        "id": account.id,
        "object": "v2.core.account",
        "applied_configurations": ["recipient"],
        "closed": account.deauthorized,
        "configuration": {
            "customer": None,
            "merchant": None,
            "recipient": {
                "applied": True,
                "capabilities": {
                    "bank_accounts": None,
                    "cards": None,
                    "stripe_balance": {
                        "payouts": None,
                        "stripe_transfers": {"status": status, "status_details": details},
                    },
                },
            },
        },
        "contact_email": account.email,
        "contact_phone": None,
        "created": created,
        "dashboard": "express",
        "defaults": None,
        "display_name": None,
        "future_requirements": None,
        "identity": {"country": account.country},
        "livemode": livemode,
        "metadata": dict(account.metadata),
        "requirements": None,
    }


def account_v2_snapshot(data: Mapping[str, Any]) -> AccountSnapshot:
    """Read readiness from a v2 account's recipient configuration, as Stripe's gateway does."""
    recipient = (data.get("configuration") or {}).get("recipient") or {}
    balance = (recipient.get("capabilities") or {}).get("stripe_balance") or {}
    status = (balance.get("stripe_transfers") or {}).get("status")
    closed = data.get("closed") is True
    return AccountSnapshot(
        ref=str(data["id"]),
        ready=status == "active" and not closed,
        metadata=dict(data.get("metadata") or {}),
        deauthorized=closed,
    )
