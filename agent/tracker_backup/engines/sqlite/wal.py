"""`tracker-backup sqlite-wal`: switch the tracker's database to WAL once."""

from __future__ import annotations

from pathlib import Path

from tracker_backup.config import Config
from tracker_backup.errors import UsageError
from tracker_backup.sources.sqlite import convert_to_wal, journal_mode_of


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
