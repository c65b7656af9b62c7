"""Idempotency keys for tests: every call a new request, as a host would send it."""

from __future__ import annotations

import uuid


def new_key() -> str:
    """A fresh idempotency key (money-moving calls require one)."""
    return f"test-{uuid.uuid4().hex}"
