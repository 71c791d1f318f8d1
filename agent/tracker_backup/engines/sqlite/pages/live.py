"""One consistent page set of a live SQLite database, read without copying it.

WAL: an empty BEGIN IMMEDIATE on a second connection holds the write lock
for a moment; under it the read connection opens its transaction (pinning the
snapshot) and the wal-index header gives that snapshot's last frame. Pages
then come from their latest WAL frame ≤ that frame, else from the main file:
while the read transaction is open no checkpoint copies newer frames into the
file and the WAL cannot restart over older ones (docs/format.md explains
why). Rollback journal: the read transaction's shared lock keeps writers out
of the main file, which is read directly.
"""

from __future__ import annotations

import bisect
import os
import sqlite3
import time
import urllib.parse
from pathlib import Path

from tracker_backup.engines.sqlite.pages import walindex
from tracker_backup.engines.sqlite.pages.walindex import WalError

WRITE_LOCK_TARGET = 0.05  # the write lock is held for far less; logged if ever longer


class LiveReadError(Exception):
    """The database could not be pinned or read consistently."""


def _uri(path: Path, **params: str) -> str:
    return f"file:{urllib.parse.quote(str(path))}?{urllib.parse.urlencode(params)}"


def _poll(conn: sqlite3.Connection, statements: tuple[str, ...], timeout: float) -> None:
    """Run statements that need a lock, retrying every few ms for up to `timeout` s."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            for sql in statements:
                conn.execute(sql).fetchall()
            return
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 1.5, 0.005)


class LivePages:
    """Context manager: a pinned, consistent page set of `db`.

    `conn` is the read connection inside the pinning transaction: a check run
    on it sees exactly the pages `read` returns.
    """

    def __init__(self, db: Path, *, busy_timeout: float = 5.0):
        self.db = Path(db)
        self.busy_timeout = busy_timeout
        self.conn: sqlite3.Connection | None = None
        self.mode = ""
        self.page_size = 0
        self.page_count = 0
        self.write_lock_seconds = 0.0
        self.wal_frames_used = 0
        self.wal_position: dict | None = None  # WAL mode: where the pinned snapshot ends
        # Descriptors of the database and -shm files stay open until the read connection
        # is closed: closing one would release every POSIX lock this process holds on
        # that file, including the read transaction's (the classic fcntl pitfall).
        self._fd = -1
        self._shm_fd = -1
        self._wal_fd = -1
        self._salts: tuple[int, int] | None = None
        self._frames: dict[int, int] = {}
        self._wal_pages: list[int] = []

    def __enter__(self) -> LivePages:
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self) -> None:
        try:
            self._fd = os.open(self.db, os.O_RDONLY | os.O_CLOEXEC)
            self.conn = sqlite3.connect(_uri(self.db, mode="ro"), uri=True, isolation_level=None,
                                        timeout=0, check_same_thread=False)
            header = os.pread(self._fd, 100, 0)  # bytes 18-19 = 2: WAL (no lock needed)
            if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
                raise LiveReadError(f"sqlite: {self.db} is not a SQLite 3 database (bad header)")
            self.mode = "wal" if header[18] == 2 or header[19] == 2 else "rollback"
            if self.mode == "wal":
                self._pin_wal()
            else:
                _poll(self.conn, ("BEGIN", "SELECT count(*) FROM sqlite_master"),
                      self.busy_timeout)
            self.page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
            self.page_count = self.conn.execute("PRAGMA page_count").fetchone()[0]
        except sqlite3.Error as exc:
            raise LiveReadError(f"sqlite: cannot open a read transaction on {self.db}: {exc}") \
                from None
        except OSError as exc:
            raise LiveReadError(f"sqlite: cannot read {self.db}: {exc.strerror}") from None
        if self.mode == "wal" and self._hdr.mx_frame and self._hdr.n_page != self.page_count:
            raise LiveReadError(f"sqlite: {self.db}: wal-index says {self._hdr.n_page} pages, "
                                f"the read transaction {self.page_count}")

    def _pin_wal(self) -> None:
        """Open the read transaction and read the wal-index under a momentary write lock."""
        locker = sqlite3.connect(str(self.db), isolation_level=None, timeout=0)
        try:
            _poll(locker, ("BEGIN IMMEDIATE",), self.busy_timeout)
            locked = time.monotonic()
            try:
                self.conn.execute("BEGIN")
                self.conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
                self._shm_fd = os.open(f"{self.db}-shm", os.O_RDONLY | os.O_CLOEXEC)
                self._hdr = walindex.read_wal_index(self._shm_fd, f"{self.db}-shm")
                self._wal_fd = os.open(f"{self.db}-wal", os.O_RDONLY | os.O_CLOEXEC)
                self._salts = walindex.wal_salts(self._wal_fd)
                st = os.fstat(self._fd)
                self.wal_position = {"salt1": self._hdr.salt1, "salt2": self._hdr.salt2,
                                     "frame": self._hdr.mx_frame, "time": time.time(),
                                     "dev": st.st_dev, "ino": st.st_ino}
            finally:
                locker.execute("ROLLBACK")
                self.write_lock_seconds = time.monotonic() - locked
        except WalError as exc:
            raise LiveReadError(f"sqlite: {self.db}: {exc}") from None
        finally:
            locker.close()
        hdr = self._hdr
        if hdr.mx_frame > hdr.n_backfill:
            # Frames not yet in the main file: this read transaction holds a read mark > 0,
            # so the WAL cannot restart and frames 1..mxFrame stay as they are.
            if self._salts != hdr.salts:
                raise LiveReadError(f"sqlite: {self.db}-wal does not match its wal-index")
            try:
                self._frames = walindex.latest_frames(self._wal_fd, hdr)
            except WalError as exc:
                raise LiveReadError(f"sqlite: {self.db}: {exc}") from None
            self._wal_pages = sorted(self._frames)
            self._salt_bytes = b"".join(s.to_bytes(4, "big") for s in hdr.salts)
        # else: everything is checkpointed and no checkpoint can run while we read:
        # the main file alone is this snapshot.

    def read(self, first: int, count: int) -> bytes:
        """Pages first..first+count-1 (1-based) of the pinned snapshot, concatenated."""
        ps = self.page_size
        if first < 1 or first + count - 1 > self.page_count:
            raise ValueError(f"pages {first}..{first + count - 1} outside 1..{self.page_count}")
        buf = bytearray(os.pread(self._fd, count * ps, (first - 1) * ps))
        lo = bisect.bisect_left(self._wal_pages, first)
        hi = bisect.bisect_left(self._wal_pages, first + count)
        if len(buf) < count * ps:
            # Pages past the main file's end must all come from the WAL.
            have = len(buf) // ps
            missing = set(range(first + have, first + count)) - set(self._wal_pages[lo:hi])
            if missing:
                raise LiveReadError(f"sqlite: {self.db}: page {min(missing)} is in neither "
                                    "the database file nor the WAL")
            buf.extend(bytes(count * ps - len(buf)))
        for pgno in self._wal_pages[lo:hi]:
            off = walindex.frame_offset(self._frames[pgno], ps)
            frame = os.pread(self._wal_fd, walindex.FRAME_HEADER + ps, off)
            if len(frame) != walindex.FRAME_HEADER + ps or frame[:4] != pgno.to_bytes(4, "big") \
                    or frame[8:16] != self._salt_bytes:
                raise LiveReadError(f"sqlite: {self.db}-wal frame {self._frames[pgno]} changed "
                                    "while it was read")
            start = (pgno - first) * ps
            buf[start:start + ps] = frame[walindex.FRAME_HEADER:]
            self.wal_frames_used += 1
        if hi > lo and walindex.wal_salts(self._wal_fd) != self._salts:
            raise LiveReadError(f"sqlite: {self.db}-wal was restarted while it was read")
        return bytes(buf)

    def close(self) -> None:
        """End the read transaction (releasing the snapshot) and close everything."""
        if self.conn is not None:
            try:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
            finally:
                self.conn.close()
                self.conn = None
        for attr in ("_fd", "_shm_fd", "_wal_fd"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)
