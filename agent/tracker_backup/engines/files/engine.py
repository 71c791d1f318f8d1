"""The files engine: the contract (engines/contract.py) over this folder's modules."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tracker_backup import engines
from tracker_backup.engines import contract
from tracker_backup.engines.files import config as files_config
from tracker_backup.errors import RunFailed, UsageError

if TYPE_CHECKING:
    from tracker_backup.artifacts import Artifact
    from tracker_backup.config import Config, Section
    from tracker_backup.store import Snapshot


class FilesEngine(contract.Engine):
    """Chosen files of the tracker's storage directory: [files]."""

    kind = "files"

    def parse_section(self, section: Section) -> files_config.FilesConfig:
        return files_config.parse_section(section)

    def backup(self, config: Config, ctx: contract.RunContext) -> contract.SourceResult:
        from tracker_backup.engines.files.backup import FilesBackup

        return FilesBackup(config.section(self.kind), engines.owned_paths(config)).backup(ctx)

    def verify_stored(self, snapshot_dir: Path, entry: dict, artifacts: list[Artifact],
                      level: str, scratch: Path) -> list[str]:
        from tracker_backup.engines.files.verify import verify_stored

        return verify_stored(snapshot_dir, entry, artifacts, level, scratch)

    def restore_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--force", action="store_true",
                            help="files: replace existing files that differ from the archive")

    def plan_restore(self, config: Config, snap: Snapshot, part: contract.Part,
                     args: argparse.Namespace) -> contract.RestoreStep:
        from tracker_backup.engines.files import restore
        from tracker_backup.restore_plan import artifact_path

        cfg = config.section(self.kind)
        if args.to is None and cfg is None:
            raise UsageError("no [files] root configured: give the target directory with --to DIR")
        target = args.to if args.to is not None else cfg.root
        src = artifact_path(snap, part.artifacts[0])
        action, scan = restore.plan(part, src, target)
        needs_force = None
        if action.replaces and not args.force:
            needs_force = (f"files: {len(scan.replaces)} existing file(s) under {target} differ "
                           "from the archive (listed above): rerun with --force to replace "
                           "them, or restore elsewhere with --to")
        return contract.RestoreStep(part, action, lambda ctx: restore.restore(src, part, target),
                           needs_force)

    def drill(self, config: Config, snap: Snapshot, part: contract.Part,
              scratch: Path) -> contract.DrillResult:
        from tracker_backup.engines.files import restore
        from tracker_backup.restore_plan import artifact_path

        src = artifact_path(snap, part.artifacts[0])
        target = scratch / "files"
        try:
            done = restore.restore(src, part, target)
        except RunFailed as exc:
            raise contract.SnapshotDamaged(str(exc)) from None
        on_disk = _count_entries(target)
        if on_disk != done.members:
            raise contract.SnapshotDamaged(
                f"{done.members} archive members but {on_disk} entries restored")
        return contract.DrillResult(f"{done.members} members restored ({done.bytes} bytes)",
                           {"members": done.members, "bytes": done.bytes})

    def sandbox(self, config: Config) -> contract.SandboxNeeds:
        return contract.SandboxNeeds(read=[config.section(self.kind).root])


def _count_entries(top: Path) -> int:
    """Files, links and directories below `top` (not `top` itself)."""
    n = 0
    for _dirpath, dirnames, filenames in os.walk(top):
        n += len(dirnames) + len(filenames)
    return n
