"""The SQLite `Archiver`: follows a live WAL database's committed frames into the archive.

It never writes to the database. What it does to the database, and why:

- It ALWAYS holds a read transaction (connection `_reader`). A reader on a
  read-mark slot > 0 stops every writer and checkpointer from restarting the
  WAL; a reader on slot 0 stops backfilling, without which no restart can
  happen either. So no frame is overwritten before the archiver has read it.
- Every `maintain()` (about 1 s) it moves that read transaction forward
  without any lock: a spare connection begins a new read transaction first,
  then the old one ends, so one is held at every instant. Then the tracker's
  own PASSIVE autocheckpoints (1000 pages) can backfill up to the new mark.
- When the WAL holds more than `wal_reset_pages` frames it lets the WAL be
  reset: a PASSIVE checkpoint first (no lock), then, under an empty
  `BEGIN IMMEDIATE` on a second connection (no writer can append; nothing is
  written), it ships and publishes the last frames, ends its read transaction,
  runs a PASSIVE checkpoint of the few frames left, and begins a new read
  transaction, which now sits on slot 0; ROLLBACK. The tracker's next commit
  restarts the WAL from frame 1 with new salts, which the archiver follows.
  The lock is waited for at most `lock_wait` and its length is measured
  (`max_lock_ms` in status; docs/benchmarks.md).
- A WAL reset the archiver did not allow (its protection was lost: the
  archiver was not running, or something it cannot see) starts a new
  generation, because commits may be missing: it says so and takes a base.

Commit times are the times the archiver saw the commit in the wal-index
(polled every ~10 ms by the runner), kept even while shipping is stalled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path

from tracker_backup.archive.protocol import ArchiverStatus
from tracker_backup.archive.store import Generation, Shipper, SourceArchive
from tracker_backup.engines.sqlite.archive import wal
from tracker_backup.engines.sqlite.header import journal_mode_of
from tracker_backup.errors import SourceError, UsageError
from tracker_backup.store import write_json_atomic

log = logging.getLogger(__name__)

BIG_ENTRY = 16 << 20  # transactions larger than this are streamed, not buffered
MAX_OBSERVATIONS = 200_000
STATUS_EVERY = 5.0
RESET_RETRY = 0.05  # s between attempts to take the writer lock for a WAL reset


def wal_advice(db: Path) -> str:
    return (f"sqlite: {db} uses a rollback journal; continuous archiving needs WAL mode. "
            "Switch it once with 'tracker-backup sqlite-wal' (the tracker keeps working; "
            "see docs/sqlite.md)")


def check_wal_mode(db: Path) -> None:
    """UsageError (exit 2) with the sqlite-wal advice unless `db` is a WAL database."""
    try:
        mode = journal_mode_of(db)
    except SourceError as exc:  # unreadable or not SQLite: a configuration problem here
        raise UsageError(str(exc)) from None
    if mode != "wal":
        raise UsageError(wal_advice(db))


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def _connect(db: Path, timeout: float, *, threads: bool = False) -> sqlite3.Connection:
    return sqlite3.connect(str(db), timeout=timeout, isolation_level=None,
                           check_same_thread=not threads)


def _begin_read(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()


def _end_read(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.execute("COMMIT")


class SqliteArchiver:
    """Continuous archiver of one SQLite database (the `[sqlite]` section)."""

    engine = "sqlite"

    def __init__(self, database: Path, backup_path: Path, *, source: str = "sqlite",
                 busy_timeout: float = 5.0, lock_wait: float = 0.02,
                 wal_reset_pages: int = 16000, zstd_level: int = 3,
                 base_growth: float = 1.0, base_max_age: float = 86400.0):
        self.source = source
        self.db = Path(database)
        self.backup_path = Path(backup_path)
        self.busy_timeout = busy_timeout
        self.lock_wait = lock_wait
        self.wal_reset_pages = wal_reset_pages
        self.zstd_level = zstd_level
        self.base_growth = base_growth
        self.base_max_age = base_max_age
        self.archive = SourceArchive(backup_path, source)
        self._stack = contextlib.ExitStack()
        self._reader: sqlite3.Connection | None = None
        self._spare: sqlite3.Connection | None = None
        self._locker: sqlite3.Connection | None = None
        self._ckpt: sqlite3.Connection | None = None
        self._wal_fd = self._shm_fd = -1
        self.identity: dict = {}
        self.page_size = 0
        self.generation: Generation | None = None
        self.shipper: Shipper | None = None
        # Cursor: the WAL generation (salts) and the next frame to read in it.
        self._salts: tuple[int, int] | None = None
        self._next_frame = 1
        self._reset_allowed: tuple[int, int] | None = None  # salts we let the WAL reset from
        self._published_cursor: tuple[tuple[int, int] | None, int] = (None, 1)
        self._obs: deque = deque()  # (salts, mx_frame, time seen)
        self._hdr: wal.IndexHeader | None = None
        self._last_t = 0.0
        self._base_thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._base_error: str | None = None
        self._missing_since: float | None = None
        self._next_status = 0.0
        self.max_lock_ms = 0.0
        self.lock_ms: list[float] = []
        self.resets = 0
        self._reset_wanted = False
        self._in_reset = False
        self._last_reset_try = 0.0
        self.checkpoints = 0

    # -- opening ---------------------------------------------------------------------
    def open(self) -> None:
        check_wal_mode(self.db)
        self._stack.enter_context(self.archive.lock())
        for name in self.archive.remove_debris():
            log.info("%s: removed archive debris %s", self.source, name)
        self._attach()
        gen = self.archive.current()
        reason = self._continuation_problem(gen)
        if reason is None:
            self.generation = gen
            self.shipper = Shipper(gen, zstd_level=self.zstd_level)
            meta = self.shipper.last_published_meta or gen.bases()[0].info["position"]
            self._salts, self._next_frame = (meta["salt1"], meta["salt2"]), meta["frame"] + 1
            self._published_cursor = (self._salts, self._next_frame)
            log.info("%s: continuing archive generation %s after entry %d", self.source, gen.id,
                     self.shipper.last_seq,
                     extra={"journal": {"ARCHIVE_GENERATION": gen.id, "ARCHIVE_SOURCE": self.source}})
            # Ship what the WAL holds beyond the archive now, so that a read transaction
            # that happened to land on slot 0 cannot lose those frames to a reset.
            self.poll()
            self.publish()
            hdr = self._hdr
            if hdr is not None and hdr.n_backfill >= hdr.mx_frame and self._next_frame > hdr.mx_frame:
                self._reset_allowed = hdr.salts
            if not gen.bases():
                self._start_base()
        else:
            self._new_generation(reason, previous=gen.id if gen else None)

    def _attach(self) -> None:
        self._reader = _connect(self.db, self.busy_timeout)
        self._spare = _connect(self.db, self.busy_timeout)
        self._locker = _connect(self.db, self.lock_wait)
        self._ckpt = _connect(self.db, 0)
        _begin_read(self._reader)
        self._wal_fd = os.open(f"{self.db}-wal", os.O_RDONLY | os.O_CLOEXEC)
        self._shm_fd = os.open(f"{self.db}-shm", os.O_RDONLY | os.O_CLOEXEC)
        st = os.stat(self.db)
        self.page_size = self._reader.execute("PRAGMA page_size").fetchone()[0]
        self.identity = {"dev": st.st_dev, "ino": st.st_ino, "page_size": self.page_size}
        self._hdr = wal.read_index_header(self._shm_fd)

    def _detach(self) -> None:
        for conn in (self._spare, self._reader, self._locker, self._ckpt):
            if conn is not None:
                _end_read(conn)
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
        self._reader = self._spare = self._locker = self._ckpt = None
        for fd in (self._wal_fd, self._shm_fd):
            if fd >= 0:
                os.close(fd)
        self._wal_fd = self._shm_fd = -1

    def _continuation_problem(self, gen: Generation | None) -> str | None:
        """None when `gen` provably continues on the live WAL, else why a new generation."""
        if gen is None:
            return "first start"
        ident = gen.info.get("identity") or {}
        if (ident.get("dev"), ident.get("ino"), ident.get("page_size")) != (
                self.identity["dev"], self.identity["ino"], self.identity["page_size"]):
            return "database replaced (another file at the configured path)"
        segs, problem = gen.segments()
        if problem:
            return f"the archive generation {gen.id} is damaged ({problem})"
        if segs:
            meta = segs[-1].trailer.get("last_meta") or {}
        else:
            bases = [b for b in gen.bases() if b.seq == 0]
            if not bases:
                return "the previous generation holds neither entries nor a base"
            meta = bases[0].info.get("position") or {}
            if meta.get("frame") == 0:
                return "the previous generation's base was taken at an empty WAL"
        hdr = self._hdr
        try:
            salts, frame, cksum = (meta["salt1"], meta["salt2"]), meta["frame"], tuple(meta["cksum"])
        except (KeyError, TypeError):
            return "the previous generation's last entry has no WAL position"
        if hdr is None or hdr.salts != salts or hdr.mx_frame < frame:
            return ("gap: the WAL was reset while no archiver was watching "
                    "(commits made meanwhile may be missing from the previous generation)")
        f = wal.read_frame_header(self._wal_fd, self.page_size, frame)
        if f is None or (f.salt1, f.salt2) != salts or f.cksum != cksum or not f.is_commit:
            return "gap: the WAL no longer holds the last archived commit"
        return None

    def _new_generation(self, reason: str, previous: str | None) -> None:
        if self.shipper is not None:
            self.shipper.rewind()
        self.generation = self.archive.new_generation(
            engine=self.engine, reason=reason, identity=self.identity, origin=str(self.db),
            previous=previous)
        self.shipper = Shipper(self.generation, zstd_level=self.zstd_level)
        log.warning("%s: new archive generation %s: %s; taking a new base", self.source,
                    self.generation.id, reason,
                    extra={"journal": {"ARCHIVE_GENERATION": self.generation.id,
                                       "ARCHIVE_SOURCE": self.source, "ARCHIVE_REASON": reason}})
        self._salts = None
        self._start_base(initial=True)

    # -- the writer lock ----------------------------------------------------------------
    @contextlib.contextmanager
    def _writer_lock(self, wait: float | None = None):
        """Hold SQLite's writer lock with an empty BEGIN IMMEDIATE (writes nothing)."""
        assert self._locker is not None
        if wait is not None:
            self._locker.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
        try:
            self._locker.execute("BEGIN IMMEDIATE")
        finally:
            if wait is not None:
                self._locker.execute(f"PRAGMA busy_timeout = {int(self.lock_wait * 1000)}")
        t0 = time.monotonic()
        try:
            yield
        finally:
            self._locker.execute("ROLLBACK")
            ms = (time.monotonic() - t0) * 1000
            self.max_lock_ms = max(self.max_lock_ms, ms)
            self.lock_ms.append(ms)
            del self.lock_ms[:-1000]

    # -- bases ---------------------------------------------------------------------------
    def _start_base(self, initial: bool = False) -> None:
        """Pin a read transaction at a known entry (under the writer lock), copy it in a thread."""
        if self._base_thread is not None and self._base_thread.is_alive():
            return
        conn = _connect(self.db, self.busy_timeout, threads=True)
        try:
            with self._writer_lock(wait=self.busy_timeout):
                hdr = wal.read_index_header(self._shm_fd)
                if hdr is None:
                    raise OSError(f"cannot read the wal-index of {self.db}")
                if initial:
                    # The new generation starts here: everything up to mxFrame is in the base,
                    # and the pinned read transaction restarts at that very point.
                    self._salts, self._next_frame = hdr.salts, hdr.mx_frame + 1
                    self._published_cursor = (self._salts, self._next_frame)
                    self._hdr = hdr
                    _end_read(self._reader)
                    _begin_read(self._reader)
                    if hdr.n_backfill >= hdr.mx_frame:
                        self._reset_allowed = hdr.salts
                else:
                    self._poll()
                seq = self.shipper.next_seq - 1
                _begin_read(conn)
        except BaseException:
            conn.close()
            raise
        position = {"salt1": hdr.salt1, "salt2": hdr.salt2, "frame": hdr.mx_frame}
        last = wal.read_frame_header(self._wal_fd, self.page_size, hdr.mx_frame) \
            if hdr.mx_frame else None
        if last is not None:
            position["cksum"] = list(last.cksum)  # proves continuity after a restart
        gen, t = self.generation, time.time()
        self._base_error = None
        self._base_thread = threading.Thread(target=self._copy_base, name="archive-base",
                                             args=(conn, gen, seq, t, position), daemon=True)
        self._base_thread.start()

    def _copy_base(self, conn: sqlite3.Connection, gen: Generation, seq: int, t: float,
                   position: dict) -> None:
        tmp = gen.path / f".tmp-basecopy-{os.getpid()}.sqlite"
        try:
            dest = sqlite3.connect(str(tmp), isolation_level=None)
            try:
                dest.execute("PRAGMA journal_mode = OFF")

                def on_step(status: int, remaining: int, total: int) -> None:
                    if self._closing.is_set():
                        raise RuntimeError("cancelled: the archiver is stopping")
                conn.backup(dest, pages=1024, progress=on_step)
                pages = dest.execute("PRAGMA page_count").fetchone()[0]
                check = dest.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                dest.close()
            _end_read(conn)
            if check != "ok":
                raise RuntimeError(f"quick_check of the base copy said {check!r}")
            base = gen.publish_base(tmp, kind="sqlite", seq=seq, time=t, position=position,
                                    extra={"page_size": self.page_size, "page_count": pages,
                                           "origin": str(self.db)})
            log.info("%s: archive base %s/%s published (%d pages, after entry %d)", self.source,
                     gen.id, base.path.name, pages, seq,
                     extra={"journal": {"ARCHIVE_GENERATION": gen.id, "ARCHIVE_BASE_SEQ": seq}})
        except Exception as exc:  # noqa: BLE001 - reported, retried by maintain()
            self._base_error = f"{type(exc).__name__}: {exc}"
            log.error("%s: taking the archive base failed (will retry): %s", self.source,
                      self._base_error)
        finally:
            with contextlib.suppress(Exception):
                conn.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _base_due(self) -> bool:
        gen = self.generation
        if gen is None or (self._base_thread is not None and self._base_thread.is_alive()):
            return False
        bases = gen.bases()
        if bases:
            seq, when, size = bases[-1].seq, bases[-1].time, bases[-1].info.get("bytes", 0)
        else:
            first = gen.start()[0]
            if first == 1:
                return True  # no base at all
            # Retention removed the own bases: a kept snapshot is the anchor (PRUNED.json).
            try:
                when = (gen.path / "PRUNED.json").stat().st_mtime
                size = os.stat(self.db).st_size
            except OSError:
                return True
            seq = first - 1
        segs, _ = gen.segments()
        after = sum(s.bytes for s in segs if s.first_seq > seq)
        return (after > self.base_growth * size + (64 << 20)
                or time.time() - when > self.base_max_age)

    # -- reading the WAL -------------------------------------------------------------------
    def observe(self) -> None:
        """Note the time the wal-index shows new commits (cheap; also while stalled)."""
        if self._shm_fd < 0:
            return
        hdr = wal.read_index_header(self._shm_fd)
        if hdr is None:
            return
        self._hdr = hdr
        key = (hdr.salts, hdr.mx_frame)
        if not self._obs or self._obs[-1][:2] != key:
            self._obs.append((hdr.salts, hdr.mx_frame, time.time()))
            if len(self._obs) > MAX_OBSERVATIONS:
                # Thin out evenly: a commit then gets a slightly later time, never an earlier one.
                self._obs = deque(o for i, o in enumerate(self._obs) if i % 2 == 1)

    def _seen_at(self, salts: tuple[int, int], frame: int) -> float:
        for s, mx, t in self._obs:
            if s == salts and mx >= frame:
                return max(t, self._last_t)
        return max(time.time(), self._last_t)

    def _forget_observations(self) -> None:
        salts, frame = self._published_cursor
        while self._obs and (self._obs[0][0] != salts or self._obs[0][1] < frame):
            if self._obs[0][0] != salts and not any(o[0] == salts for o in self._obs):
                break
            self._obs.popleft()

    def poll(self) -> int:
        """Append every commit the wal-index shows beyond the cursor; returns how many."""
        if self.shipper is None or self._shm_fd < 0:
            return 0
        n = self._poll()
        if self._reset_wanted and not self._in_reset:
            self._in_reset = True
            try:
                self._try_reset()
            finally:
                self._in_reset = False
        return n

    def _poll(self) -> int:
        self.observe()
        hdr = self._hdr
        if hdr is None or self._salts is None:
            return 0
        if hdr.salts != self._salts:
            if hdr.mx_frame == 0:
                return 0  # reset announced, no frame of the new WAL generation yet
            if self._reset_allowed != self._salts:
                self._gap("gap: the WAL was reset before the archiver had shipped it")
                return 0
            self.resets += 1
            self._salts, self._next_frame = hdr.salts, 1
            self._reset_allowed = None
        if hdr.mx_frame < self._next_frame:
            return 0
        return self._read_commits(self._next_frame, hdr.mx_frame)

    def _read_commits(self, first: int, last: int) -> int:
        pages: list[int] = []
        datas: list[bytes] = []
        txn_first = first
        count = 0
        for f in wal.read_frames(self._wal_fd, self.page_size, first, last):
            if (f.salt1, f.salt2) != self._salts:
                break  # not (yet) this WAL generation's frame: read again next poll
            pages.append(f.pgno)
            datas.append(f.page)
            if len(datas) * self.page_size > BIG_ENTRY and not f.is_commit:
                count += self._stream_big(txn_first, last)
                return count
            if f.is_commit:
                self._append(f, pages, b"".join(datas))
                pages, datas = [], []
                txn_first = f.index + 1
                count += 1
        return count

    def _append(self, commit: wal.Frame, pages: list[int], data: bytes) -> None:
        t = self._seen_at(self._salts, commit.index)
        self._last_t = t
        meta = {"salt1": commit.salt1, "salt2": commit.salt2, "frame": commit.index,
                "db_pages": commit.n_truncate, "pages": pages, "cksum": list(commit.cksum)}
        self.shipper.append(t, meta, data)
        self._next_frame = commit.index + 1

    def _stream_big(self, first: int, last: int) -> int:
        """A transaction too large to buffer: find its commit frame, then stream its pages."""
        pages: list[int] = []
        commit = None
        for f in wal.read_frames(self._wal_fd, self.page_size, first, last, with_pages=False):
            if (f.salt1, f.salt2) != self._salts:
                return 0
            pages.append(f.pgno)
            if f.is_commit:
                commit = f
                break
        if commit is None:
            return 0
        t = self._seen_at(self._salts, commit.index)
        self._last_t = t
        meta = {"salt1": commit.salt1, "salt2": commit.salt2, "frame": commit.index,
                "db_pages": commit.n_truncate, "pages": pages, "cksum": list(commit.cksum)}
        chunks = (f.page for f in wal.read_frames(self._wal_fd, self.page_size, first, commit.index))
        self.shipper.append_stream(t, meta, len(pages) * self.page_size, chunks)
        self._next_frame = commit.index + 1
        return 1

    def _gap(self, reason: str) -> None:
        """Protection was lost: what follows cannot be proven complete. New generation."""
        previous = self.generation.id if self.generation else None
        with contextlib.suppress(OSError):
            self.shipper.publish()
        self._new_generation(reason, previous)

    # -- publishing ------------------------------------------------------------------------
    def publish(self) -> int:
        n = self.shipper.publish() if self.shipper else 0
        if n:
            self._published_cursor = (self._salts, self._next_frame)
            self._forget_observations()
        return n

    def rewind(self) -> None:
        if self.shipper is not None:
            self.shipper.rewind()
            # Re-read entries get their observed times again (monotone from the last published).
            self._last_t = self.shipper.last_published_time or 0.0
        self._salts, self._next_frame = self._published_cursor

    # -- housekeeping ----------------------------------------------------------------------
    def maintain(self) -> None:
        if self._replaced():
            return
        self._cycle_read()
        hdr = self._hdr
        self._reset_wanted = hdr is not None and hdr.mx_frame > self.wal_reset_pages
        self._try_reset()
        if self._base_due():
            self._start_base()
        if self.shipper is not None:
            self.shipper.compact(time.time())
        if time.monotonic() >= self._next_status:
            self._write_status()
            self._next_status = time.monotonic() + STATUS_EVERY

    def _replaced(self) -> bool:
        """Detect the database file being replaced or removed; switch to the new one."""
        try:
            st = os.stat(self.db)
        except FileNotFoundError:
            if self._missing_since is None:
                self._missing_since = time.time()
                log.error("%s: the database %s is gone; archived up to entry %d, waiting for it",
                          self.source, self.db, self.shipper.last_seq if self.shipper else 0)
            return True
        if (st.st_dev, st.st_ino) == (self.identity.get("dev"), self.identity.get("ino")):
            self._missing_since = None
            return False
        try:
            check_wal_mode(self.db)
        except UsageError as exc:
            log.error("%s: %s", self.source, exc)
            return True
        self._poll()
        self.publish()
        previous = self.generation.id if self.generation else None
        self._detach()
        self._missing_since = None
        self._attach()
        self._new_generation("database replaced (another file at the configured path)", previous)
        return True

    def _cycle_read(self) -> None:
        """Move the pinned read transaction forward with no lock: new one first, old one after."""
        spare, reader = self._spare, self._reader
        if spare is None or reader is None:
            return
        _begin_read(spare)
        hdr = wal.read_index_header(self._shm_fd)
        if hdr is not None and hdr.n_backfill >= hdr.mx_frame:
            # The new read transaction may sit on slot 0: once the old one ends, the WAL may be
            # reset. First ship and publish every frame up to mxFrame (the old one still protects).
            try:
                self._poll()
                self.publish()
            except BaseException:
                _end_read(spare)
                raise
            if self._salts != hdr.salts or self._next_frame <= hdr.mx_frame:
                _end_read(spare)
                return
            self._reset_allowed = hdr.salts
        _end_read(reader)
        self._reader, self._spare = spare, reader

    def _try_reset(self) -> None:
        """Attempt `_allow_reset` while wanted, at most every RESET_RETRY s (the lock may be busy)."""
        now = time.monotonic()
        if not self._reset_wanted or now - self._last_reset_try < RESET_RETRY:
            return
        self._last_reset_try = now
        if self._allow_reset():
            self._reset_wanted = False

    def _allow_reset(self) -> bool:
        """Let the WAL restart: checkpoint, then under the writer lock ship the rest and move to slot 0."""
        self._cycle_read()  # a fresh read mark: the checkpoint below then backfills nearly all
        with contextlib.suppress(sqlite3.Error):
            self._ckpt.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
        self._poll()
        self.publish()
        try:
            lock = self._writer_lock()
            lock.__enter__()
        except sqlite3.OperationalError:
            return False  # the tracker is writing: try again in RESET_RETRY
        try:
            self._poll()
            self.publish()
            hdr = self._hdr
            if hdr is None or self._salts != hdr.salts or self._next_frame <= hdr.mx_frame:
                return False
            _end_read(self._reader)
            try:
                with contextlib.suppress(sqlite3.Error):
                    self._ckpt.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
            finally:
                _begin_read(self._reader)
            after = wal.read_index_header(self._shm_fd)
            if after is not None and after.n_backfill >= after.mx_frame:
                self._reset_allowed = after.salts
                return True
            return False
        finally:
            lock.__exit__(None, None, None)

    # -- status ------------------------------------------------------------------------------
    def status(self) -> ArchiverStatus:
        sh = self.shipper
        now = time.time()
        lag = 0.0
        unread = self._hdr is not None and self._salts == self._hdr.salts \
            and self._hdr.mx_frame >= self._next_frame
        oldest = sh.oldest_pending_time if sh else None
        if unread:
            for s, mx, t in self._obs:
                if s == self._salts and mx >= self._next_frame:
                    oldest = min(oldest, t) if oldest else t
                    break
        if oldest is not None:
            lag = max(0.0, now - oldest)
        return ArchiverStatus(
            source=self.source, generation=self.generation.id if self.generation else None,
            last_seq=sh.last_seq if sh else 0,
            last_time=sh.last_published_time if sh else None,
            pending=sh.pending if sh else 0, lag_seconds=lag,
            stalled=("database is missing" if self._missing_since else None),
            extra={"wal_frames": self._hdr.mx_frame if self._hdr else 0,
                   "max_lock_ms": round(self.max_lock_ms, 3),
                   "lock_ms_p50": _pct(self.lock_ms, 0.5), "lock_ms_p99": _pct(self.lock_ms, 0.99),
                   "locks": len(self.lock_ms), "wal_resets": self.resets,
                   "base": "copying" if self._base_thread and self._base_thread.is_alive()
                   else (self._base_error or "ok")})

    def _write_status(self) -> None:
        st = self.status()
        write_json_atomic(self.archive.path / "status.json", {
            "pid": os.getpid(), "updated": time.time(), "source": st.source,
            "generation": st.generation, "last_seq": st.last_seq, "last_time": st.last_time,
            "lag_seconds": st.lag_seconds, "stalled": st.stalled, **st.extra})

    # -- closing -------------------------------------------------------------------------------
    def close(self) -> None:
        try:
            if self.shipper is not None and self._shm_fd >= 0:
                self._poll()
                self.publish()
                with contextlib.suppress(OSError):
                    self._write_status()
        finally:
            self._closing.set()  # a base copy in progress stops at its next step
            if self._base_thread is not None:
                self._base_thread.join(timeout=60)
            self._detach()
            self._stack.close()
