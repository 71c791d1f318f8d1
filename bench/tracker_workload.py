"""A day of a tracker's writes, for the storage benchmarks.

Downloads follow a skewed popularity: most go to a small hot set of recent
torrents (Zipf over the newest ids, as a swarm's interest fades with age),
the rest are spread over the whole table; each download is the tracker's
upsert (`completed + 1`, the metric follows). A share of the day's traffic
announces new torrents (random info-hashes, so their index entries land all
over the unique index's B-tree, as real SHA-1 hashes do).
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from support.tracker_db import METRIC


def tracker_day(db: Path, rng: random.Random, *, downloads_percent: float = 2.0,
                new_percent: float = 0.3, hot_share: float = 0.7,
                hot_fraction: float = 0.05) -> dict:
    """Apply one day's writes; return {"downloads", "updated_torrents", "new_torrents"}."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        lo, hi = conn.execute("SELECT min(id), max(id) FROM torrents").fetchone()
        rows = hi - lo + 1
        downloads = max(1, round(rows * downloads_percent / 100))
        hot = max(1, round(rows * hot_fraction))
        counts: dict[int, int] = {}
        for _ in range(downloads):
            if rng.random() < hot_share:
                rank = min(hot - 1, int(rng.paretovariate(1.1)) - 1)  # Zipf-like over the hot set
                tid = hi - rank
            else:
                tid = rng.randint(lo, hi)
            counts[tid] = counts.get(tid, 0) + 1
        new = max(1, round(rows * new_percent / 100))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("UPDATE torrents SET completed = completed + ? WHERE id = ?",
                         [(c, t) for t, c in counts.items()])
        before = conn.total_changes
        conn.executemany("INSERT OR IGNORE INTO torrents(info_hash, completed) VALUES (?, 1)",
                         [(rng.randbytes(20).hex(),) for _ in range(new)])
        added = conn.total_changes - before
        conn.execute("UPDATE torrent_aggregate_metrics SET value = "
                     "(SELECT coalesce(sum(completed), 0) FROM torrents) WHERE metric_name = ?",
                     (METRIC,))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return {"downloads": downloads, "updated_torrents": len(counts), "new_torrents": added}
