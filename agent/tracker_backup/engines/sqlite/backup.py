"""SQLite source: a consistent copy of a live database without stopping the tracker.

WAL databases: one connection opens a read transaction and keeps it for the
whole copy; the online-backup API then copies, step by step, exactly that
snapshot. Because the read transaction never ends, a step never sees a newer
database, so the copy never restarts; and in WAL mode readers never block
writers, so the tracker is never stalled. Sleeping between steps honours
rate_limit without changing the snapshot.

Rollback-journal databases (the tracker's default): a read transaction holds
a SHARED lock that blocks every writer until it ends. The copy may hold it for
at most `max_lock`; past that it aborts and releases the lock, and the run
either takes the configured maintenance window or fails with the two fixes.

Files the agent causes to exist beside the live database (-wal, -shm) must
belong to the database's owner: SQLite does this itself when running as root;
`_match_side_files` checks, and repairs if SQLite did not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from tracker_backup import procs
from tracker_backup.artifacts import Artifact, hash_file, open_decompressed, store_file
from tracker_backup.config import SqliteConfig
from tracker_backup.errors import SourceError
from tracker_backup.humanize import human_bytes
from tracker_backup.sources.base import RunContext, SourceResult
from tracker_backup.window import WindowJournal

log = logging.getLogger(__name__)

SQLITE_MAGIC = b"SQLite format 3\x00"
SIDE_SUFFIXES = ("-wal", "-shm", "-journal")
STEP_BYTES = 4 << 20  # pages per backup step ≈ 4 MiB: fine-grained rate limit and progress
LOCKED_STEP_BYTES = 1 << 20  # smaller steps while a rollback-journal lock is held
WRITER_RETRY_SLACK = 0.1  # a waiting writer retries every <= 100 ms: leave it that much room
# Faster than any disk here reads: if even this rate cannot copy the database
# within max_lock, do not take the lock at all.
OPTIMISTIC_READ_RATE = 1_000_000_000


class _Deadline(Exception):
    """Raised from the backup progress callback to abort a locked copy in time."""


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


def _uri(path: Path, **params: str) -> str:
    query = urllib.parse.urlencode(params)
    return f"file:{urllib.parse.quote(str(path))}?{query}"


def _match_side_files(db: Path) -> list[str]:
    """Give -wal/-shm/-journal the database file's owner and mode; return what changed."""
    fixed = []
    try:
        st = os.stat(db)
    except OSError:
        return fixed
    for suffix in SIDE_SUFFIXES:
        side = Path(f"{db}{suffix}")
        try:
            sst = os.lstat(side)
        except FileNotFoundError:
            continue
        if (sst.st_uid, sst.st_gid) != (st.st_uid, st.st_gid) and os.geteuid() == 0:
            os.chown(side, st.st_uid, st.st_gid, follow_symlinks=False)
            fixed.append(f"{side.name} owner")
        if (sst.st_mode & 0o777) != (st.st_mode & 0o777):
            try:
                os.chmod(side, st.st_mode & 0o777)
                fixed.append(f"{side.name} mode")
            except PermissionError:
                log.warning("sqlite: cannot give %s the database's mode", side)
    return fixed


def check_database(path: Path, level: str, required_tables: tuple[str, ...],
                   on_open: Callable[[sqlite3.Connection], None] | None = None) -> dict:
    """Integrity-check a database copy; return check result, tables and row counts.

    Opened immutable and read-only: nothing is created beside the copy and the
    check sees exactly the bytes that are stored. `on_open` receives the
    connection, so another thread can interrupt() a long check.
    """
    pragma = "integrity_check" if level == "full" else "quick_check"
    started = time.monotonic()
    conn = sqlite3.connect(_uri(path, mode="ro", immutable="1"), uri=True, isolation_level=None,
                           check_same_thread=False)
    if on_open is not None:
        on_open(conn)
    try:
        rows = [r[0] for r in conn.execute(f"PRAGMA {pragma}")]
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name")]
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    except sqlite3.DatabaseError as exc:
        rows, tables, counts = [f"cannot read the copy: {exc}"], [], {}
    finally:
        conn.close()
    ok = rows == ["ok"]
    missing = [t for t in required_tables if t not in tables]
    return {
        "level": level,
        "pragma": pragma,
        "result": "ok" if ok and not missing else "failed",
        # integrity_check rows can span lines ("*** in database main ***\nPage 18: ..."):
        # one line each, so the log and the error message stay one line.
        "messages": [] if ok else [" ".join(str(r).split()) for r in rows[:10]],
        "missing_tables": missing,
        "row_counts": counts,
        "seconds": round(time.monotonic() - started, 3),
    }


class SqliteSource:
    """Backs up the configured SQLite database file."""

    kind = "sqlite"

    def __init__(self, cfg: SqliteConfig):
        self.cfg = cfg
        self.name = "sqlite"

    # -- backup ----------------------------------------------------------
    def backup(self, ctx: RunContext) -> SourceResult:
        db = self.cfg.database
        if not db.is_file():
            raise SourceError(f"sqlite: database {db} does not exist or is not a file")
        mode = journal_mode_of(db)
        st = os.stat(db)
        workdir = ctx.staging / "sqlite"
        workdir.mkdir(mode=0o700, exist_ok=True)
        raw = workdir / f".{db.name}.copy"
        details: dict = {"journal_mode": mode, "database_bytes": st.st_size,
                         "owner_uid": st.st_uid, "owner_gid": st.st_gid,
                         "file_mode": f"{st.st_mode & 0o7777:04o}"}
        started = time.monotonic()
        if mode == "wal":
            method = "wal-snapshot"
            details.update(self._copy(raw, ctx, deadline=None))
        else:
            method, extra = self._copy_rollback(raw, ctx)
            details.update(extra)
        details["copy_seconds"] = round(time.monotonic() - started, 3)
        changed = _origin_change(db, st)
        if changed:
            # The copy is still one consistent, checked snapshot of the file as it was, and
            # may be the only copy of that data left: keep it, and say so loudly.
            details["origin_changed"] = changed
            log.warning("sqlite: %s %s while it was being copied; this snapshot holds the "
                        "file as it was when the copy began", db, changed)

        ctx.progress(f"sqlite: checking ({ctx.backup.verify}) and storing the copy")
        check, artifact = self._check_and_store(raw, ctx)
        details["check"] = {k: v for k, v in check.items() if k != "row_counts"}
        details["row_counts"] = check["row_counts"]
        if check["result"] != "ok":
            what = (f"missing tables {', '.join(check['missing_tables'])}"
                    if check["missing_tables"] else "; ".join(check["messages"][:3]))
            raise SourceError(f"sqlite: PRAGMA {check['pragma']} of the copy of {db} failed: {what}")
        details["required_tables"] = list(self.cfg.required_tables)
        return SourceResult(self.name, self.kind, str(db), method, [artifact], details)

    def _check_and_store(self, raw: Path, ctx: RunContext) -> tuple[dict, Artifact]:
        """Integrity-check the copy while it is compressed (or hashed), in two threads.

        Both read the same fresh copy (mostly from the page cache), and both
        release the GIL, so on two cores the run takes max(check, store)
        instead of their sum. The main thread only waits, so SIGTERM is
        handled at once: it interrupts the check and cancels the store.
        """
        cancel = threading.Event()
        conns: list[sqlite3.Connection] = []
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sqlite-check") as pool:
            checking = pool.submit(check_database, raw, ctx.backup.verify,
                                   self.cfg.required_tables, conns.append)
            storing = pool.submit(self._store, raw, ctx, cancel)
            try:
                pending = {checking, storing}
                while pending:
                    done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                    for future in done:
                        future.result()  # re-raise a worker's failure here
            except BaseException:
                cancel.set()
                for conn in conns:
                    with contextlib.suppress(sqlite3.Error):  # already closed: check finished
                        conn.interrupt()
                raise
        check, artifact = checking.result(), storing.result()
        if ctx.backup.compression == "none":
            os.rename(raw, ctx.staging / artifact.path)
        else:
            raw.unlink()
        return check, artifact

    def _store(self, raw: Path, ctx: RunContext, cancel: threading.Event) -> Artifact:
        """Hash (none) or compress (zstd) the copy; `raw` stays in place for the check."""
        name = self.cfg.database.name
        if ctx.backup.compression == "none":
            size, digest = hash_file(raw, cancel)
            return Artifact(path=f"sqlite/{name}", source=self.name, content="sqlite",
                            compression="none", bytes=size, sha256=digest, raw_bytes=size)
        return store_file(raw, ctx.staging, f"sqlite/{name}", source=self.name,
                          content="sqlite", compression=ctx.backup.compression,
                          level=ctx.backup.compression_level, cancel=cancel)

    def _copy_rollback(self, raw: Path, ctx: RunContext) -> tuple[str, dict]:
        """Copy under a lock no longer than max_lock, else via the maintenance window."""
        db, max_lock = self.cfg.database, self.cfg.max_lock
        size = db.stat().st_size
        rate = OPTIMISTIC_READ_RATE
        if not ctx.limiter.unlimited:
            rate = min(rate, ctx.limiter.rate)
        hopeless = size / rate > max_lock
        if not hopeless:
            try:
                return "locked-copy", self._copy(raw, ctx, deadline=max_lock)
            except _Deadline:
                log.warning("sqlite: copy of %s would hold the write lock longer than max_lock "
                            "= %gs; lock released after %gs", db, max_lock, max_lock)
                raw.unlink(missing_ok=True)
        if self.cfg.has_maintenance_window:
            return "maintenance-window", self._copy_in_window(raw, ctx)
        raise SourceError(
            f"sqlite: {db} uses a rollback journal and copying its {size / 1e6:.1f} MB would block "
            f"the tracker's writes for longer than [sqlite] max_lock = {max_lock:g}s. Fix: convert "
            f"the database to WAL once with 'tracker-backup sqlite-wal' (no downtime for later "
            f"backups), or set [sqlite] stop_command and start_command for a maintenance window"
        )

    def _copy_in_window(self, raw: Path, ctx: RunContext) -> dict:
        """stop_command, copy, then start_command always; log the downtime."""
        ctx.progress("sqlite: maintenance window: stopping the tracker")
        journal = WindowJournal(ctx.window_journal)
        journal.opened(self.cfg.start_command)
        stopped_at = time.monotonic()
        try:
            procs.run_command(self.cfg.stop_command, what="[sqlite] stop_command")
            info = self._copy(raw, ctx, deadline=None)
        finally:
            try:
                # A second SIGTERM must not stop us from restarting the tracker.
                with _signals_deferred():
                    procs.run_command(self.cfg.start_command, what="[sqlite] start_command")
                journal.closed()
            finally:
                downtime = time.monotonic() - stopped_at
                log.warning("sqlite: maintenance window: tracker was stopped for %.1fs", downtime)
        info["downtime_seconds"] = round(downtime, 3)
        return info

    def _copy(self, raw: Path, ctx: RunContext, deadline: float | None) -> dict:
        """Copy one consistent snapshot of the database into `raw`.

        `deadline` (seconds) bounds how long the read transaction may stay
        open; exceeding it raises _Deadline after releasing the lock.
        """
        db = self.cfg.database
        # timeout=0: no SQLite busy handler; _begin_read polls for the lock itself.
        src = sqlite3.connect(_uri(db, mode="ro"), uri=True, isolation_level=None,
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
            _begin_read(src, self.cfg.busy_timeout)
            locked_at = time.monotonic()
            _match_side_files(db)
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
                    raise _Deadline()
                if total:
                    ctx.progress(f"sqlite: {100 * copied // total}% of "
                                 f"{human_bytes(total * page_size)}")

            src.backup(dst, pages=step, progress=on_step, sleep=0.01)
            src.execute("ROLLBACK")  # release the source first: the tracker may be waiting
            lock_seconds = time.monotonic() - locked_at
            dst.close()
            dst = None
            _fsync_file(raw)
        except sqlite3.Error as exc:
            raise SourceError(f"sqlite: copying {db} to {raw.parent} failed: {exc}") from None
        finally:
            src.close()  # before dst: closing an aborted copy must not extend the lock
            if dst is not None:
                dst.close()
            fixed = _match_side_files(db)
            if fixed:
                log.warning("sqlite: gave %s the database file's owner/mode", ", ".join(fixed))
        return {"page_size": page_size, "page_count": total_pages, "copied_bytes": total_bytes,
                "read_transaction_seconds": round(lock_seconds, 3)}


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def _origin_change(db: Path, before: os.stat_result) -> str | None:
    """How the live database file changed identity since `before`, if it did."""
    try:
        now = os.stat(db)
    except FileNotFoundError:
        return "was deleted"
    if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
        return "was replaced by another file"
    return None


def verify_stored(snapshot_dir: Path, source: dict, artifacts: list[Artifact], level: str,
                  scratch: Path) -> list[str]:
    """Decompress a stored copy to scratch; integrity, tables and row counts as recorded."""
    required_tables = tuple(source.get("required_tables", ()))
    problems = []
    for art in artifacts:
        target = scratch / Path(art.path).name.removesuffix(".zst")
        with open_decompressed(snapshot_dir / art.path, art.compression) as fh, \
                open(target, "wb") as out:
            while chunk := fh.read(1 << 20):
                out.write(chunk)
        check = check_database(target, level, required_tables)
        if check["result"] != "ok":
            problems.append(f"{art.path}: PRAGMA {check['pragma']} failed: "
                            + "; ".join(check["messages"][:3] or
                                        [f"missing tables {check['missing_tables']}"]))
        expected = source.get("row_counts", {})
        if expected and check["row_counts"] != expected:
            problems.append(f"{art.path}: row counts {check['row_counts']} differ from the "
                            f"manifest's {expected}")
        target.unlink(missing_ok=True)
    return problems


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
        _match_side_files(db)
        conn.close()
    after = os.stat(db)
    if (after.st_uid, after.st_gid) != (st.st_uid, st.st_gid) and os.geteuid() == 0:
        os.chown(db, st.st_uid, st.st_gid)
    _match_side_files(db)
    if mode.lower() != "wal":
        raise SourceError(f"sqlite: {db} stayed in journal mode {mode!r} (is it busy?)")
    return before, "wal"


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGTERM/SIGINT until the block ends (main thread only), then re-deliver them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, f: received.append(s))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in received:
            signal.raise_signal(sig)

