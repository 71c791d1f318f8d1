"""SQLite backup: a consistent, checked, stored copy of a live database without stopping it.

WAL databases are copied from one read transaction (copy.py), which never
blocks the tracker. Rollback-journal databases (the tracker's default): a read
transaction blocks every writer until it ends, so the copy may hold it for at
most `max_lock`; past that it aborts and releases the lock, and the run either
takes the configured maintenance window (window.py) or fails with the two fixes.
The copy is then integrity-checked (check.py) while it is compressed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from tracker_backup.artifacts import Artifact, hash_file, store_file
from tracker_backup.engines.contract import RunContext, SourceResult
from tracker_backup.engines.sqlite.check import check_database
from tracker_backup.engines.sqlite.config import SqliteConfig
from tracker_backup.engines.sqlite.copy import Deadline, copy_snapshot
from tracker_backup.engines.sqlite.header import journal_mode_of
from tracker_backup.errors import SourceError
from tracker_backup.window import WindowJournal, maintenance_window

log = logging.getLogger(__name__)

# Faster than any disk here reads: if even this rate cannot copy the database
# within max_lock, do not take the lock at all.
OPTIMISTIC_READ_RATE = 1_000_000_000


class SqliteBackup:
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
        if ctx.backup.layout == "pages":
            return self._backup_pages(ctx, mode, st, details)
        started = time.monotonic()
        if mode == "wal":
            method = "wal-snapshot"
            details.update(self._copy(raw, ctx, deadline=None))
        else:
            method, extra = self._copy_rollback(raw, ctx)
            details.update(extra)
        details["copy_seconds"] = round(time.monotonic() - started, 3)
        changed = origin_change(db, st)
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

    def _backup_pages(self, ctx: RunContext, mode: str, st: os.stat_result,
                      details: dict) -> SourceResult:
        """layout = pages: a page index into the shared page store (pages/backup.py)."""
        from tracker_backup.engines.sqlite.pages.backup import PagesBackup

        method, artifacts, extra = PagesBackup(self.cfg, ctx, mode).run()
        details.update(extra)
        changed = origin_change(self.cfg.database, st)
        if changed:
            details["origin_changed"] = changed
            log.warning("sqlite: %s %s while it was being read; this snapshot holds the "
                        "file as it was when the read began", self.cfg.database, changed)
        details["required_tables"] = list(self.cfg.required_tables)
        return SourceResult(self.name, self.kind, str(self.cfg.database), method, artifacts,
                            details)

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
            except Deadline:
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
        with maintenance_window(self.cfg.stop_command, self.cfg.start_command,
                                WindowJournal(ctx.window_journal)) as window:
            info = self._copy(raw, ctx, deadline=None)
        info["downtime_seconds"] = round(window.downtime, 3)
        return info

    def _copy(self, raw: Path, ctx: RunContext, deadline: float | None) -> dict:
        return copy_snapshot(self.cfg.database, raw, ctx, busy_timeout=self.cfg.busy_timeout,
                             deadline=deadline)


def origin_change(db: Path, before: os.stat_result) -> str | None:
    """How the live database file changed identity since `before`, if it did."""
    try:
        now = os.stat(db)
    except FileNotFoundError:
        return "was deleted"
    if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
        return "was replaced by another file"
    return None
