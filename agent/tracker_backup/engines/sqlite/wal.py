"""`tracker-backup sqlite-wal`: switch the tracker's database to WAL once (an engine command)."""

from __future__ import annotations

import argparse
import os
import sqlite3
from pathlib import Path

from tracker_backup.config import Config
from tracker_backup.engines.sqlite.header import journal_mode_of
from tracker_backup.engines.sqlite.side_files import match_side_files
from tracker_backup.errors import SourceError, UsageError


def register(subparsers) -> None:
    """Add the `sqlite-wal` subcommand."""
    w = subparsers.add_parser("sqlite-wal", help="switch the SQLite database to WAL mode (once)")
    w.add_argument("--database", type=Path, help="database file (default: [sqlite] database)")
    w.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace, config: Config, out) -> int:
    return sqlite_wal(config, database=args.database, out=out)


def sqlite_wal(config: Config, *, database: Path | None, out) -> int:
    """Convert the configured (or named) SQLite database to WAL, keeping owner and mode."""
    db = database or (config.sqlite.database if config.sqlite else None)
    if db is None:
        raise UsageError("no [sqlite] database configured: name one with --database")
    if not db.is_file():
        raise UsageError(f"{db} does not exist")
    if journal_mode_of(db) == "wal":
        print(f"{db} already uses WAL: nothing to do", file=out)
        return 0
    before, after = convert_to_wal(db, config.sqlite.busy_timeout if config.sqlite else 5.0)
    print(f"{db}: journal mode {before} -> {after}; owner and mode kept. Backups of it no longer "
          "block the tracker's writes.", file=out)
    return 0


def convert_to_wal(db: Path, busy_timeout: float = 5.0) -> tuple[str, str]:
    """Switch a database to WAL (persistent); return (old mode, new mode).

    Needs a moment of exclusive access, taken with the busy timeout like any
    writer; the file's owner and mode are kept and -wal/-shm get the same.
    """
    before = journal_mode_of(db)
    st = os.stat(db)
    conn = sqlite3.connect(str(db), isolation_level=None, timeout=busy_timeout)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    except sqlite3.Error as exc:
        raise SourceError(f"sqlite: cannot switch {db} to WAL: {exc}") from None
    finally:
        match_side_files(db)
        conn.close()
    after = os.stat(db)
    if (after.st_uid, after.st_gid) != (st.st_uid, st.st_gid) and os.geteuid() == 0:
        os.chown(db, st.st_uid, st.st_gid)
    match_side_files(db)
    if mode.lower() != "wal":
        raise SourceError(f"sqlite: {db} stayed in journal mode {mode!r} (is it busy?)")
    return before, "wal"
