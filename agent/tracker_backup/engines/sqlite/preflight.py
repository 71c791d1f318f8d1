"""check-config's look at the SQLite database: there, a SQLite file, its journal mode and
what that means for live copies, the tracker's tables. Read-only: nothing is written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tracker_backup.engines.sqlite.backup import OPTIMISTIC_READ_RATE
from tracker_backup.engines.sqlite.config import SqliteConfig
from tracker_backup.engines.sqlite.header import SQLITE_MAGIC, uri
from tracker_backup.engines.sqlite.side_files import match_side_files
from tracker_backup.humanize import human_bytes
from tracker_backup.preflight import Findings


def _header(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(100)


def check_sqlite(cfg: SqliteConfig) -> Findings:
    """Findings about [sqlite] database (lines without the "[sqlite] " prefix)."""
    f = Findings()
    db = cfg.database
    where = f"database = {db}"
    if not db.exists():
        others = sorted(p.name for p in db.parent.glob("*.db")) if db.parent.is_dir() else []
        hint = f" (in {db.parent}: {', '.join(others)})" if others else ""
        f.problems.append(f"{where}: does not exist{hint}")
        return f
    if not db.is_file():
        f.problems.append(f"{where}: is not a regular file")
        return f
    try:
        header = _header(db)
    except OSError as exc:
        f.problems.append(f"{where}: cannot be read ({exc.strerror})")
        return f
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        f.problems.append(f"{where}: not a SQLite database (no SQLite 3 header): expected the "
                          "tracker's database file, e.g. storage/tracker/lib/database/tracker.db")
        return f
    wal = header[18] == 2 or header[19] == 2
    size = db.stat().st_size
    try:
        tables = _tables(db, wal)
    except sqlite3.Error as exc:
        f.problems.append(f"{where}: cannot be opened read-only ({exc})")
        return f
    missing = [t for t in cfg.required_tables if t not in tables]
    if missing:
        f.problems.append(f"{where}: missing tables {', '.join(missing)} (it has "
                          f"{', '.join(sorted(tables)) or 'no tables'}): expected the tracker's "
                          f"database (required_tables = {' '.join(cfg.required_tables)})")
    if wal:
        f.notes.append(f"{where}: {human_bytes(size)}, journal mode wal: copied live from one "
                       "read snapshot, the tracker's writes never wait")
        return f
    f.notes.append(f"{where}: {human_bytes(size)}, journal mode delete (rollback journal)")
    blocks = (f"a rollback-journal copy blocks the tracker's writes while it runs and must "
              f"finish within max_lock = {cfg.max_lock:g}s")
    if cfg.has_maintenance_window:
        f.warnings.append(f"{where}: {blocks}; if it cannot, the maintenance window "
                          "(stop_command/start_command) is used. `tracker-backup sqlite-wal` "
                          "converts it once, for live copies without downtime")
    elif size / OPTIMISTIC_READ_RATE > cfg.max_lock:
        f.problems.append(f"{where}: {blocks}, which {human_bytes(size)} cannot: convert it "
                          "once with `tracker-backup sqlite-wal`, or set stop_command and "
                          "start_command for a maintenance window")
    else:
        f.warnings.append(f"{where}: {blocks}, else the run fails; `tracker-backup sqlite-wal` "
                          "converts it once, for live copies that never block the tracker")
    return f


def _tables(db: Path, wal: bool) -> set[str]:
    """The database's tables, read without writing anything beside it.

    A read-only connection to a WAL database creates -wal and -shm when they are missing
    (as root: files the tracker could not write). Without a -wal file there is nothing
    beyond the main file to read, so it is read as immutable (no locks, no side files);
    with one, the tracker's own -shm is used, and any side file created gets the
    database's owner and mode as in a backup.
    """
    no_wal = wal and not Path(f"{db}-wal").exists()
    params = {"mode": "ro", **({"immutable": "1"} if no_wal else {})}
    conn = sqlite3.connect(uri(db, **params), uri=True, timeout=1.0)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    finally:
        conn.close()
        if wal and not no_wal:
            match_side_files(db)
    return {r[0] for r in rows}


# From this size on, check-config points at layout = pages (docs/benchmarks.md §5: seven
# dailies cost 0.42x the full copies on a tracker's heavy day, restores as fast).
PAGES_ADVICE_FROM = 1 << 30


def layout_advice(db: Path, layout: str, keep_last: int) -> str | None:
    """A note for a large database kept as full copies: what `layout = pages` would save."""
    try:
        size = db.stat().st_size
    except OSError:
        return None
    if layout != "full" or size < PAGES_ADVICE_FROM or keep_last < 2:
        return None
    return (f"database = {db}: {human_bytes(size)}, every snapshot a whole copy ([backup] "
            f"layout = full, keep_last = {keep_last}); layout = pages stores only the pages "
            "that changed (measured: 7 dailies 0.42x the full copies, restores about as fast; "
            "what it trades: docs/benchmarks.md section 5)")
