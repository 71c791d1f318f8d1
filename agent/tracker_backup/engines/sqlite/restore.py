"""Restore a stored SQLite copy to a path, or in place over the live database.

Order matters, and every step before the swap leaves the target untouched:
decompress into a hidden file beside the target and integrity-check it; stop
the tracker if a maintenance window is configured; refuse while any process
still has the database (or its -wal/-shm/-journal) open; move the current
database and its side files aside (kept: a stale -wal applied to the restored
file would corrupt it, and the operator may still need them); give the new file
the original owner and mode; rename it into place; check it again; start the
tracker (always, once stopped).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tracker_backup.artifacts import CHUNK, fsync_dir, open_decompressed
from tracker_backup.engines.contract import Part, RestoreAction, RestoreResult
from tracker_backup.engines.sqlite.check import check_database
from tracker_backup.engines.sqlite.config import SqliteConfig
from tracker_backup.engines.sqlite.header import side_paths
from tracker_backup.engines.sqlite.holders import Holder, db_files, open_by
from tracker_backup.errors import RunFailed
from tracker_backup.window import WindowJournal, maintenance_window

log = logging.getLogger(__name__)

ASIDE_TAG = ".before-restore-"


def aside_path(path: Path, db: Path, stamp: str) -> Path:
    """tracker.db-wal → tracker.db.before-restore-STAMP-wal: the set stays openable together."""
    return path.with_name(f"{db.name}{ASIDE_TAG}{stamp}{path.name[len(db.name):]}")


def _link(path: Path, aside: Path) -> bool:
    """Hard-link path to aside; False where the filesystem has no hard links."""
    try:
        os.link(path, aside)
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            return False
        raise
    return True


def _free_stamp(db: Path, stamp: str) -> str:
    """`stamp`, or `stamp-N`, such that no moved-aside file would overwrite an earlier one."""
    candidate, n = stamp, 0
    while any(os.path.lexists(aside_path(p, db, candidate))
              for p in (db, *side_paths(db))):
        n += 1
        candidate = f"{stamp}-{n}"
    return candidate


@dataclass
class SqliteRestored(RestoreResult):
    """A database restored: what was moved aside, and the copy's check."""

    moved_aside: list[str] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)
    integrity: str = "ok"

    def describe(self) -> str:
        aside = self.moved_aside
        return (f"sqlite -> {self.target} ({self.bytes} bytes, integrity ok"
                + (f", previous kept as {', '.join(Path(a).name for a in aside)}" if aside else "")
                + ")")


def target_path(part: Part, to: Path) -> Path:
    """An existing directory means 'put the database in there under its own name'."""
    if to.is_dir() and not to.is_symlink():
        return to / stored_name(part)
    return to


def stored_name(part: Part) -> str:
    """The database's file name (from its origin, else from the artifact's name)."""
    name = Path(part.source.get("origin") or part.artifacts[0].path).name
    return name.removesuffix(".zst").removesuffix(".pages")


def plan(part: Part, target: Path, window: SqliteConfig | None) -> RestoreAction:
    """Say what restoring `part` to `target` would replace (touches nothing)."""
    action = RestoreAction("sqlite", str(target))
    if not target.parent.is_dir():
        if os.path.lexists(target.parent):
            raise RunFailed(f"sqlite: {target.parent} is not a directory")
        action.notes.append(f"creates directory {target.parent} (mode 0755, the database's "
                            "owner: the tracker creates its -wal/-shm there)")
    existing = db_files(target)
    for p in existing:
        action.replaces.append(f"{p} (moved aside to {aside_path(p, target, '<time>').name}, kept)")
    src = part.source
    if "owner_uid" in src:
        action.notes.append(f"owner {src['owner_uid']}:{src['owner_gid']} mode {src.get('file_mode')}"
                            " (as when backed up)")
    counts = src.get("row_counts") or {}
    if counts:
        action.notes.append("rows: " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
    if window is not None:
        action.notes.append("maintenance window: stop_command before the swap, start_command after")
    elif existing:
        holders = open_by(existing)
        if holders:
            action.blocked.append("; ".join(map(str, holders)))
    return action


def decompress(src: Path, compression: str, dest: Path) -> int:
    """Write the artifact's original bytes to a new file `dest` (0600), fsynced."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    total = 0
    try:
        with os.fdopen(fd, "wb", buffering=0) as out, open_decompressed(src, compression) as fh:
            while chunk := fh.read(CHUNK):
                out.write(chunk)
                total += len(chunk)
            os.fsync(out.fileno())
    except BaseException as exc:
        dest.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # a write: name the file
            raise OSError(exc.errno, exc.strerror, str(dest)) from None
        raise
    return total


def materialize(src: Path, part: Part, dest: Path) -> int:
    """The stored database as a new file `dest` (fsynced): decompressed, or reassembled
    from the page store for a pages-layout snapshot (`src` is then its page index)."""
    from tracker_backup.engines.sqlite.pages.index import PageIndexError
    from tracker_backup.engines.sqlite.pages.reassemble import ReassembleError
    from tracker_backup.engines.sqlite.pages.verify import is_pages
    from tracker_backup.engines.sqlite.pages.verify import materialize as reassemble

    if not is_pages(part.source):
        return decompress(src, part.artifacts[0].compression, dest)
    snapshot_dir = src.parents[len(Path(part.artifacts[0].path).parts) - 1]
    try:
        return reassemble(snapshot_dir, part.source, dest)
    except (ReassembleError, PageIndexError) as exc:
        raise RunFailed(f"sqlite: cannot reassemble {src}: {exc}") from None


def restore(src: Path | None, part: Part, target: Path, *, window: SqliteConfig | None,
            stamp: str, required_tables: tuple[str, ...] | None = None,
            keep_owner: bool = True, journal: Path | None = None,
            produce: Callable[[Path], int] | None = None) -> SqliteRestored:
    """Restore one stored database to `target`; return what was done.

    `window`: the [sqlite] config whose stop/start commands bracket the swap
    (None: no window; then any process holding the target refuses the restore).
    `journal`: where the window's durable note goes (the store's, see window.py).
    `produce(tmp)`: writes the new database into the hidden file itself instead of
    decompressing `src` (a point-in-time restore from the archive); returns its size.
    """
    required = required_tables if required_tables is not None else tuple(
        part.source.get("required_tables", ()))
    tmp = target.with_name(f".{target.name}.restore-{stamp}")
    t0 = time.monotonic()
    if not target.parent.is_dir():
        make_dirs(target.parent, part.source if keep_owner else {})
    for stale in target.parent.glob(f".{target.name}.restore-*"):
        # Left by a killed restore (we hold the store lock): a whole database's worth of disk.
        log.info("sqlite: removing %s left by an interrupted restore", stale)
        stale.unlink(missing_ok=True)
    size = produce(tmp) if produce is not None else materialize(src, part, tmp)
    moved: list[tuple[Path, Path]] = []
    try:
        check = check_database(tmp, "full", required)
        require_ok(check, tmp, part.source.get("row_counts") or {})
        _set_owner_mode(tmp, part.source, keep_owner)
        with contextlib.ExitStack() as in_window:
            if window is not None:
                # The same window as a backup's: a durable note first, start_command with
                # signals deferred, so a killed restore never leaves the tracker stopped.
                log.info("sqlite: maintenance window: stopping the tracker")
                if journal is None:
                    log.warning("sqlite: the backup path is not writable: if this restore is "
                                "killed inside the maintenance window, start the tracker by hand")
                in_window.enter_context(maintenance_window(
                    window.stop_command, window.start_command, WindowJournal(journal)))
            holders = open_by(db_files(target))
            if holders and window is not None:
                holders = _wait_closed(target, holders, max(1.0, window.busy_timeout))
            if holders:
                raise RunFailed(
                    f"sqlite: refusing to restore over {target}: it is in use: "
                    + "; ".join(map(str, holders))
                    + ". Stop the tracker first, or configure [sqlite] stop_command and "
                      "start_command for a maintenance window (or restore to another path "
                      "with --to)")
            stamp = _free_stamp(target, stamp)
            try:
                # Side files first, the database last, by hard link then an atomic rename
                # over it: at every instant, even after a SIGKILL, the target path holds a
                # whole database (old or new), never beside another database's -wal.
                for p in sorted(db_files(target), key=lambda f: f == target):
                    aside = aside_path(p, target, stamp)
                    linked = p == target and _link(p, aside)
                    if not linked:
                        os.rename(p, aside)
                    moved.append((p, aside, linked))
                    log.info("sqlite: moved %s aside to %s (kept)", p, aside)
                os.rename(tmp, target)
            except BaseException:
                # Before start_command: a tracker started without its file would create an
                # empty database in its place.
                for original, aside, linked in reversed(moved):
                    if linked:
                        os.unlink(aside)  # the target itself was never replaced
                    else:
                        os.rename(aside, original)
                if moved:
                    log.warning("sqlite: restore failed: moved the previous database back")
                moved.clear()
                raise
            fsync_dir(target.parent)
            final = check_database(target, "quick", required)
            require_ok(final, target, {})
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return SqliteRestored("sqlite", str(target), size, round(time.monotonic() - t0, 3),
                          moved_aside=[str(a) for _, a, _ in moved],
                          row_counts=check["row_counts"], integrity=check["result"])


def _wait_closed(target: Path, holders: list[Holder], wait: float) -> list[Holder]:
    """After stop_command: processes take a moment to exit; wait up to busy_timeout."""
    log.info("sqlite: waiting up to %gs for %s to close the database", wait,
             ", ".join(f"pid {h.pid}" for h in holders))
    deadline = time.monotonic() + wait
    while holders and time.monotonic() < deadline:
        time.sleep(0.1)
        holders = open_by(db_files(target))
    return holders


def make_dirs(path: Path, source: dict) -> None:
    """Create `path` and missing parents 0755 (whatever the umask); the last one gets the
    database's owner, since the tracker must create -wal/-shm files in it."""
    missing = []
    here = path
    while not here.exists():
        missing.append(here)
        here = here.parent
    for d in reversed(missing):
        d.mkdir()
        os.chmod(d, 0o755)
        log.info("sqlite: created directory %s", d)
    if missing and os.geteuid() == 0 and "owner_uid" in source:
        os.chown(path, int(source["owner_uid"]), int(source["owner_gid"]))


def require_ok(check: dict, path: Path, expected_counts: dict) -> None:
    """Raise RunFailed unless the check passed and the row counts are the manifest's."""
    if check["result"] != "ok":
        what = (f"missing tables {', '.join(check['missing_tables'])}" if check["missing_tables"]
                else "; ".join(check["messages"][:3]))
        raise RunFailed(f"sqlite: PRAGMA {check['pragma']} of {path} failed: {what}")
    if expected_counts and check["row_counts"] != expected_counts:
        raise RunFailed(f"sqlite: {path}: row counts {check['row_counts']} differ from the "
                        f"manifest's {expected_counts}")


def _set_owner_mode(path: Path, source: dict, keep_owner: bool) -> None:
    """The owner and mode the live database had when it was backed up."""
    if not keep_owner:
        return
    try:
        mode = int(str(source["file_mode"]), 8)
        uid, gid = int(source["owner_uid"]), int(source["owner_gid"])
    except (KeyError, ValueError):
        log.warning("sqlite: the manifest records no owner/mode: %s keeps 0600 root", path)
        return
    if os.geteuid() == 0:
        os.chown(path, uid, gid, follow_symlinks=False)
    elif (uid, gid) != (os.geteuid(), os.getegid()):
        log.warning("sqlite: not root: cannot give %s owner %d:%d", path, uid, gid)
    os.chmod(path, mode & 0o7777)
