"""Content-addressed cache in one sqlite file (scans now; LLM calls and executions later).

A key is the SHA-256 of everything that determines the answer — for a scan: code, language,
scanner, tool version and rule-pack hash — so a cache hit is always correct and a tool upgrade
or rule change simply misses. Values are JSON. Safe to share between threads.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from vul2safe.config import home


def content_key(*parts: str) -> str:
    """Hash parts unambiguously (length-prefixed, so ``("ab","c") != ("a","bc")``)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


class Cache:
    """``namespace`` + ``key`` → JSON value."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or home() / "cache.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS entries (namespace TEXT NOT NULL, key TEXT NOT NULL, "
            "value TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (namespace, key))"
        )
        self._conn.commit()

    def get(self, namespace: str, key: str) -> Any | None:
        return self.get_many(namespace, [key]).get(key)

    def get_many(self, namespace: str, keys: Iterable[str]) -> dict[str, Any]:
        """One query per 500 keys: a 10k-sample re-scan must not pay 10k round trips."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, value FROM entries WHERE namespace = ? AND key IN ({marks})",
                    [namespace, *chunk],
                ).fetchall()
                found.update((key, json.loads(value)) for key, value in rows)
        return found

    def put(self, namespace: str, key: str, value: Any) -> None:
        self.put_many(namespace, {key: value})

    def put_many(self, namespace: str, values: Mapping[str, Any]) -> None:
        now = time.time()
        rows = [(namespace, key, json.dumps(value), now) for key, value in values.items()]
        with self._lock:
            self._conn.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)", rows)
            self._conn.commit()

    def stats(self) -> dict[str, dict[str, float]]:
        """Per namespace: entry count, bytes of stored values, oldest and newest entry time."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT namespace, COUNT(*), SUM(LENGTH(value)), MIN(created), MAX(created) "
                "FROM entries GROUP BY namespace ORDER BY namespace"
            ).fetchall()
        return {
            name: {"entries": count, "bytes": size or 0, "oldest": oldest, "newest": newest}
            for name, count, size, oldest, newest in rows
        }

    def clear(self, namespace: str | None = None) -> int:
        """Delete every entry (or one namespace's); returns how many were deleted."""
        with self._lock:
            if namespace is None:
                deleted = self._conn.execute("DELETE FROM entries").rowcount
            else:
                deleted = self._conn.execute(
                    "DELETE FROM entries WHERE namespace = ?", (namespace,)
                ).rowcount
            self._conn.commit()
            self._conn.execute("VACUUM")  # give the space back: clearing is asked to free disk
        return deleted

    def close(self) -> None:
        with self._lock:
            self._conn.close()
