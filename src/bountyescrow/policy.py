"""The default authorization policy."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from bountyescrow.domain.escrow import Escrow
from bountyescrow.ports.policy import Actor, Decision

ADMIN = "admin"


class RoleBasedPolicy:
    """Posters act on their own escrows, admins on everything.

    - the poster opens, cancels (before funding) and releases their own escrow, and may
      cancel a release of theirs that still waits for its payee;
    - refunds and reversals after funding need the `admin` role;
    - nobody releases to the escrow's own poster;
    - reads: the poster, the escrow's payees and admins;
    - payees register themselves (or an admin does it for them);
    - `min_hold_before_release`, when set, refuses a poster's release until the money has
      been held that long (a guard against pay-in, pay-out fraud); admins are exempt.
    """

    def __init__(
        self, *, admin_role: str = ADMIN, min_hold_before_release: timedelta | None = None
    ) -> None:
        self.admin_role = admin_role
        self.min_hold_before_release = min_hold_before_release

    def decide(
        self, actor: Actor, action: str, escrow: Escrow | None, params: Mapping[str, Any]
    ) -> Decision:
        """Apply the rules above."""
        admin = actor.has(self.admin_role)
        if action in ("register_payee", "onboarding_link"):
            if admin or actor.id == params.get("payee_id"):
                return Decision.allow()
            return Decision.deny("only the payee or an admin may manage a payee account")
        if action == "open":
            if admin or actor.id == params.get("poster_id"):
                return Decision.allow()
            return Decision.deny("only the poster or an admin may open an escrow for a poster")
        if escrow is None:
            return Decision.deny(f"unknown action {action!r} without an escrow")
        poster = actor.id == escrow.poster_id
        if action == "release":
            if params.get("payee_id") == escrow.poster_id:
                return Decision.deny("releasing an escrow to its own poster is refused")
            if admin:
                return Decision.allow()
            if not poster:
                return Decision.deny("only the poster or an admin may release this escrow")
            return self._hold_guard(escrow, params.get("now"))
        if action in ("cancel", "cancel_operation"):
            if admin or poster:
                return Decision.allow()
            return Decision.deny(f"only the poster or an admin may {action.replace('_', ' ')}")
        if action in ("refund", "reverse", "clear_fraud_warning", "refund_frozen"):
            if admin:
                return Decision.allow()
            return Decision.deny(f"{action.replace('_', ' ')} needs the {self.admin_role!r} role")
        if action == "read":
            if admin or poster or actor.id in params.get("payee_ids", ()):
                return Decision.allow()
            return Decision.deny("only the poster, the escrow's payees and admins may read it")
        return Decision.deny(f"unknown action {action!r}")

    def _hold_guard(self, escrow: Escrow, now: datetime | None) -> Decision:
        hold = self.min_hold_before_release
        if hold is None or now is None or escrow.funded_at is None:
            return Decision.allow()
        if now - escrow.funded_at < hold:
            return Decision.deny(
                f"money must be held {hold} before release; "
                f"funded at {escrow.funded_at:%Y-%m-%d %H:%M}"
            )
        return Decision.allow()
