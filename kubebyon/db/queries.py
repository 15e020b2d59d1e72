"""Named SQL queries, loaded once from ``sql/queries/*.sql``.

A file holds one or more queries, each introduced by a ``-- name: <name>`` line, so a
reader (or a DBA) sees the exact statement Python runs.
"""

from __future__ import annotations

import re
from pathlib import Path

QUERIES_DIR = Path(__file__).parent / "sql" / "queries"
_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse_queries(text: str, source: str) -> dict[str, str]:
    parts = _NAME.split(text)
    if parts[0].strip() and not all(
        line.startswith("--") or not line.strip() for line in parts[0].splitlines()
    ):
        raise ValueError(f"{source}: SQL before the first '-- name:' line")
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in found:
            raise ValueError(f"{source}: query {name!r} defined twice")
        found[name] = body.strip().rstrip(";")
    return found


class Queries:
    """Attribute access to every named query: ``queries.claim_keys``."""

    def __init__(self, directory: Path = QUERIES_DIR) -> None:
        self._sql: dict[str, str] = {}
        for path in sorted(directory.glob("*.sql")):
            for name, sql in parse_queries(path.read_text(), path.name).items():
                if name in self._sql:
                    raise ValueError(f"{path.name}: query {name!r} already defined elsewhere")
                self._sql[name] = sql

    def __getattr__(self, name: str) -> str:
        try:
            return self._sql[name]
        except KeyError:
            raise AttributeError(f"no SQL query named {name!r}") from None

    def names(self) -> list[str]:
        return sorted(self._sql)


QUERIES = Queries()
