"""One consistent copy of a live SQLite database, by the online-backup API.

WAL databases: one connection opens a read transaction and keeps it for the
whole copy; the online-backup API then copies, step by step, exactly that
snapshot. Because the read transaction never ends, a step never sees a newer
database, so the copy never restarts; and in WAL mode readers never block
writers, so the tracker is never stalled. Sleeping between steps honours
rate_limit without changing the snapshot.

Rollback-journal databases: the read transaction holds a SHARED lock that
blocks every writer until it ends; under a `deadline` the copy gives up (and
releases the lock) before it could hold it longer than that.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from pathlib import Path

from tracker_backup.artifacts import fsync_file
from tracker_backup.engines.contract import RunContext
from tracker_backup.engines.sqlite.archive.position import WalPosition
from tracker_backup.engines.sqlite.header import uri
from tracker_backup.engines.sqlite.side_files import match_side_files
from tracker_backup.errors import SourceError
from tracker_backup.humanize import human_bytes

log = logging.getLogger(__name__)

STEP_BYTES = 4 << 20  # pages per backup step ≈ 4 MiB: fine-grained rate limit and progress
LOCKED_STEP_BYTES = 1 << 20  # smaller steps while a rollback-journal lock is held
WRITER_RETRY_SLACK = 0.1  # a waiting writer retries every <= 100 ms: leave it that much room


class Deadline(Exception):
    """Raised from the backup progress callback to abort a locked copy in time."""


def copy_snapshot(db: Path, raw: Path, ctx: RunContext, *, busy_timeout: float,
                  deadline: float | None) -> dict:
    """Copy one consistent snapshot of the database into `raw`.

    `deadline` (seconds) bounds how long the read transaction may stay
    open; exceeding it raises _Deadline after releasing the lock.
    """
    # timeout=0: no SQLite busy handler; _begin_read polls for the lock itself.
    # Opened before, closed after the source connection: see WalPosition (fcntl locks).
    wal_position = WalPosition(db).__enter__()
    src = sqlite3.connect(uri(db, mode="ro"), uri=True, isolation_level=None,
                          timeout=0, check_same_thread=False)
    dst = None
    lock_seconds = 0.0
    try:
        # The staging copy needs no journal and no fsync per commit (a crash discards
        # staging anyway): the backup's final commit then costs no fsync while the
        # source is still read-locked. The copy is fsynced once, after the release.
        dst = sqlite3.connect(raw, isolation_level=None)
        dst.execute("PRAGMA journal_mode=OFF")
        dst.execute("PRAGMA synchronous=OFF")
        position = None
        if deadline is None:
            # Where in the WAL this snapshot sits, exactly: it makes the snapshot a base of
            # the continuous archive (docs/format.md); None for a rollback-journal database.
            def begin() -> None:
                _begin_read(src, busy_timeout)
            begin.conn = src  # type: ignore[attr-defined]
            position = wal_position.begin(begin)
        else:
            _begin_read(src, busy_timeout)
        locked_at = time.monotonic()
        match_side_files(db)
        page_size = src.execute("PRAGMA page_size").fetchone()[0]
        total_pages = src.execute("PRAGMA page_count").fetchone()[0]
        total_bytes = page_size * total_pages
        # Under a deadline, smaller steps: the lock is checked between steps.
        step = max(1, (LOCKED_STEP_BYTES if deadline is not None else STEP_BYTES) // page_size)
        done = {"pages": 0, "at": locked_at, "slowest": 0.0}

        def on_step(status: int, remaining: int, total: int) -> None:
            copied = total - remaining
            ctx.limiter.consume((copied - done["pages"]) * page_size)
            now = time.monotonic()
            done["slowest"] = max(done["slowest"], now - done["at"])
            done["pages"], done["at"] = copied, now
            # Give up before the next step could overrun max_lock, not after, keeping
            # room for the writer's own busy-handler sleep (SQLite's: up to 100 ms)
            # that follows our release.
            if (deadline is not None and remaining
                    and now - locked_at + 2 * done["slowest"] + min(WRITER_RETRY_SLACK,
                                                                    deadline / 4) > deadline):
                raise Deadline()
            if total:
                ctx.progress(f"sqlite: {100 * copied // total}% of "
                             f"{human_bytes(total * page_size)}")

        src.backup(dst, pages=step, progress=on_step, sleep=0.01)
        src.execute("ROLLBACK")  # release the source first: the tracker may be waiting
        lock_seconds = time.monotonic() - locked_at
        dst.close()
        dst = None
        fsync_file(raw)
    except sqlite3.Error as exc:
        raise SourceError(f"sqlite: copying {db} to {raw.parent} failed: {exc}") from None
    finally:
        src.close()  # before dst: closing an aborted copy must not extend the lock
        wal_position.__exit__(None, None, None)
        if dst is not None:
            dst.close()
        fixed = match_side_files(db)
        if fixed:
            log.warning("sqlite: gave %s the database file's owner/mode", ", ".join(fixed))
    info = {"page_size": page_size, "page_count": total_pages, "copied_bytes": total_bytes,
            "read_transaction_seconds": round(lock_seconds, 3)}
    if position is not None:
        info["archive_position"] = position
    return info


def _begin_read(conn: sqlite3.Connection, timeout: float) -> None:
    """Open a read transaction, polling every few milliseconds for up to `timeout` seconds.

    In rollback-journal mode a busy tracker holds its commit locks most of the
    time. SQLite's own busy handler backs off to 100 ms between attempts and can
    miss every gap between the tracker's commits for longer than busy_timeout
    (seen under load: "database is locked"); polling at 0.5-5 ms finds a gap.
    The read transaction starts at the first read, not at BEGIN.
    """
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return
        except sqlite3.OperationalError as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 1.5, 0.005)
