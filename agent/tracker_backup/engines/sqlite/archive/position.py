"""Where a read transaction sits in the WAL, and which archive entry that is.

A timer run's snapshot is a base of the archive when its manifest records the
exact WAL position its read transaction saw: (salt1, salt2, mxFrame). The
wal-index is read just before and just after the transaction begins; mxFrame
only grows within one WAL generation and a reset changes the salts, so equal
readings prove no commit happened in between: the snapshot is exactly the
state after the commit ending at that frame. The bracket is retried a few
times; as a last resort an empty `BEGIN IMMEDIATE` on a second connection
keeps writers out for the ~0.1 ms it takes (writes nothing).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from tracker_backup.archive.segment import iter_entries
from tracker_backup.archive.store import Generation, SourceArchive
from tracker_backup.engines.sqlite.archive import wal

TRIES = 20


class WalPosition:
    """Reads the wal-index beside `db` while a read transaction begins (a context manager).

    Keep it open until the read transaction has ENDED: closing any descriptor of
    the -shm file drops every POSIX lock this process holds on it, SQLite's read
    lock included (fcntl semantics), which would let a checkpoint overwrite the
    pages being copied.
    """

    def __init__(self, db: Path):
        self.db = Path(db)
        self.fd = -1

    def __enter__(self) -> WalPosition:
        try:
            self.fd = os.open(f"{self.db}-shm", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.fd = -1
        return self

    def __exit__(self, *exc) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def begin(self, begin: Callable[[], None], lock_wait: float = 0.05) -> dict | None:
        """Call `begin()` (which starts a read transaction) and return its exact WAL position.

        None when the database has no wal-index (not in WAL mode) or the position
        could not be proven; `begin()` has run either way.
        """
        if self.fd < 0:
            begin()  # the first connection to the database creates the wal-index
            self.__enter__()
            if self.fd < 0:
                return None
            _end(begin)
        for attempt in range(TRIES + 1):
            locker = None
            if attempt == TRIES:
                locker = sqlite3.connect(str(self.db), timeout=lock_wait, isolation_level=None)
                try:
                    locker.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError:
                    locker.close()
                    locker = None
            try:
                before = wal.read_index_header(self.fd)
                begin()
                after = wal.read_index_header(self.fd)
            finally:
                if locker is not None:
                    with contextlib.suppress(sqlite3.Error):
                        locker.execute("ROLLBACK")
                    locker.close()
            if before is not None and after is not None and \
                    (before.salts, before.mx_frame) == (after.salts, after.mx_frame):
                st = os.stat(self.db)
                return {"salt1": after.salt1, "salt2": after.salt2, "frame": after.mx_frame,
                        "time": time.time(), "dev": st.st_dev, "ino": st.st_ino}
            if attempt < TRIES:
                _end(begin)
        return None


def _end(begin: Callable[[], None]) -> None:
    conn = getattr(begin, "conn", None)
    if conn is not None:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def reader_begin(conn: sqlite3.Connection) -> Callable[[], None]:
    """A `begin` for begin_read_at_position: BEGIN + a read of the schema on `conn`."""
    def begin() -> None:
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    begin.conn = conn  # type: ignore[attr-defined]
    return begin


def _may_hold(meta_first: dict | None, meta_last: dict | None, salts: tuple[int, int],
              frame: int) -> bool:
    if not meta_first or not meta_last:
        return False
    fs = (meta_first.get("salt1"), meta_first.get("salt2"))
    ls = (meta_last.get("salt1"), meta_last.get("salt2"))
    if fs != salts and ls != salts:
        return fs != ls  # the salts may sit in the middle
    if fs == salts and meta_first.get("frame", 0) > frame:
        return False
    return not (ls == salts and meta_last.get("frame", 0) < frame)


def resolve(backup_path: Path, position: dict, source: str = "sqlite") -> tuple[str, int] | None:
    """(generation, seq) of the archive entry a recorded WAL position is, or None.

    Exact matches only: the entry whose commit frame is the position's frame in
    the same WAL generation, or a generation's own base taken at that very
    position; anything else (the archive started later, is behind, or another
    file) is not a base.
    """
    try:
        salts = (int(position["salt1"]), int(position["salt2"]))
        frame = int(position["frame"])
        ident = (position["dev"], position["ino"])
    except (KeyError, TypeError, ValueError):
        return None
    for gen in reversed(SourceArchive(backup_path, source).generations()):
        gi = gen.info.get("identity") or {}
        if (gi.get("dev"), gi.get("ino")) != ident:
            continue
        for base in gen.bases():
            p = base.info.get("position") or {}
            if (p.get("salt1"), p.get("salt2"), p.get("frame")) == (*salts, frame):
                return gen.id, base.seq
        found = _find_entry(gen, salts, frame)
        if found is not None:
            return gen.id, found
    return None


def _find_entry(gen: Generation, salts: tuple[int, int], frame: int) -> int | None:
    segs, _ = gen.segments()
    for seg in reversed(segs):
        if not _may_hold(seg.trailer.get("first_meta"), seg.trailer.get("last_meta"), salts, frame):
            continue
        for entry in iter_entries(seg.path, with_data=False):
            m = entry.meta
            if (m.get("salt1"), m.get("salt2")) == salts and m.get("frame") == frame:
                return entry.seq
            if frame == 0 and (m.get("salt1"), m.get("salt2")) == salts:
                return entry.seq - 1
    return None
