"""A Torrust-tracker SQLite database for tests, benchmarks and the demo.

Schema as the tracker creates it (packages/tracker-core, SQLite driver), plus
the `torrent_aggregate_metrics` table of newer versions. The invariant the
writer keeps: sum(torrents.completed) == the `torrents_downloads_total` metric,
both changed in the same transaction; a torn copy breaks it.
"""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS whitelist (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    info_hash TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS torrents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    info_hash TEXT NOT NULL UNIQUE,
    completed INTEGER DEFAULT 0 NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    valid_until INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS torrent_aggregate_metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    metric_name TEXT NOT NULL UNIQUE,
    value INTEGER DEFAULT 0 NOT NULL
);
"""
METRIC = "torrents_downloads_total"


def info_hash(n: int) -> str:
    """The n-th deterministic info-hash (40 hex digits)."""
    return f"{n:040x}"


def create_tracker_db(path: Path, rows: int = 1000, *, wal: bool = True, keys: int = 50,
                      whitelist: int = 20, pad: int = 0, seed: int = 1) -> Path:
    """Create a tracker database with `rows` torrents; pad>0 adds a blob per row to grow it."""
    path = Path(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=" + ("WAL" if wal else "DELETE"))
    conn.executescript(SCHEMA)
    if pad:
        conn.execute("CREATE TABLE IF NOT EXISTS padding (id INTEGER PRIMARY KEY, data BLOB)")
    rng = random.Random(seed)
    conn.execute("BEGIN")
    total = 0
    batch = []
    for n in range(rows):
        completed = rng.randint(0, 50)
        total += completed
        batch.append((info_hash(n), completed))
        if len(batch) >= 10000:
            conn.executemany("INSERT INTO torrents(info_hash, completed) VALUES (?, ?)", batch)
            batch.clear()
    conn.executemany("INSERT INTO torrents(info_hash, completed) VALUES (?, ?)", batch)
    if pad:
        blob = os.urandom(pad)
        conn.executemany("INSERT INTO padding(data) VALUES (?)", ((blob,) for _ in range(rows)))
    conn.executemany("INSERT INTO keys(key, valid_until) VALUES (?, ?)",
                     ((f"key{n:028d}", 2_000_000_000 + n) for n in range(keys)))
    conn.executemany("INSERT INTO whitelist(info_hash) VALUES (?)",
                     ((info_hash(10**12 + n),) for n in range(whitelist)))
    conn.execute("INSERT INTO torrent_aggregate_metrics(metric_name, value) VALUES (?, ?)",
                 (METRIC, total))
    conn.execute("COMMIT")
    conn.close()
    return path


def invariant(conn: sqlite3.Connection) -> tuple[int, int]:
    """(sum of completed, the aggregate metric): equal in any consistent copy."""
    total = conn.execute("SELECT coalesce(sum(completed), 0) FROM torrents").fetchone()[0]
    metric = conn.execute("SELECT value FROM torrent_aggregate_metrics WHERE metric_name = ?",
                          (METRIC,)).fetchone()[0]
    return total, metric


def open_copy(path: Path) -> sqlite3.Connection:
    """Open a backup copy read-only without creating anything beside it."""
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
