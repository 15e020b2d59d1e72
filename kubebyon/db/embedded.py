"""The embedded PostgreSQL (``pgserver``) used when ``KUBEBYON_DATABASE_URL`` is unset."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


class EmbeddedPostgres:
    """One PostgreSQL 16 server whose data lives in ``<data_dir>/pg``.

    pgserver reference-counts handles across processes, so two daemons on one
    data directory share one server, and the last one to stop shuts it down.
    """

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir / "pg"
        self._server: Any = None

    def start(self) -> str:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (systemd services, CI).
            warnings.simplefilter("ignore")
            from pgserver import postgres_server

            self._server = postgres_server.get_server(self.pgdata, cleanup_mode="stop")
        uri: str = self._server.get_uri()
        return uri

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
