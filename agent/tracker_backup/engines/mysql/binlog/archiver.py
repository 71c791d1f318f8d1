"""The MySQL engine's continuous archiver: the binlog, from the newest dump's coordinates on.

Meets archive/protocol.py's `Archiver`; entries and generations are as in
docs/format.md "Binlog archive". The generic parts (segments, chain, atomic
publishing, compaction) are archive/store.py's; this module decides where to
stream from and what an entry is:

- open(): check the server (log_bin, checksum, privileges: checks.py), take
  the archive lock, then continue the current generation from its last
  published entry, or start a new one at the binlog coordinates recorded in
  the newest good dump (`sources.mysql.binlog` of its manifest).
- poll(): the follower's new entries (whole transactions) into the Shipper.
- rewind(): forget unpublished entries and stream again from the last
  published one: no gap, no duplicate.
- When the server no longer has the binlog the archive must continue from
  (purged), the archive cannot be continued: the archiver says so loudly
  (error in the journal, `stalled` in status) and starts a new generation as
  soon as a dump exists whose coordinates the server still has ("the next
  dump is the new base").
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from tracker_backup.archive.protocol import ArchiverStatus
from tracker_backup.archive.store import Generation, Shipper, SourceArchive
from tracker_backup.engines.mysql.binlog import checks
from tracker_backup.engines.mysql.binlog.events import file_index
from tracker_backup.engines.mysql.binlog.follow import BinlogFollower
from tracker_backup.engines.mysql.binlog.stream import archiver_server_id
from tracker_backup.engines.mysql.client import MysqlClient, read_password
from tracker_backup.errors import RunFailed, UsageError
from tracker_backup.store import Store, parse_iso, write_json_atomic

log = logging.getLogger(__name__)

STATUS_EVERY = 5.0
SERVER_POSITION_EVERY = 10.0  # each look costs a client run through exec_prefix
BASE_RETRY_EVERY = 60.0


def dump_bases(backup_path: Path, source: str = "mysql") -> list[dict]:
    """Good snapshots whose dump recorded binlog coordinates, oldest first.

    Each: {"snapshot", "file", "pos", "finished" (POSIX s), "database"}.
    """
    out = []
    for snap in Store(backup_path).snapshots():
        if not snap.good or not snap.manifest:
            continue
        src = (snap.manifest.get("sources") or {}).get(source) or {}
        coords = src.get("binlog") or {}
        if not coords.get("file") or not coords.get("position"):
            continue
        try:
            finished = parse_iso(snap.manifest["finished"]).timestamp()
        except (KeyError, ValueError, TypeError):
            continue
        out.append({"snapshot": snap.id, "file": coords["file"], "pos": int(coords["position"]),
                    "finished": finished, "database": src.get("database")})
    out.sort(key=lambda b: (file_index(b["file"])[1], b["pos"], b["finished"]))
    return out


def resume_point(gen: Generation, last_meta: dict | None) -> tuple[str, int, str | None]:
    """(file, pos, file whose format description is archived) to continue `gen` from."""
    if last_meta is None:
        start = (gen.info.get("identity") or {}).get("start") or {}
        return start["file"], int(start["pos"]), None
    return last_meta["file"], int(last_meta["end"]), last_meta["file"]


class BinlogArchiver:
    """Continuous archiver of one MySQL/MariaDB server's binlog (the `[mysql]` section)."""

    engine = "mysql"

    def __init__(self, cfg, backup_path: Path, *, source: str = "mysql", zstd_level: int = 3,
                 password: str | None = None):
        self.cfg = cfg
        self.source = source
        self.backup_path = Path(backup_path)
        self.zstd_level = zstd_level
        self._password = password
        self.archive = SourceArchive(backup_path, source)
        self._stack = contextlib.ExitStack()
        self.client: MysqlClient | None = None
        self.tools = None
        self.settings: dict = {}
        self.identity: dict = {}
        self.generation: Generation | None = None
        self.shipper: Shipper | None = None
        self.follower: BinlogFollower | None = None
        self.waiting: str | None = None  # why nothing is archived (no base yet, purged), loud
        self.server_position: tuple[str, int] | None = None
        self._next_server_look = 0.0
        self._next_base_try = 0.0
        self._next_status = 0.0
        self._published_meta: dict | None = None

    # -- opening -------------------------------------------------------------------------
    def open(self) -> None:
        password = self._password if self._password is not None else read_password(self.cfg)
        self.client = MysqlClient(self.cfg, password)
        self.tools = self.client.tools()
        s = checks.server_settings(self.client)
        found = checks.problems(flavour=s["flavour"], log_bin=s["log_bin"],
                                binlog_format=s["binlog_format"], checksum=s["binlog_checksum"],
                                privileges=s["privileges"], grantee=s["grantee"])
        if found:
            raise UsageError("mysql: " + "; ".join(found))
        for line in checks.warnings(binlog_format=s["binlog_format"]):
            log.warning("mysql: %s", line)
        self.settings = s
        self._stack.enter_context(self.archive.lock())
        for name in self.archive.remove_debris():
            log.info("%s: removed archive debris %s", self.source, name)
        server_files = dict(checks.binary_logs(self.client))
        base = file_index(next(iter(server_files)))[0] if server_files else "binlog"
        self.identity = {"server_id": s["server_id"], "server_uuid": s["server_uuid"],
                         "log_basename": base}
        gen = self.archive.current()
        reason = self._continuation_problem(gen, server_files)
        if reason is None:
            self._attach(gen)
        else:
            self._start_generation(reason, previous=gen.id if gen else None,
                                   server_files=server_files)

    def _continuation_problem(self, gen: Generation | None, server_files: dict) -> str | None:
        if gen is None:
            return "first start"
        ident = gen.info.get("identity") or {}
        if {k: ident.get(k) for k in self.identity} != self.identity:
            return "another server (server_id / server_uuid / binlog name changed)"
        segs, problem = gen.segments()
        if problem:
            return f"the archive generation {gen.id} is damaged ({problem})"
        last = segs[-1].trailer.get("last_meta") if segs else None
        file, _pos, _ = resume_point(gen, last)
        if file not in server_files:
            return (f"gap: the server no longer has {file}, which the archive continues from "
                    f"(purged while no archiver was running)")
        return None

    def _attach(self, gen: Generation) -> None:
        self.generation = gen
        self.shipper = Shipper(gen, zstd_level=self.zstd_level)
        self._published_meta = self.shipper.last_published_meta
        file, pos, archived = resume_point(gen, self._published_meta)
        self.follower = BinlogFollower(self.client, self.tools, self._server_id(), file, pos, archived)
        self.waiting = None
        log.info("%s: continuing archive generation %s from %s:%d", self.source, gen.id, file, pos,
                 extra={"journal": {"ARCHIVE_GENERATION": gen.id, "ARCHIVE_SOURCE": self.source}})

    def _server_id(self) -> int:
        return archiver_server_id(f"{self.backup_path.resolve()}:{self.source}")

    def _start_generation(self, reason: str, previous: str | None, server_files: dict) -> None:
        """A new generation at the newest dump the server still has the binlog for."""
        if self.follower is not None:
            self.follower.stop()
        self.follower = None
        self.shipper = None
        self.generation = None
        bases = dump_bases(self.backup_path, self.source)
        usable = [b for b in bases if b["file"] in server_files]
        if not usable:
            self.waiting = (
                f"binlog archiving waits for a dump: {reason}; " + (
                    "no snapshot has a dump with binlog coordinates yet (run tracker-backup run)"
                    if not bases else
                    f"the newest dump ({bases[-1]['snapshot']}, {bases[-1]['file']}) is older than "
                    "the oldest binlog the server still has: the next dump becomes the new base"))
            log.error("%s: %s", self.source, self.waiting,
                      extra={"journal": {"ARCHIVE_SOURCE": self.source, "ARCHIVE_STALLED": "1"}})
            self._next_base_try = time.monotonic() + BASE_RETRY_EVERY
            return
        b = usable[-1]
        ident = {**self.identity, "start": {"file": b["file"], "pos": b["pos"]},
                 "base_snapshot": b["snapshot"]}
        self.generation = self.archive.new_generation(
            engine=self.engine, reason=reason, identity=ident, origin=self._origin(),
            previous=previous)
        self.shipper = Shipper(self.generation, zstd_level=self.zstd_level)
        self._published_meta = None
        self.follower = BinlogFollower(self.client, self.tools, self._server_id(), b["file"], b["pos"])
        self.waiting = None
        log.warning("%s: new archive generation %s from %s:%d (the dump of snapshot %s): %s",
                    self.source, self.generation.id, b["file"], b["pos"], b["snapshot"], reason,
                    extra={"journal": {"ARCHIVE_GENERATION": self.generation.id,
                                       "ARCHIVE_SOURCE": self.source, "ARCHIVE_REASON": reason}})

    def _origin(self) -> str:
        where = (str(self.cfg.socket) if self.cfg.socket else
                 f"{self.cfg.host}:{self.cfg.port}" if self.cfg.host else "default socket")
        prefix = f" via {' '.join(self.cfg.exec_prefix)}" if self.cfg.exec_prefix else ""
        return f"{where}{prefix}"

    # -- the loop ------------------------------------------------------------------------
    def observe(self) -> None:
        """Nothing to do: entries carry the server's commit time (`ts`)."""

    def poll(self) -> int:
        if self.follower is None or self.shipper is None:
            return 0
        entries = self.follower.poll()
        now = time.time()
        for meta, data in entries:
            self.shipper.append(now, meta, data)
        problem = self.follower.problem
        if problem is not None and self.waiting is None:
            kind, sentence = problem
            self.waiting = f"binlog archiving stopped: {sentence}"
            log.error("%s: %s", self.source, self.waiting,
                      extra={"journal": {"ARCHIVE_SOURCE": self.source, "ARCHIVE_STALLED": "1",
                                         "ARCHIVE_REASON": kind}})
            self._next_base_try = time.monotonic()
        return len(entries)

    def publish(self) -> int:
        n = self.shipper.publish() if self.shipper else 0
        if n:
            self._published_meta = self.shipper.last_published_meta
        return n

    def rewind(self) -> None:
        if self.shipper is None or self.follower is None or self.generation is None:
            return
        self.shipper.rewind()
        file, pos, archived = resume_point(self.generation, self._published_meta)
        self.follower.reset(file, pos, archived)

    def maintain(self) -> None:
        now = time.monotonic()
        try:
            if self.follower is not None and self.follower.problem \
                    and self.follower.problem[0] == "purged" and now >= self._next_base_try:
                self._next_base_try = now + BASE_RETRY_EVERY
                self.publish()
                self._start_generation(f"gap: {self.follower.problem[1]}",
                                       self.generation.id if self.generation else None,
                                       dict(checks.binary_logs(self.client)))
            elif self.generation is None and now >= self._next_base_try:
                self._next_base_try = now + BASE_RETRY_EVERY
                self._start_generation(self.waiting or "waiting for a dump", None,
                                       dict(checks.binary_logs(self.client)))
        except RunFailed as exc:  # the server is away (restarting): try again later
            log.warning("%s: cannot look for a new base now: %s", self.source, exc)
        if self.shipper is not None:
            self.shipper.compact(time.time())
        if now >= self._next_server_look:
            self._next_server_look = now + SERVER_POSITION_EVERY
            try:
                self.server_position = checks.current_position(
                    self.client, self.settings["flavour"], self.tools.version)
            except Exception as exc:  # noqa: BLE001 - a status nicety; the stream says what matters
                log.debug("%s: server position unknown: %s", self.source, exc)
        if now >= self._next_status:
            self._write_status()
            self._next_status = now + STATUS_EVERY

    # -- status --------------------------------------------------------------------------
    def status(self) -> ArchiverStatus:
        sh, fo = self.shipper, self.follower
        lag = 0.0
        if sh is not None and sh.oldest_pending_time is not None:
            lag = max(0.0, time.time() - sh.oldest_pending_time)
        behind = None
        if fo is not None and self.server_position is not None and \
                self.server_position[0] == fo.file:
            behind = max(0, self.server_position[1] - fo.pos)
        meta = self._published_meta or {}
        return ArchiverStatus(
            source=self.source, generation=self.generation.id if self.generation else None,
            last_seq=sh.last_seq if sh else 0,
            last_time=sh.last_published_time if sh else None,
            pending=sh.pending if sh else 0, lag_seconds=lag, stalled=self.waiting,
            extra={"binlog_file": fo.file if fo else None, "binlog_pos": fo.pos if fo else None,
                   "last_commit_ts": meta.get("ts"),
                   "server_file": self.server_position[0] if self.server_position else None,
                   "server_pos": self.server_position[1] if self.server_position else None,
                   "bytes_behind": behind, "tool_runs": fo.runs if fo else 0,
                   "streaming": bool(fo and fo.stream is not None and fo.problem is None),
                   "tool_restarts": fo.restarts if fo else 0,
                   "last_error": fo.last_error if fo else None})

    def _write_status(self) -> None:
        st = self.status()
        with contextlib.suppress(OSError):
            write_json_atomic(self.archive.path / "status.json", {
                "pid": os.getpid(), "updated": time.time(), "source": st.source,
                "generation": st.generation, "last_seq": st.last_seq, "last_time": st.last_time,
                "lag_seconds": st.lag_seconds, "stalled": st.stalled, "pending": st.pending,
                **st.extra})

    def close(self) -> None:
        try:
            if self.shipper is not None and self.follower is not None:
                for _ in range(3):  # what the tool already sent
                    if not self.poll():
                        break
                self.publish()
                self._write_status()
        finally:
            if self.follower is not None:
                self.follower.stop()
            self._stack.close()
