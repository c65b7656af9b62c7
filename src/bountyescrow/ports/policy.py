"""The authorization port: who may do what to which escrow."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import attrs

from bountyescrow.domain.escrow import Escrow


def _roles(roles: Iterable[str]) -> frozenset[str]:
    if isinstance(roles, str):
        raise TypeError(f"roles must be a collection of role names, not the string {roles!r}")
    return frozenset(roles)


@attrs.frozen
class Actor:
    """Who is acting: the host's user id and roles (``Actor("m1", roles={"admin"})``)."""

    id: str
    roles: frozenset[str] = attrs.field(default=frozenset(), converter=_roles)

    def has(self, role: str) -> bool:
        """True when the actor holds `role`."""
        return role in self.roles


@attrs.frozen
class Decision:
    """A policy's answer; `reason` says why a request was denied."""

    allowed: bool
    reason: str = ""

    @classmethod
    def allow(cls) -> Decision:
        """Allow the action."""
        return cls(True)

    @classmethod
    def deny(cls, reason: str) -> Decision:
        """Deny the action, saying why."""
        return cls(False, reason)


class AuthorizationPolicy(Protocol):
    """Decides whether an actor may perform an action.

    `action` is one of ``open``, ``cancel``, ``release``, ``refund``, ``reverse``,
    ``cancel_operation``, ``read``, ``register_payee``, ``onboarding_link``,
    ``clear_fraud_warning``, ``refund_frozen`` (may refund while a dispute is open).
    `escrow` is None for ``open`` and the payee actions. `params`
    holds the call's parameters plus context such as ``payee_ids`` (for ``read``) and ``now``.
    """

    def decide(
        self, actor: Actor, action: str, escrow: Escrow | None, params: Mapping[str, Any]
    ) -> Decision:
        """Return whether `actor` may perform `action`."""
        ...
