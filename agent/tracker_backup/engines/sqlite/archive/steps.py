"""The SQLite archive in the commands: `restore --at`, the drill's random second, list/status, prune.

Glue between the archive library (restore.py, position.py, archive/retention.py)
and the agent's store and commands: which snapshots are bases of the archive,
and the restore step that rebuilds the database at a time and places it like
any snapshot restore (engines/sqlite/restore.py).
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from tracker_backup.archive import retention as archive_retention
from tracker_backup.archive import status as archive_status
from tracker_backup.archive.store import SourceArchive
from tracker_backup.artifacts import Artifact, hash_file, open_decompressed
from tracker_backup.engines.contract import Part, RestoreStep
from tracker_backup.engines.sqlite import restore as sqlite_restore
from tracker_backup.engines.sqlite.archive import restore as pitr
from tracker_backup.engines.sqlite.archive.position import resolve
from tracker_backup.errors import RunFailed, UsageError
from tracker_backup.store import Snapshot, Store

SOURCE = "sqlite"


def _open_artifact(path: Path, art: Artifact):
    size, digest = hash_file(path)
    if digest != art.sha256 or size != art.bytes:
        raise RunFailed(f"snapshot artifact {path} does not match its manifest (sha256/size)")
    return open_decompressed(path, art.compression)


def _write_pages(snapshot_dir: Path, index_path: Path, art: Artifact, source: dict):
    """A `BaseRef.write` for a page snapshot: its index checked against the manifest,
    then the database reassembled (every page proven, pages/reassemble.py) into fd."""
    from tracker_backup.engines.sqlite.pages.index import PageIndexError
    from tracker_backup.engines.sqlite.pages.reassemble import ReassembleError, reassemble
    from tracker_backup.engines.sqlite.pages.verify import load_index, store_for

    def write(fd: int) -> int:
        size, digest = hash_file(index_path)
        if digest != art.sha256 or size != art.bytes:
            raise RunFailed(f"snapshot page index {index_path} does not match its manifest "
                            "(sha256/size)")
        try:
            index = load_index(snapshot_dir, source)
            reassemble(store_for(snapshot_dir), index, fd)
        except (ReassembleError, PageIndexError) as exc:
            raise RunFailed(f"sqlite: cannot reassemble base snapshot {snapshot_dir.name}: "
                            f"{exc}") from None
        return index.page_count * index.page_size
    return write


def snapshot_bases(backup_path: Path, snapshots: list[Snapshot] | None = None) -> list[pitr.BaseRef]:
    """Good snapshots whose recorded WAL position is an entry of the archive: full copies
    (`.db.zst`) and page snapshots (layout = pages) alike."""
    snaps = snapshots if snapshots is not None else Store(backup_path).snapshots()
    refs = []
    for snap in snaps:
        if not snap.good or not snap.manifest:
            continue
        src = (snap.manifest.get("sources") or {}).get(SOURCE) or {}
        pos = src.get("archive_position")
        if not isinstance(pos, dict):
            continue
        found = resolve(backup_path, pos, SOURCE)
        if found is None:
            continue
        arts = [Artifact.from_json(a) for a in snap.manifest["artifacts"]
                if a.get("source") == SOURCE and a.get("content") in ("sqlite", "sqlite-pages")]
        if not arts:
            continue
        art, path = arts[0], snap.path / arts[0].path
        ref = pitr.BaseRef(found[0], found[1], float(pos.get("time", 0.0)), f"snapshot {snap.id}",
                           None, snapshot_id=snap.id)
        if art.content == "sqlite-pages":
            ref.label = f"page snapshot {snap.id}"
            ref.write = _write_pages(snap.path, path, art, src)
        else:
            ref.open = lambda p=path, a=art: _open_artifact(p, a)
        refs.append(ref)
    return refs


@dataclass
class PitrRestored(sqlite_restore.SqliteRestored):
    """A database rebuilt at a point in time and placed."""

    reached: str = ""

    def describe(self) -> str:
        return super().describe() + f"; {self.reached}"


def _source_for(cfg, target: Path, origin: str) -> dict:
    source: dict = {"origin": origin,
                    "required_tables": list(cfg.required_tables) if cfg else []}
    live = cfg.database if cfg is not None else target
    for candidate in (target, live):
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        source.update(owner_uid=st.st_uid, owner_gid=st.st_gid,
                      file_mode=f"{st.st_mode & 0o7777:04o}")
        break
    return source


def plan_restore_at(config, at_text: str, to: Path | None) -> RestoreStep:
    """`restore --kind sqlite --at TIME|latest [--to PATH]`: base + entries, then placed."""
    try:
        at = pitr.parse_at(at_text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    cfg = config.section(SOURCE)
    if to is None and cfg is None:
        raise UsageError("no [sqlite] database configured: give the target with --to PATH")
    backup_path = config.backup.path
    plan = pitr.plan(backup_path, at, extra_bases=snapshot_bases(backup_path))
    origin = plan.generation.info.get("origin") or (str(cfg.database) if cfg else "tracker.db")
    if to is not None:
        target = to / Path(origin).name if to.is_dir() and not to.is_symlink() else to
    else:
        target = cfg.database
    in_place = cfg is not None and target == cfg.database
    window = cfg if in_place and cfg.has_maintenance_window else None
    part = Part(SOURCE, SOURCE, _source_for(cfg, target, origin), [])
    action = sqlite_restore.plan(part, target, window)
    action.notes.append(
        f"point in time {pitr.format_time(at)}: {plan.base.label} + {plan.entries} archived "
        f"commit(s) of generation {plan.generation.id}, up to the commit seen at "
        f"{pitr.format_time(plan.target_time)}")
    reached = (f"reached the commit seen at {pitr.format_time(plan.target_time)} "
               f"(entry {plan.target_seq} of generation {plan.generation.id}, "
               f"from {plan.base.label})")

    def run(ctx) -> PitrRestored:
        done = sqlite_restore.restore(
            None, part, target, window=window, stamp=ctx.stamp, journal=ctx.window_journal,
            produce=lambda tmp: pitr.build(plan, tmp)["bytes"])
        return PitrRestored(**{**done.__dict__, "reached": reached})

    return RestoreStep(part, action, run)


def drill_at(config, scratch: Path, rng: random.Random | None = None) -> dict | None:
    """Restore to a random second inside the archive into scratch space and check it."""
    backup_path = config.backup.path
    bases = snapshot_bases(backup_path)
    at = pitr.drill_point(backup_path, rng or random.Random(), extra_bases=bases)
    if at is None:
        return None
    t0 = time.monotonic()
    plan = pitr.plan(backup_path, at, extra_bases=bases)
    dest = scratch / "archive-drill.db"
    info = pitr.build(plan, dest)
    conn = sqlite3.connect(f"file:{dest}?mode=ro&immutable=1", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    dest.unlink(missing_ok=True)
    if result != "ok":
        raise RunFailed(f"archive drill at {pitr.format_time(at)}: integrity_check says {result!r}")
    return {"at": pitr.format_time(at), "commit_time": pitr.format_time(info["commit_time"]),
            "generation": info["generation"], "base": info["base"],
            "entries_applied": info["entries_applied"], "integrity": result,
            "seconds": round(time.monotonic() - t0, 3)}


def report(config, snapshots: list[Snapshot] | None = None) -> dict | None:
    """The archive's range and the archiver's state, for `list` and `status` (None: no archive)."""
    cfg = config.section(SOURCE)
    expected = bool(cfg and cfg.continuous)
    backup_path = config.backup.path
    if not expected and not SourceArchive(backup_path, SOURCE).generations():
        return None
    rng = pitr.describe_range(backup_path, SOURCE, snapshot_bases(backup_path, snapshots))
    out = archive_status.summary(backup_path, SOURCE, expected=expected)
    out.update(oldest=rng["oldest"], newest=rng["newest"], generations=rng["generations"],
               oldest_iso=pitr.format_time(rng["oldest"]) if rng["oldest"] else None,
               newest_iso=pitr.format_time(rng["newest"]) if rng["newest"] else None)
    return out


def prune(config, kept: list[Snapshot], dry_run: bool) -> list[str]:
    """Apply archive retention given the snapshots retention keeps; lines saying what went."""
    backup_path = config.backup.path
    archive = SourceArchive(backup_path, SOURCE)
    if not archive.generations():
        return []
    kept_bases: dict[str, list[int]] = {}
    for ref in snapshot_bases(backup_path, kept):
        kept_bases.setdefault(ref.generation, []).append(ref.seq)
    return archive_retention.prune_for(archive, kept_bases, kept, config.retention.keep_days, dry_run)
