"""Tracker databases of a given size, fast, with realistic content.

`create_tracker_db` (tests/support) makes the schema, the keys, the whitelist
and `existing` torrents numbered like the writer's; the rest of the size is
torrents with random 40-hex info-hashes (like real SHA-1 hashes) inserted by
SQLite itself, which is much faster than Python and compresses like a real
tracker database (a repeated padding blob would compress to nothing).
The metric is set to sum(completed) at the end, so `invariant()` holds.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.tracker_db import METRIC, create_tracker_db  # noqa: E402

BATCH_ROWS = 200_000
BYTES_PER_ROW = 110  # measured: table row + unique index entry, page overhead included


def make_db(path: Path, size: int, *, wal: bool = True, existing: int = 10_000) -> Path:
    """Create `path` (removed first) of about `size` bytes; return it."""
    path = Path(path)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    create_tracker_db(path, rows=existing, wal=wal)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA cache_size=-1000000")  # the random-order index fits in memory
    conn.execute("PRAGMA synchronous=OFF")
    while os.path.getsize(path) + _wal_size(path) < size:
        left = max(1000, (size - os.path.getsize(path)) // BYTES_PER_ROW)
        conn.execute("BEGIN")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT OR IGNORE INTO torrents(info_hash, completed) "
            "SELECT lower(hex(randomblob(20))), abs(random()) % 51 FROM n",
            (min(BATCH_ROWS, left),))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("UPDATE torrent_aggregate_metrics SET value = "
                 "(SELECT coalesce(sum(completed), 0) FROM torrents) WHERE metric_name = ?",
                 (METRIC,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


def _wal_size(path: Path) -> int:
    try:
        return os.path.getsize(f"{path}-wal")
    except FileNotFoundError:
        return 0


def parse_size(text: str) -> int:
    """'256M', '1G', '100MB', '2.5G' or bytes → bytes (powers of 2^20)."""
    t = text.strip().upper().removesuffix("B")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def size_label(n: int) -> str:
    """Bytes → '256M' / '1G' style label."""
    if n >= 1 << 30 and n % (1 << 30) == 0:
        return f"{n >> 30}G"
    if n >= 1 << 20:
        return f"{n / (1 << 20):g}M"
    return f"{n}B"
