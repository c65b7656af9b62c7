"""Payees: the hunters who receive money, each with a connected account at the gateway."""

from __future__ import annotations

from datetime import datetime

import attrs


@attrs.frozen
class Payee:
    """A registered payee. `ready` is true when the account can receive transfers."""

    id: str
    account_ref: str
    ready: bool
    country: str
    email: str | None = attrs.field(default=None, repr=False)
    created_at: datetime | None = None
    updated_at: datetime | None = None
