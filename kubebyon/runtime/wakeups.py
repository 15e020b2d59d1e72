"""One LISTEN connection per process; NOTIFY payloads name the loop to wake.

The connection is re-established when the database restarts or the socket dies; after
a reconnect every loop is woken, since notifications sent meanwhile were lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import structlog

from kubebyon import metrics
from kubebyon.db.database import WAKEUP_CHANNEL, connect

log = structlog.get_logger("kubebyon.runtime.wakeups")


class WakeupListener:
    def __init__(
        self,
        dsn: str,
        on_wake: Callable[[str], None],
        on_reconnect: Callable[[], None],
        *,
        check_interval: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._on_wake = on_wake
        self._on_reconnect = on_reconnect
        self._check_interval = check_interval
        self._stopping = asyncio.Event()
        self.connected = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self._on_wake(str(payload))

    async def run(self) -> None:
        delay = 0.2
        first = True
        while not self._stopping.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(self._dsn)
                await conn.add_listener(WAKEUP_CHANNEL, self._notified)
                self.connected.set()
                metrics.LISTENER_CONNECTED.set(1)
                if not first:
                    metrics.LISTENER_RECONNECTS.inc()
                    log.info("wakeup listener reconnected")
                first = False
                delay = 0.2
                self._on_reconnect()
                while not self._stopping.is_set():
                    # A liveness probe: a dead socket or restarted server raises here.
                    try:
                        async with asyncio.timeout(self._check_interval):
                            await self._stopping.wait()
                    except TimeoutError:
                        async with asyncio.timeout(self._check_interval):
                            await conn.execute("SELECT 1")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("wakeup listener lost its connection", error=str(exc), retry_in=delay)
            finally:
                self.connected.clear()
                metrics.LISTENER_CONNECTED.set(0)
                if conn is not None:
                    conn.terminate()
            if self._stopping.is_set():
                return
            try:
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            except TimeoutError:
                pass
            delay = min(delay * 2, 10.0)
