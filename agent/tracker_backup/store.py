"""The snapshot store: layout, lock, staging, atomic publish, listing, deletion.

Layout (docs/format.md is the user-facing description):

    <path>/.lock                    flock; its text says who holds it
    <path>/.state/status.json       last run and last success
    <path>/.state/checks.json       later verify/drill results per snapshot
    <path>/.staging-<ID>/           a run in progress (never a snapshot)
    <path>/.deleting-<ID>/          a snapshot being removed (never a snapshot)
    <path>/<ID>/MANIFEST.json       a published snapshot
    <path>/<ID>/...                 its artifacts

Invariant: a directory named like an ID exists only if it was renamed there
from a staging directory whose artifacts and MANIFEST.json were already
fsynced. A crash at any moment therefore leaves either a complete snapshot or
hidden debris that the next run removes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tracker_backup.artifacts import DIR_MODE, FILE_MODE, fsync_dir
from tracker_backup.errors import LockHeld, RunFailed

FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"
ID_RE = re.compile(r"^\d{8}T\d{6}Z(?:-\d+)?$")
STAGING_PREFIX = ".staging-"
DELETING_PREFIX = ".deleting-"
STATE_DIR = ".state"


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON next to `path`, fsync, rename over it, fsync the directory."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


@dataclass
class Snapshot:
    """A published snapshot as found on disk."""

    id: str
    path: Path
    manifest: dict | None
    problem: str | None = None  # why the snapshot is damaged, if it is
    check: dict | None = None  # latest verify/drill result recorded in .state

    @property
    def good(self) -> bool:
        """Readable manifest and not failed by a later verification."""
        return self.problem is None and not (self.check and self.check.get("result") == "failed")

    @property
    def started(self) -> datetime | None:
        try:
            return parse_iso(self.manifest["started"]) if self.manifest else None
        except (KeyError, ValueError, TypeError):
            return None

    @property
    def sequence(self) -> int:
        try:
            return int(self.manifest["sequence"]) if self.manifest else -1
        except (KeyError, ValueError, TypeError):
            return -1

    @property
    def size(self) -> int:
        return sum(a.get("bytes", 0) for a in (self.manifest or {}).get("artifacts", []))


@dataclass
class Staging:
    """A run's hidden work directory, published by `Store.publish`."""

    id: str
    path: Path
    started: datetime
    sequence: int
    artifacts: list = field(default_factory=list)


class Store:
    """Operations on one backup path."""

    def __init__(self, path: Path):
        self.path = Path(path)

    # -- preparation -----------------------------------------------------
    def prepare(self, *, require_mountpoint: bool, create: bool = True,
                writable: bool = True) -> None:
        """Check the backup path is usable; create it (one level) if allowed.

        writable=False is for readers (verify, restore): a backup volume mounted
        read-only to restore from must still be readable.
        """
        if require_mountpoint:
            if not self.path.is_dir():
                raise RunFailed(
                    f"backup path {self.path} does not exist and require_mountpoint = yes: "
                    "is the backup volume mounted?"
                )
            if not os.path.ismount(self.path):
                raise RunFailed(
                    f"backup path {self.path} is not a mount point and require_mountpoint = yes: "
                    "refusing to write to the root filesystem (mount the backup volume)"
                )
        if not self.path.exists():
            if not create:
                raise RunFailed(f"backup path {self.path} does not exist")
            try:
                self.path.mkdir(mode=DIR_MODE)
            except FileNotFoundError:
                raise RunFailed(
                    f"backup path {self.path}: parent directory {self.path.parent} does not exist"
                ) from None
            except OSError as exc:
                raise RunFailed(f"backup path {self.path}: cannot create: {exc.strerror}") from None
        if not self.path.is_dir():
            raise RunFailed(f"backup path {self.path} is not a directory")
        if not writable:
            return
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise RunFailed(f"backup path {self.path} is not writable")
        (self.path / STATE_DIR).mkdir(mode=DIR_MODE, exist_ok=True)

    @property
    def window_journal_path(self) -> Path:
        """Where runs note that they stopped the tracker (see window.py)."""
        return self.path / STATE_DIR / "maintenance-window.json"

    # -- lock ------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, command: str) -> Iterator[None]:
        """Hold the store's exclusive lock; raise LockHeld naming the holder.

        flock is released by the kernel when the holder dies, so a killed run
        never leaves a stale lock behind; the file's text is only information.
        """
        lock_path = self.path / ".lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            if exc.errno != errno.EROFS:
                raise RunFailed(f"cannot open lock file {lock_path}: {exc.strerror}") from None
            # Read-only filesystem: nothing can change through this mount, but a
            # writer elsewhere (a read-write mount of the same volume) still
            # honours flock on the existing file, which a read-only fd can take.
            try:
                fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                yield
                return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
                raise LockHeld(
                    f"another tracker-backup run holds {lock_path}: {holder or 'unknown holder'}"
                ) from None
            info = (f"pid {os.getpid()} on {socket.gethostname()}, '{command}' "
                    f"since {iso(utc_now())}\n")
            with contextlib.suppress(OSError):  # read-only: the text is only information
                os.ftruncate(fd, 0)
                os.pwrite(fd, info.encode(), 0)
            yield
        finally:
            os.close(fd)

    # -- staging and publish ---------------------------------------------
    def remove_debris(self) -> list[str]:
        """Remove staging/deleting directories left by crashed runs (lock held)."""
        removed = []
        for entry in self.path.iterdir():
            if entry.name.startswith((STAGING_PREFIX, DELETING_PREFIX)) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        for entry in (self.path / STATE_DIR).glob(".*.tmp-*"):
            entry.unlink(missing_ok=True)
        # A deletion cut short also left the snapshot's verify/drill record: drop it, or a
        # new snapshot that reuses the ID (same second) would inherit it.
        gone = {n.removeprefix(DELETING_PREFIX) for n in removed if n.startswith(DELETING_PREFIX)}
        checks = self.read_checks()
        if gone & checks.keys():
            write_json_atomic(self.path / STATE_DIR / "checks.json",
                              {k: v for k, v in checks.items() if k not in gone})
        return removed

    def new_staging(self, now: datetime | None = None) -> Staging:
        """Create the hidden work directory of a new snapshot (lock held)."""
        now = now or utc_now()
        base = now.strftime("%Y%m%dT%H%M%SZ")
        taken = {e.name for e in self.path.iterdir()}
        snap_id, n = base, 0
        while snap_id in taken:
            n += 1
            snap_id = f"{base}-{n}"
        seq = max((s.sequence for s in self.snapshots()), default=0) + 1
        path = self.path / f"{STAGING_PREFIX}{snap_id}"
        path.mkdir(mode=DIR_MODE)
        return Staging(id=snap_id, path=path, started=now, sequence=seq)

    def publish(self, staging: Staging, manifest: dict) -> Path:
        """Write the manifest, make everything durable, rename into place."""
        write_json_atomic(staging.path / MANIFEST, manifest)
        for root, dirs, _files in os.walk(staging.path):
            for d in dirs:
                fsync_dir(Path(root) / d)
        fsync_dir(staging.path)
        final = self.path / staging.id
        os.rename(staging.path, final)
        fsync_dir(self.path)
        return final

    def discard(self, staging: Staging) -> None:
        """Remove a failed run's staging directory."""
        shutil.rmtree(staging.path, ignore_errors=True)

    # -- listing ---------------------------------------------------------
    def snapshots(self) -> list[Snapshot]:
        """Published snapshots, newest first (by sequence, then id)."""
        if not self.path.is_dir():
            return []
        checks = self.read_checks()
        found = []
        for entry in self.path.iterdir():
            if not ID_RE.match(entry.name) or not entry.is_dir():
                continue
            manifest, problem = None, None
            try:
                with open(entry / MANIFEST, encoding="utf-8") as fh:
                    manifest = json.load(fh)
                if not isinstance(manifest, dict) or manifest.get("id") != entry.name:
                    problem = f"{MANIFEST} does not describe snapshot {entry.name}"
                    manifest = manifest if isinstance(manifest, dict) else None
                elif manifest.get("format") != FORMAT_VERSION:
                    problem = f"unknown format version {manifest.get('format')!r}"
                if manifest is not None and (malformed := _manifest_malformed(manifest)):
                    problem = problem or f"{MANIFEST} is malformed: {malformed}"
                    manifest = None  # never handed on: its shape would crash the readers
            except FileNotFoundError:
                problem = f"{MANIFEST} is missing"
            except (OSError, ValueError) as exc:
                problem = f"{MANIFEST} is unreadable: {exc}"
            found.append(Snapshot(entry.name, entry, manifest, problem, checks.get(entry.name)))
        found.sort(key=lambda s: (s.sequence, s.id), reverse=True)
        return found

    def get(self, snap_id: str) -> Snapshot:
        """One snapshot by id, or `latest` for the newest good one."""
        snaps = self.snapshots()
        if snap_id == "latest":
            for snap in snaps:
                if snap.good:
                    return snap
            raise RunFailed(f"no good snapshot in {self.path}")
        for snap in snaps:
            if snap.id == snap_id:
                return snap
        raise RunFailed(f"no snapshot {snap_id!r} in {self.path}")

    def delete(self, snap: Snapshot) -> None:
        """Remove a snapshot: first hide it by renaming, then delete the files."""
        hidden = self.path / f"{DELETING_PREFIX}{snap.id}"
        os.rename(snap.path, hidden)
        fsync_dir(self.path)
        shutil.rmtree(hidden)
        checks = self.read_checks()
        if checks.pop(snap.id, None) is not None:
            write_json_atomic(self.path / STATE_DIR / "checks.json", checks)

    # -- state -----------------------------------------------------------
    def _read_state(self, name: str) -> dict:
        try:
            with open(self.path / STATE_DIR / name, encoding="utf-8") as fh:
                data = json.load(fh)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def read_status(self) -> dict:
        """status.json, keeping only well-formed run records (a damaged file is not fatal)."""
        status = self._read_state("status.json")
        for key in ("last_run", "last_success"):
            if key in status and not _run_record_ok(status[key], needs_snapshot=key == "last_success"):
                del status[key]
        failures = status.get("run_failures_total")
        if not (isinstance(failures, int) and not isinstance(failures, bool) and failures >= 0):
            status["run_failures_total"] = 0  # missing or damaged: a counter reset
        return status

    def record_run(self, result: dict) -> None:
        """Record a run's outcome (and, if it succeeded, as the last success)."""
        status = self.read_status()
        status["last_run"] = result
        if result.get("result") == "success":
            status["last_success"] = result
        else:  # a counter for monitoring (tracker_backup_run_failures_total)
            status["run_failures_total"] += 1
        (self.path / STATE_DIR).mkdir(mode=DIR_MODE, exist_ok=True)
        write_json_atomic(self.path / STATE_DIR / "status.json", status)

    def read_checks(self) -> dict:
        """checks.json, keeping only well-formed entries (a damaged file is not fatal)."""
        checks = {}
        for snap_id, check in self._read_state("checks.json").items():
            if not isinstance(check, dict):
                continue
            check = {k: v for k, v in check.items()
                     if k not in ("result", "at", "kind") or isinstance(v, str)}
            drill = check.get("drill")
            if drill is not None and not (isinstance(drill, dict)
                                          and isinstance(drill.get("at", ""), str)):
                del check["drill"]
            checks[snap_id] = check
        return checks

    def record_check(self, snap_id: str, check: dict) -> None:
        """Record a later verification or restore drill of one snapshot."""
        checks = self.read_checks()
        previous = checks.get(snap_id, {})
        merged = {**previous, **check}
        checks[snap_id] = merged
        write_json_atomic(self.path / STATE_DIR / "checks.json", checks)


def _manifest_malformed(m: dict) -> str | None:
    """Why a parsed manifest's structure cannot be used, or None.

    Hand edits, other tools or damage can leave valid JSON of the wrong shape;
    such a snapshot is damaged (kept for the operator), never a crash of
    list/status/prune/run.
    """
    arts = m.get("artifacts")
    if not isinstance(arts, list):
        return "'artifacts' is not a list"
    for a in arts:
        if not (isinstance(a, dict) and isinstance(a.get("path"), str)
                and isinstance(a.get("sha256"), str) and isinstance(a.get("bytes"), int)
                and isinstance(a.get("source"), str)):
            return "an artifact lacks path, source, bytes or sha256"
    sources = m.get("sources")
    if not isinstance(sources, dict) or not all(isinstance(v, dict) for v in sources.values()):
        return "'sources' is not an object of objects"
    try:
        parse_iso(m.get("started"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "'started' is not a time"
    return None


def _run_record_ok(record: object, needs_snapshot: bool) -> bool:
    if not (isinstance(record, dict) and isinstance(record.get("result"), str)
            and isinstance(record.get("duration_sec"), int | float)):
        return False
    if needs_snapshot and not isinstance(record.get("snapshot"), str):
        return False
    try:
        parse_iso(record.get("finished"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize

