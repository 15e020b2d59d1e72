"""The reconciler contract (DESIGN.md): one key in, reality converged, a Result out.

Everything else — queueing, leases, retries with backoff, metrics — is the driver's job.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from kubebyon.db.database import Database


@dataclass(frozen=True)
class Result:
    """``requeue_after``: look again in this many seconds (default: the resync interval).
    ``status``: observed state worth keeping on the queue row (shown to operators).
    ``forget``: the desired object is gone and cleaned up; drop the key from the queue
    (kept when desired state changed meanwhile)."""

    requeue_after: float | None = None
    status: dict[str, Any] | None = None
    forget: bool = False


class TemporaryError(Exception):
    """Retry this key later with per-key exponential backoff and jitter."""


class PermanentError(Exception):
    """Record the error and stop retrying until desired state changes."""


class NotYet(Exception):
    """Jobs only: the work is progressing elsewhere (e.g. a reconciler converging the
    host). The job goes back to pending, due after ``delay`` seconds, and the attempt is
    not counted: waiting never uses up a job's attempts."""

    def __init__(self, message: str = "", *, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


@dataclass
class Context:
    db: Database
    key: str
    attempt: int  # consecutive failures before this call
    log: Any = field(default_factory=structlog.get_logger)
    wake: Callable[[str, str], Any] | None = None  # wake(reconciler, key) for follow-up work


class Reconciler(Protocol):
    name: str
    resync_interval: float
    max_concurrency: int
    timeout: float

    def keys(self, db: Database) -> AsyncIterator[str]:
        """Every key that should exist now (the resync safety net)."""
        ...

    async def reconcile(self, key: str, ctx: Context) -> Result: ...
