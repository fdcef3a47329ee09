"""The sandbox's memory: JSON documents by (kind, key) in one SQLite file.

A file survives `make dev` restarts; None keeps everything in memory (tests). Endpoints are
async and never await between a read and the write that follows it, so the event loop makes
each read-modify-write atomic without locks.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any


class Store:
    def __init__(self, path: Path | None = None):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(":memory:" if path is None else str(path), check_same_thread=False)
        with self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS documents ("
                " kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
                " PRIMARY KEY (kind, key))"
            )

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT value FROM documents WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, kind: str, key: str, value: dict[str, Any]) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO documents (kind, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
                (kind, key, json.dumps(value, ensure_ascii=False)),
            )

    def delete(self, kind: str, key: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM documents WHERE kind = ? AND key = ?", (kind, key))

    def all(self, kind: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT value FROM documents WHERE kind = ?", (kind,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def items(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        rows = self._db.execute("SELECT key, value FROM documents WHERE kind = ?", (kind,)).fetchall()
        return [(k, json.loads(v)) for k, v in rows]

    def close(self) -> None:
        self._db.close()
