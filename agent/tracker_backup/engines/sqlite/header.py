"""What a SQLite database file is, from its bytes alone: the header, the side files."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from tracker_backup.errors import SourceError

SQLITE_MAGIC = b"SQLite format 3\x00"
SIDE_SUFFIXES = ("-wal", "-shm", "-journal")


def journal_mode_of(path: Path) -> str:
    """'wal' or 'rollback', from the file header (bytes 18-19), without opening it."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise SourceError(f"sqlite: cannot read {path}: {exc.strerror}") from None
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise SourceError(f"sqlite: {path} is not a SQLite 3 database (bad header)")
    return "wal" if header[18] == 2 or header[19] == 2 else "rollback"


def is_sqlite_file(path: Path) -> bool:
    """True if the file starts with the SQLite 3 header."""
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def side_paths(db: Path) -> list[Path]:
    """The database's -wal, -shm and -journal paths (existing or not)."""
    return [Path(f"{db}{s}") for s in SIDE_SUFFIXES]


def sqlite_file_of_side_file(path: Path) -> Path | None:
    """The database a -wal/-shm/-journal file belongs to, if `path` is one of those."""
    for suffix in SIDE_SUFFIXES:
        if path.name.endswith(suffix):
            base = path.with_name(path.name[: -len(suffix)])
            if is_sqlite_file(base):
                return base
    return None


def uri(path: Path, **params: str) -> str:
    """A file: URI for sqlite3.connect(uri=True) with query parameters."""
    query = urllib.parse.urlencode(params)
    return f"file:{urllib.parse.quote(str(path))}?{query}"
