"""A store wrapper that kills the 'process' at a chosen commit, for crash-injection tests."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from bountyescrow.ports.store import EscrowStore, UnitOfWork


class Crash(BaseException):
    """The process died. A BaseException, so nothing in the library can swallow it."""


class _UnitOfWork:
    def __init__(self, owner: CrashingStore, inner: UnitOfWork) -> None:
        self._owner = owner
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __enter__(self) -> _UnitOfWork:
        self._inner.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._inner.__exit__(exc_type, exc, tb)

    def commit(self) -> None:
        owner = self._owner
        owner.commits += 1
        if owner.commits == owner.crash_before:
            raise Crash(f"crashed before commit {owner.commits}")
        self._inner.commit()
        if owner.commits == owner.crash_after:
            raise Crash(f"crashed after commit {owner.commits}")


class CrashingStore:
    """Counts commits; dies just before or just after commit number `crash_before/after`."""

    def __init__(self, inner: EscrowStore) -> None:
        self.inner = inner
        self.commits = 0
        self.crash_before: int | None = None
        self.crash_after: int | None = None

    def arm(self, *, before: int | None = None, after: int | None = None) -> None:
        """Crash at the given commit, counting from now."""
        self.commits = 0
        self.crash_before = before
        self.crash_after = after

    def disarm(self) -> None:
        """Stop crashing."""
        self.crash_before = self.crash_after = None

    def unit_of_work(self) -> _UnitOfWork:
        return _UnitOfWork(self, self.inner.unit_of_work())
