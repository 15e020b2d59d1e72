"""Component health, probed in the background so that ``/healthz`` costs nothing.

Load balancers and kubelets poll health aggressively; answering from the last probe
keeps that traffic off the database while still turning 503 within a second or two
of the database going away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kubebyon.db.database import Database


@dataclass
class ProbeResult:
    ok: bool = False
    detail: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0  # monotonic


class HealthMonitor:
    def __init__(
        self,
        db: Database,
        *,
        runtime_health: Callable[[], dict[str, Any]] | None = None,
        host_cluster_configured: bool = False,
        host_probe: Callable[[], Awaitable[object]] | None = None,
        interval: float = 1.0,
        timeout: float = 2.0,
        host_interval: float = 10.0,
    ) -> None:
        self.db = db
        self.runtime_health = runtime_health
        self.host_probe = host_probe
        self.interval = interval
        self.timeout = timeout
        self.host_interval = host_interval
        self.database = ProbeResult()
        # Until the first probe answers, a configured host counts as configured.
        self.host_cluster: dict[str, Any] = {
            "status": "configured" if host_cluster_configured else "not_configured"
        }
        self._wake = asyncio.Event()

    async def probe_database(self) -> ProbeResult:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                await self.db.fetchval("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - any failure means unavailable
            result = ProbeResult(False, {"status": "unavailable", "error": type(exc).__name__})
        else:
            latency = round((time.perf_counter() - started) * 1000, 2)
            result = ProbeResult(True, {"status": "ok", "latency_ms": latency})
        result.at = time.monotonic()
        self.database = result
        return result

    async def probe_host(self) -> None:
        """``configured`` while the host API answers, ``unreachable`` (with the error's
        type) while it does not; never a reason to fail /healthz."""
        if self.host_probe is None:
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self.host_probe()
        except Exception as exc:  # noqa: BLE001 - any failure means unreachable
            self.host_cluster = {"status": "unreachable", "error": type(exc).__name__}
        else:
            self.host_cluster = {"status": "configured"}

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._probe_database_forever())
            if self.host_probe is not None:
                group.create_task(self._probe_host_forever())

    async def _probe_host_forever(self) -> None:
        while True:
            await self.probe_host()
            await asyncio.sleep(self.host_interval)

    async def _probe_database_forever(self) -> None:
        while True:
            await self.probe_database()
            self._wake.clear()
            try:
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, checks) from the latest probes."""
        checks: dict[str, Any] = {}
        db = self.database
        stale = time.monotonic() - db.at > self.interval + self.timeout + 1
        if stale and db.ok:
            checks["database"] = {"status": "unavailable", "error": "probe overdue"}
        else:
            checks["database"] = db.detail or {"status": "unavailable", "error": "not probed yet"}
        healthy = db.ok and not stale
        if self.runtime_health is not None:
            rt = self.runtime_health()
            checks["reconcilers"] = {
                "status": "ok" if rt["ok"] else "unavailable",
                **{k: v for k, v in rt.items() if k != "ok"},
            }
            healthy = healthy and rt["ok"]
        # The host cluster is reported, never a failure of this process: without one
        # (not_configured) or while it is unreachable, clusters wait and say why.
        checks["host_cluster"] = dict(self.host_cluster)
        return healthy, checks
