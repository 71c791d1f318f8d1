"""`tracker-backup export [ID] --to FILE`: a snapshot's database as one plain file.

For a page snapshot (layout = pages) this reassembles the database from the
page store; for a full copy it decompresses it. Either way every stored byte
is checked (artifact checksums, object SHA-256s, pages_digest), the result is
integrity-checked against the manifest's row counts, and it appears at FILE
only when all of that passed. Nothing live is touched: this is the way to get
a file to inspect or to copy to another host (docs/restore.md).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from tracker_backup import engines, restore_plan
from tracker_backup.commands.args import snapshot_command
from tracker_backup.config import Config
from tracker_backup.errors import EXIT_OK, UsageError
from tracker_backup.humanize import human_bytes
from tracker_backup.store import Store


def register(subparsers) -> None:
    """Add the `export` subcommand."""
    p = snapshot_command(
        subparsers, "export", handler=_handler,
        help="write a snapshot's database to a plain file (reassembling a page snapshot)",
        description="Check and write the stored database of one snapshot to FILE, which must "
                    "not exist. The store lock is held, so retention cannot delete the snapshot.")
    p.add_argument("--to", type=Path, required=True, metavar="FILE")
    p.add_argument("--kind", choices=engines.kinds(), default="sqlite",
                   help="which database (default sqlite)")


def _handler(args: argparse.Namespace, config: Config, out) -> int:
    target = args.to.absolute()
    if os.path.lexists(target):
        raise UsageError(f"export: {target} exists: give a new file name")
    if not target.parent.is_dir():
        raise UsageError(f"export: directory {target.parent} does not exist")
    store = Store(config.backup.path)
    store.prepare(require_mountpoint=config.backup.require_mountpoint, create=False,
                  writable=False)
    t0 = time.monotonic()
    with store.lock("export"):
        snap = store.get(args.id)
        parts = restore_plan.parts_of(snap, (args.kind,))
        if not parts:
            raise UsageError(f"snapshot {snap.id} holds no {args.kind} part")
        restore_plan.verify_parts(snap, parts)
        engine = engines.get(args.kind)
        assert engine is not None
        size = engine.export(snap, parts[0], target)
    print(f"exported {args.kind} of snapshot {snap.id} to {target}: {human_bytes(size)}, "
          f"checked, in {time.monotonic() - t0:.1f}s", file=out)
    return EXIT_OK
