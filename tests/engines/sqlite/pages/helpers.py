"""Taking and reading page-store snapshots directly through the pages package (no CLI)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from tracker_backup.engines.sqlite.pages.index import compress_index, read_index_file
from tracker_backup.engines.sqlite.pages.live import LivePages
from tracker_backup.engines.sqlite.pages.objects import ObjectStore
from tracker_backup.engines.sqlite.pages.reassemble import reassemble_to
from tracker_backup.engines.sqlite.pages.writer import write_from_live


def content(conn: sqlite3.Connection) -> dict:
    """What a snapshot must reproduce exactly: row set digest, counts, invariant."""
    sha = hashlib.sha256()
    for row in conn.execute("SELECT info_hash, completed FROM torrents ORDER BY info_hash"):
        sha.update(repr(row).encode())
    metric = conn.execute("SELECT value FROM torrent_aggregate_metrics").fetchone()[0]
    total = conn.execute("SELECT coalesce(sum(completed), 0) FROM torrents").fetchone()[0]
    n = conn.execute("SELECT count(*) FROM torrents").fetchone()[0]
    return {"rows": n, "sum": total, "metric": metric, "digest": sha.hexdigest()}


def take(db: Path, backup: Path, snap_id: str, previous: str | None = None):
    """One snapshot of the live db into backup/<snap_id>/sqlite/tracker.db.pages.

    Returns (WriteResult, content seen inside the pinned read transaction).
    """
    backup.mkdir(exist_ok=True)
    store = ObjectStore(backup / "pages")
    prev = read_index_file(backup / previous / "sqlite" / "tracker.db.pages") if previous else None
    with LivePages(db) as live:
        seen = content(live.conn)
        result = write_from_live(store, live, prev)
    out = backup / snap_id / "sqlite"
    out.mkdir(parents=True)
    (out / "tracker.db.pages").write_bytes(compress_index(result.index))
    return result, seen


def restore(backup: Path, snap_id: str, target: Path) -> Path:
    index = read_index_file(backup / snap_id / "sqlite" / "tracker.db.pages")
    reassemble_to(ObjectStore(backup / "pages"), index, target)
    return target


def check(path: Path) -> tuple[str, dict]:
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0], content(conn)
    finally:
        conn.close()
