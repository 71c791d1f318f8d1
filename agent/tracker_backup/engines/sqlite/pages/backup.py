"""`layout = pages` backup of the SQLite engine: the next snapshot as a page index.

The live database is pinned (live.py), every page is read once and hashed,
and only pages that differ from the previous pages-layout snapshot of the same
database are compressed into new objects (writer.py). Nothing of the size of
the database is staged: the snapshot's artifact is its page index.

WAL: the integrity check runs on the pinning connection, in the same read
transaction, beside the page reading (two threads; both release the GIL).
Rollback journal: pages are read under the read lock within max_lock (else
the maintenance window, else the usual error), and the check runs after the
lock is released, on a copy reassembled from the stored objects.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from tracker_backup.artifacts import Artifact, ArtifactWriter
from tracker_backup.engines.contract import RunContext
from tracker_backup.engines.sqlite.check import check_connection, check_database
from tracker_backup.engines.sqlite.config import SqliteConfig
from tracker_backup.engines.sqlite.pages import gc
from tracker_backup.engines.sqlite.pages.index import (
    PageIndex,
    PageIndexError,
    compress_index,
    read_index_file,
)
from tracker_backup.engines.sqlite.pages.live import LivePages, LiveReadError
from tracker_backup.engines.sqlite.pages.objects import ObjectStore
from tracker_backup.engines.sqlite.pages.reassemble import ReassembleError, reassemble_to
from tracker_backup.engines.sqlite.pages.writer import WriteResult, write_from_live
from tracker_backup.engines.sqlite.side_files import match_side_files
from tracker_backup.errors import SourceError
from tracker_backup.humanize import human_bytes
from tracker_backup.window import WindowJournal, maintenance_window

log = logging.getLogger(__name__)

INDEX_SUFFIX = ".pages"
OPTIMISTIC_READ_RATE = 1_000_000_000  # as backup.py: faster than any disk reads here


class _Deadline(Exception):
    """Reading under a rollback-journal lock would overrun max_lock."""


class _Cancelled(Exception):
    """The run is ending (SIGTERM or a failed check): stop reading."""


def store_of(backup_path: Path) -> ObjectStore:
    """The page store of a backup path."""
    return ObjectStore(Path(backup_path) / gc.STORE_DIR)


def previous_snapshot(backup_path: Path, origin: str) -> tuple[str | None, PageIndex | None]:
    """The newest good pages-layout snapshot of `origin` and its index (None, None if none)."""
    from tracker_backup.store import Store

    for snap in Store(backup_path).snapshots():
        src = (snap.manifest or {}).get("sources", {}).get("sqlite")
        if not snap.good or not isinstance(src, dict) or src.get("layout") != "pages" \
                or src.get("origin") != origin or not isinstance(src.get("index"), str):
            continue
        try:
            return snap.id, read_index_file(snap.path / src["index"])
        except PageIndexError as exc:
            log.warning("sqlite: previous page index unusable, trying an older one: %s", exc)
    return None, None


class PagesBackup:
    """One pages-layout backup of the configured database."""

    def __init__(self, cfg: SqliteConfig, ctx: RunContext, mode: str):
        self.cfg = cfg
        self.ctx = ctx
        self.mode = mode
        self.store = store_of(ctx.backup.path)
        self.previous_id, self.previous = previous_snapshot(ctx.backup.path, str(cfg.database))

    def run(self) -> tuple[str, list[Artifact], dict]:
        """(method, [index artifact], manifest details); SourceError on failure."""
        started = time.monotonic()
        archived = self._from_archive() if self.mode == "wal" else None
        if archived is not None:
            method = "archive"  # the commits since the previous snapshot, from the archive
            result, info = archived
            if self.cfg.archive_check == "database":
                check = self._check_reassembled(result.index)
            else:
                check = self._check_pages(result.index)
        elif self.mode == "wal":
            method = "wal-snapshot"  # how consistency was had; "layout" says how it is stored
            result, info, check = self._read(deadline=None, check_pinned=True)
        else:
            method, (result, info) = self._rollback()
            check = self._check_reassembled(result.index)
        details = {**info, "copy_seconds": round(time.monotonic() - started, 3)}
        details["check"] = {k: v for k, v in check.items() if k != "row_counts"}
        details["row_counts"] = check["row_counts"]
        if check["result"] != "ok":
            what = (f"missing tables {', '.join(check['missing_tables'])}"
                    if check["missing_tables"] else "; ".join(check["messages"][:3]))
            raise SourceError(f"sqlite: PRAGMA {check['pragma']} of {self.cfg.database} "
                              f"failed: {what}")
        artifact = self._write_index(result.index)
        names = result.index.object_names()
        details.update({
            "layout": "pages", "index": artifact.path, "previous": self.previous_id,
            "page_size": result.index.page_size, "page_count": result.index.page_count,
            "changed_pages": result.changed_pages, "repacked_pages": result.repacked_pages,
            "new_objects": result.new_objects, "new_bytes": result.new_bytes + artifact.bytes,
            "referenced_objects": len(names),
            "referenced_bytes": sum(self.store.size(n) for n in names),
        })
        log.info("sqlite: %d of %d pages changed (%d repacked), %d new objects, %s new",
                 result.changed_pages, result.index.page_count, result.repacked_pages,
                 result.new_objects, human_bytes(result.new_bytes))
        return method, [artifact], details

    # -- reading ---------------------------------------------------------
    def _from_archive(self) -> tuple[WriteResult, dict] | None:
        """With [sqlite] continuous = yes and the archiver running: the snapshot from the
        archived commits since the previous one (no read of the live database)."""
        if not getattr(self.cfg, "continuous", False) or self.previous is None:
            return None
        from tracker_backup.archive.segment import SegmentError
        from tracker_backup.engines.sqlite.pages.from_archive import from_archive

        src = self._previous_source()
        try:
            got = from_archive(self.ctx.backup.path, self.store, src, self.previous,
                               level=self.ctx.backup.compression_level)
        except (SegmentError, PageIndexError, OSError) as exc:
            log.warning("sqlite: the continuous archive cannot build this snapshot (%s); "
                        "reading the database instead", exc)
            return None
        if got is None:
            log.info("sqlite: the continuous archive does not reach back to snapshot %s; "
                     "reading the database", self.previous_id)
            return None
        result, info = got
        info["database_bytes"] = result.index.page_count * result.index.page_size
        return result, info

    def _previous_source(self) -> dict:
        from tracker_backup.store import Store

        snap = Store(self.ctx.backup.path).get(self.previous_id)
        return (snap.manifest or {}).get("sources", {}).get("sqlite") or {}

    def _rollback(self) -> tuple[str, tuple[WriteResult, dict]]:
        db, max_lock = self.cfg.database, self.cfg.max_lock
        size = db.stat().st_size
        rate = OPTIMISTIC_READ_RATE
        if not self.ctx.limiter.unlimited:
            rate = min(rate, self.ctx.limiter.rate)
        if size / rate <= max_lock:
            try:
                result, info, _ = self._read(deadline=max_lock, check_pinned=False)
                return "locked-copy", (result, info)
            except _Deadline:
                log.warning("sqlite: reading %s would hold the lock longer than max_lock = %gs; "
                            "lock released", db, max_lock)
        if self.cfg.has_maintenance_window:
            self.ctx.progress("sqlite: maintenance window: stopping the tracker")
            with maintenance_window(self.cfg.stop_command, self.cfg.start_command,
                                    WindowJournal(self.ctx.window_journal)) as window:
                result, info, _ = self._read(deadline=None, check_pinned=False)
            info["downtime_seconds"] = round(window.downtime, 3)
            return "maintenance-window", (result, info)
        raise SourceError(
            f"sqlite: {db} uses a rollback journal and reading its {size / 1e6:.1f} MB would block "
            f"the tracker's writes for longer than [sqlite] max_lock = {max_lock:g}s. Fix: convert "
            f"the database to WAL once with 'tracker-backup sqlite-wal' (no downtime for later "
            f"backups), or set [sqlite] stop_command and start_command for a maintenance window")

    def _read(self, *, deadline: float | None, check_pinned: bool
              ) -> tuple[WriteResult, dict, dict]:
        """Pin the database, store its changed pages (and check it, if asked), release it."""
        cancel = threading.Event()
        conns: list[sqlite3.Connection] = []
        try:
            with LivePages(self.cfg.database, busy_timeout=self.cfg.busy_timeout) as live:
                locked_at = time.monotonic()
                match_side_files(self.cfg.database)
                with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sqlite-pages") as pool:
                    futures = [pool.submit(self._store_pages, live, cancel, deadline, locked_at)]
                    if check_pinned:
                        conns.append(live.conn)
                        futures.append(pool.submit(check_connection, live.conn,
                                                   self.ctx.backup.verify,
                                                   self.cfg.required_tables))
                    try:
                        pending = set(futures)
                        while pending:
                            done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                            for future in done:
                                future.result()
                    except BaseException:
                        cancel.set()
                        for conn in conns:
                            with contextlib.suppress(sqlite3.Error):
                                conn.interrupt()
                        raise
                held = time.monotonic() - locked_at
                info = {"read_transaction_seconds": round(held, 3),
                        "write_lock_seconds": round(live.write_lock_seconds, 4),
                        "wal_frames_read": live.wal_frames_used,
                        "database_bytes": live.page_count * live.page_size}
                if live.wal_position is not None:
                    # Exact (read under the write lock): ties this snapshot to the continuous
                    # archive's entries (docs/format.md, "Where a timer run's snapshot sits").
                    info["archive_position"] = live.wal_position
        except LiveReadError as exc:
            raise SourceError(str(exc)) from None
        finally:
            fixed = match_side_files(self.cfg.database)
            if fixed:
                log.warning("sqlite: gave %s the database file's owner/mode", ", ".join(fixed))
        check = futures[1].result() if check_pinned else {}
        return futures[0].result(), info, check

    def _store_pages(self, live: LivePages, cancel: threading.Event, deadline: float | None,
                     locked_at: float) -> WriteResult:
        ps = live.page_size
        state = {"done": 0, "at": locked_at, "slowest": 0.0}

        def on_read(done: int, total: int) -> None:
            if cancel.is_set():
                raise _Cancelled("sqlite: reading pages was cancelled")
            self.ctx.limiter.consume((done - state["done"]) * ps)
            now = time.monotonic()
            state["slowest"] = max(state["slowest"], now - state["at"])
            state["done"], state["at"] = done, now
            if deadline is not None and done < total and \
                    now - locked_at + 2 * state["slowest"] + min(0.1, deadline / 4) > deadline:
                raise _Deadline()
            self.ctx.progress(f"sqlite: {100 * done // max(1, total)}% of "
                              f"{human_bytes(total * ps)} read")

        try:
            return write_from_live(self.store, live, self.previous,
                                   level=self.ctx.backup.compression_level, on_read=on_read)
        except OSError as exc:
            raise SourceError(f"sqlite: writing page objects to {self.store.objects} failed: "
                              f"{exc.strerror or exc}") from None

    # -- checking and the index ----------------------------------------------
    def _check_reassembled(self, index: PageIndex) -> dict:
        """Rollback journal: reassemble from the store into staging, check, delete."""
        target = self.ctx.staging / "sqlite" / f".{self.cfg.database.name}.check"
        target.parent.mkdir(mode=0o700, exist_ok=True)
        self.ctx.progress(f"sqlite: checking ({self.ctx.backup.verify}) the stored pages")
        try:
            reassemble_to(self.store, index, target)
            return check_database(target, self.ctx.backup.verify, self.cfg.required_tables)
        except ReassembleError as exc:
            raise SourceError(f"sqlite: the pages just stored do not reassemble: {exc}") from None
        finally:
            target.unlink(missing_ok=True)

    def _check_pages(self, index: PageIndex) -> dict:
        """An archive-built snapshot, checked at the cost of its changes, staging nothing.

        Every object it references that the previous snapshot did not (the ones
        this run wrote or reused) is read back whole: decompressed, SHA-256 against
        its name, every page against its header digest. Then the page digests of
        the whole snapshot, from the headers of every object it references (16
        bytes a page, no decompression), must hash to the index's pages_digest,
        which the writer computed from the pages it meant to store. Together: the
        snapshot reassembles to exactly the previous snapshot's pages plus the
        archived changes. The SQL check of the result is left to `verify` and the
        drill (docs/sqlite.md, "Page snapshots built from the archive").
        """
        import hashlib

        from tracker_backup.engines.sqlite.pages.objects import ObjectError
        from tracker_backup.engines.sqlite.pages.writer import load_digests

        started = time.monotonic()
        self.ctx.progress("sqlite: checking the new objects and the page digests")
        before = self.previous.object_names() if self.previous is not None else set()
        new = sorted(index.object_names() - before)
        problems = []
        for name in new:
            try:
                self.store.read_pages(name, check_digests=True)
            except ObjectError as exc:
                problems.append(str(exc))
        if not problems:
            try:
                digests = load_digests(self.store, index)
            except (ObjectError, PageIndexError) as exc:
                problems.append(str(exc))
            else:
                if hashlib.sha256(digests).hexdigest() != index.pages_digest:
                    problems.append("the stored objects' page digests do not match the "
                                    "index's pages_digest")
        if problems:
            raise SourceError("sqlite: the pages just stored from the archive do not check: "
                              + "; ".join(problems[:3]))
        return {"level": "pages", "pragma": None, "result": "ok", "messages": [],
                "missing_tables": [], "row_counts": {}, "objects_checked": len(new),
                "seconds": round(time.monotonic() - started, 3)}

    def _write_index(self, index: PageIndex) -> Artifact:
        data = compress_index(index, self.ctx.backup.compression_level)
        with ArtifactWriter(self.ctx.staging, f"sqlite/{self.cfg.database.name}{INDEX_SUFFIX}",
                            source="sqlite", content="sqlite-pages",
                            compression="none") as writer:
            writer.write(data)
        assert writer.artifact is not None
        return writer.artifact


def free_space_needed(backup_path: Path, origin: str, database_bytes: int, *,
                      staged_check: bool = False) -> tuple[int, str]:
    """(bytes, why) a pages-layout run needs free on the backup path before it starts.

    After a pages snapshot: twice the largest of the last snapshots' new bytes
    (changes vary day to day), plus a buffer. For the first one: what a full
    compressed copy took, or else the database's size. `staged_check`: the run
    may reassemble the database into staging to check it ([sqlite] archive_check
    = database): its size on top.
    """
    need, why = _space_for_objects(backup_path, origin, database_bytes)
    if staged_check:
        return need + database_bytes, why + " + the database's size (archive_check = database)"
    return need, why


def _space_for_objects(backup_path: Path, origin: str, database_bytes: int) -> tuple[int, str]:
    from tracker_backup.store import Store

    buffer = 64 << 20
    recent, full = [], None
    for snap in Store(backup_path).snapshots()[:7]:
        src = (snap.manifest or {}).get("sources", {}).get("sqlite")
        if not isinstance(src, dict) or src.get("origin") != origin:
            continue
        if src.get("layout") == "pages" and isinstance(src.get("new_bytes"), int):
            recent.append(src["new_bytes"])
        elif full is None:
            full = sum(a.get("bytes", 0) for a in snap.manifest.get("artifacts", [])
                       if a.get("source") == "sqlite")
    if recent:
        return 2 * max(recent) + buffer, ("twice the largest new bytes of the last "
                                          f"{len(recent)} page snapshots + 64 MiB")
    if full:
        return full + buffer, "a first page snapshot: the last full copy's size + 64 MiB"
    return database_bytes + buffer, "a first page snapshot: the database's size + 64 MiB"

