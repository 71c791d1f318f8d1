"""The SQLite engine: the contract (engines/contract.py) over this folder's modules."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tracker_backup.engines import contract
from tracker_backup.engines.sqlite import config as sqlite_config
from tracker_backup.engines.sqlite.header import is_sqlite_file, side_paths, sqlite_file_of_side_file
from tracker_backup.errors import RunFailed, UsageError
from tracker_backup.preflight import Findings

if TYPE_CHECKING:
    from tracker_backup.artifacts import Artifact
    from tracker_backup.config import Config, Section
    from tracker_backup.store import Snapshot


class SqliteEngine(contract.Engine):
    """The tracker's SQLite database: [sqlite]."""

    kind = "sqlite"

    def parse_section(self, section: Section) -> sqlite_config.SqliteConfig:
        return sqlite_config.parse_section(section)

    def preflight(self, config: Config) -> Findings:
        from tracker_backup.engines.sqlite.preflight import check_sqlite, layout_advice

        found = check_sqlite(config.section(self.kind))
        advice = layout_advice(config.section(self.kind).database, config.backup.layout,
                               config.retention.keep_last)
        if advice:
            found.notes.append(advice)
        return found

    def backup(self, config: Config, ctx: contract.RunContext) -> contract.SourceResult:
        from tracker_backup.engines.sqlite.backup import SqliteBackup

        return SqliteBackup(config.section(self.kind)).backup(ctx)

    def owned_paths(self, config: Config) -> dict[str, str]:
        db = config.section(self.kind).database
        why = "the configured SQLite database (backed up by [sqlite])"
        return {str(p): why for p in (db, *side_paths(db))}

    def raw_copy_hazard(self, path: Path, is_dir: bool) -> str | None:
        if is_dir:
            return None
        base = sqlite_file_of_side_file(path)
        if base is not None:
            return f"side file of SQLite database {base.name}"
        if is_sqlite_file(path):
            return "a SQLite database (copying a live one raw could be torn)"
        return None

    def verify_stored(self, snapshot_dir: Path, entry: dict, artifacts: list[Artifact],
                      level: str, scratch: Path) -> list[str]:
        from tracker_backup.engines.sqlite.verify import verify_stored

        return verify_stored(snapshot_dir, entry, artifacts, level, scratch)

    def plan_restore(self, config: Config, snap: Snapshot, part: contract.Part,
                     args: argparse.Namespace) -> contract.RestoreStep:
        from tracker_backup.engines.sqlite import restore
        from tracker_backup.restore_plan import artifact_path

        cfg = config.section(self.kind)
        to = args.to
        if to is None and cfg is None:
            raise UsageError("no [sqlite] database configured: give the target with --to PATH")
        target = restore.target_path(part, to) if to is not None else cfg.database
        in_place = cfg is not None and target == cfg.database
        window = cfg if in_place and cfg.has_maintenance_window else None
        src = artifact_path(snap, part.artifacts[0])
        return contract.RestoreStep(part, restore.plan(part, target, window),
                           lambda ctx: restore.restore(src, part, target, window=window,
                                                       stamp=ctx.stamp,
                                                       journal=ctx.window_journal))

    def archive_report(self, config: Config, snapshots: list[Snapshot]) -> dict | None:
        from tracker_backup.engines.sqlite.archive import steps

        return steps.report(config, snapshots)

    def archive_drill(self, config: Config, scratch: Path) -> dict | None:
        from tracker_backup.engines.sqlite.archive import steps

        result = steps.drill_at(config, scratch)
        if result is not None:
            result["summary"] = (f"archive restored to {result['at']} (commit seen at "
                                 f"{result['commit_time']}, {result['entries_applied']} entries "
                                 f"after {result['base']}), integrity_check ok")
        return result

    def archive_prune(self, config: Config, kept: list[Snapshot], dry_run: bool) -> list[str]:
        from tracker_backup.engines.sqlite.archive import steps

        return steps.prune(config, kept, dry_run)

    def plan_restore_at(self, config: Config, at: str, to: Path | None,
                        args: argparse.Namespace | None = None) -> contract.RestoreStep:
        from tracker_backup.engines.sqlite.archive import steps

        return steps.plan_restore_at(config, at, to)

    def drill(self, config: Config, snap: Snapshot, part: contract.Part,
              scratch: Path) -> contract.DrillResult:
        from tracker_backup.engines.sqlite import restore
        from tracker_backup.restore_plan import artifact_path

        src = artifact_path(snap, part.artifacts[0])
        target = scratch / "sqlite" / restore.stored_name(part)
        target.parent.mkdir(mode=0o700)
        try:
            done = restore.restore(src, part, target, window=None, stamp="drill",
                                   keep_owner=False)
        except RunFailed as exc:
            raise contract.SnapshotDamaged(str(exc)) from None
        counts = done.row_counts
        return contract.DrillResult(
            f"integrity_check ok, row counts match the manifest "
            f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})",
            {"bytes": done.bytes, "row_counts": counts})

    def sandbox(self, config: Config) -> contract.SandboxNeeds:
        # SQLite readers of a WAL database write -shm (and may create -wal) beside it.
        return contract.SandboxNeeds(read_write=[config.section(self.kind).database.parent])

    def export(self, snap: Snapshot, part: contract.Part, target: Path) -> int:
        from tracker_backup.engines.sqlite import restore
        from tracker_backup.engines.sqlite.check import check_database
        from tracker_backup.restore_plan import artifact_path

        tmp = target.with_name(f".{target.name}.export-{os.getpid()}")
        try:
            size = restore.materialize(artifact_path(snap, part.artifacts[0]), part, tmp)
            check = check_database(tmp, "full", tuple(part.source.get("required_tables", ())))
            restore.require_ok(check, tmp, part.source.get("row_counts") or {})
            os.rename(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return size

    def space_needed(self, config: Config) -> tuple[int, str] | None:
        from tracker_backup.engines.sqlite.pages.backup import free_space_needed

        cfg = config.section(self.kind)
        try:
            size = sum(p.stat().st_size for p in (cfg.database, *side_paths(cfg.database))
                       if p.exists())
        except OSError:
            return None
        if config.backup.layout == "pages":
            return free_space_needed(config.backup.path, str(cfg.database), size,
                                     staged_check=cfg.continuous and cfg.archive_check == "database")
        # A full copy: the raw staging copy, then its compressed artifact beside it.
        return 2 * size + (64 << 20), "layout = full: the database's size twice + 64 MiB"

    def stored_bytes(self, backup_path: Path) -> int:
        from tracker_backup.engines.sqlite.pages import gc

        return gc.store_bytes(backup_path)[1]

    def collect_garbage(self, backup_path: Path, *, dry_run: bool,
                        deleting=()) -> contract.Collected | None:
        from tracker_backup.engines.sqlite.pages import gc

        if not (backup_path / gc.STORE_DIR).is_dir():
            return None
        r = gc.collect(backup_path, dry_run=dry_run, excluding=deleting)
        return contract.Collected("sqlite page store", r.deleted, r.freed_bytes, r.referenced,
                                  r.problem)

    def archiver(self, config: Config):
        """The WAL archiver when `[sqlite] continuous = yes` (engines/sqlite/archive/)."""
        cfg = config.section(self.kind)
        if cfg is None or not cfg.continuous:
            return None
        from tracker_backup.engines.sqlite.archive.archiver import SqliteArchiver

        return SqliteArchiver(cfg.database, config.backup.path, busy_timeout=cfg.busy_timeout)

    def commands(self) -> tuple[contract.Register, ...]:
        from tracker_backup.engines.sqlite import wal

        return (wal.register,)
