"""`tracker-backup restore` and `tracker-backup drill`: argument parsing and the restore action.

restore: pick a snapshot (id or latest), hold the store lock so retention
cannot delete it, verify its checksums, print what each kind would replace,
stop there on --dry-run, else restore kind by kind and end with one summary line.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

from tracker_backup import logs
from tracker_backup.config import Config
from tracker_backup.errors import EXIT_OK, UsageError
from tracker_backup.restore import plan as planning
from tracker_backup.store import Snapshot, Store, utc_now

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add the `restore` and `drill` subcommands."""
    r = subparsers.add_parser(
        "restore", help="restore a snapshot (checksums first; --dry-run shows what changes)",
        description="Restore one kind or all kinds of a snapshot. Default targets are the "
                    "configured ones (in place): [sqlite] database, [files] root, [mysql] "
                    "database. The store lock is held throughout, so retention cannot delete "
                    "the snapshot being read.")
    r.add_argument("id", nargs="?", default="latest", help="snapshot id or 'latest' (default)")
    r.add_argument("--kind", choices=("all", *planning.KINDS), default="all",
                   help="what to restore (default: every kind in the snapshot)")
    r.add_argument("--to", type=Path, metavar="PATH",
                   help="sqlite: a file or directory; files: a directory (default: in place). "
                        "Needs one --kind")
    r.add_argument("--database", metavar="NAME",
                   help="mysql: the database to load into, created if missing "
                        "(default: [mysql] database)")
    r.add_argument("--mysql-user", metavar="USER",
                   help="mysql: account to restore with (default: [mysql] user; the backup "
                        "account usually may only read)")
    r.add_argument("--mysql-password-file", type=Path, metavar="FILE",
                   help="mysql: that account's password file (mode 0600; never on the "
                        "command line)")
    r.add_argument("--dry-run", action="store_true", help="only show what would be replaced")
    r.add_argument("--force", action="store_true",
                   help="files: replace existing files that differ from the archive")
    r.set_defaults(handler=restore_handler)

    d = subparsers.add_parser(
        "drill", help="restore a snapshot into scratch space, check it, record the RTO",
        description="Restore drill: restores the newest snapshot (or ID) into a scratch "
                    "directory in the backup path (and MySQL into a scratch database), checks "
                    "integrity, tables and row counts against the manifest, reports the time "
                    "taken and records the result for `list` and `status`.")
    d.add_argument("id", nargs="?", default="latest", help="snapshot id or 'latest' (default)")
    d.add_argument("--json", action="store_true")
    d.add_argument("--wait", default="0", metavar="DURATION",
                   help="if a backup run holds the lock, wait up to this long (e.g. 6h; "
                        "default: fail at once with exit 3)")
    d.set_defaults(handler=drill_handler)


def drill_handler(args: argparse.Namespace, config: Config, out) -> int:
    """Entry point of `tracker-backup drill`."""
    from tracker_backup.actions.drill import drill
    from tracker_backup.config import parse_duration

    try:
        wait = parse_duration(args.wait)
    except ValueError:
        raise UsageError(f"drill --wait {args.wait!r}: expected a duration such as 30s, 10m "
                         "or 6h") from None
    return drill(config, snap_id=args.id, as_json=args.json, out=out, wait=wait)


def restore_handler(args: argparse.Namespace, config: Config, out) -> int:
    """Entry point of `tracker-backup restore`."""
    kinds = planning.KINDS if args.kind == "all" else (args.kind,)
    if args.to is not None and len(kinds) != 1:
        raise UsageError("--to names one target: give --kind sqlite or --kind files with it")
    if args.to is not None and args.kind == "mysql":
        raise UsageError("--to does not apply to mysql: use --database NAME")
    if "mysql" not in kinds and (args.database or args.mysql_user or args.mysql_password_file):
        raise UsageError("--database, --mysql-user and --mysql-password-file apply to mysql only")
    if config.mysql is not None and (args.mysql_user or args.mysql_password_file):
        from tracker_backup.restore.mysql import with_account

        config = dataclasses.replace(config, mysql=with_account(
            config.mysql, args.mysql_user, args.mysql_password_file))
    return restore(config, snap_id=args.id, kinds=kinds, to=args.to, database=args.database,
                   dry_run=args.dry_run, force=args.force, out=out)


def restore(config: Config, *, snap_id: str, kinds: tuple[str, ...], to: Path | None,
            database: str | None, dry_run: bool, force: bool, out) -> int:
    """Restore the chosen kinds of one snapshot; return 0 (raises on any failure)."""
    store = Store(config.backup.path)
    store.prepare(require_mountpoint=config.backup.require_mountpoint, create=False,
                  writable=False)  # restoring from a volume mounted read-only must work
    t0 = time.monotonic()
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    with store.lock("restore"):
        snap = store.get(snap_id)
        parts = planning.parts_of(snap, kinds)
        planning.verify_parts(snap, parts)
        print(f"snapshot {snap.id} ({(snap.manifest or {}).get('started', '?')}): "
              f"checksums of {sum(len(p.artifacts) for p in parts)} artifact(s) OK", file=out)
        steps = [_prepare(config, snap, part, to, database) for part in parts]
        for step in steps:
            for line in step.action.lines():
                print(line, file=out)
        if dry_run:
            print("dry run: nothing was changed", file=out)
            return EXIT_OK
        blocked = [s for s in steps if s.part.kind == "files" and s.action.replaces]
        if blocked and not force:
            raise UsageError(f"files: {len(blocked[0].scan.replaces)} existing file(s) under "
                             f"{blocked[0].target} differ from the archive (listed above): rerun "
                             "with --force to replace them, or restore elsewhere with --to")
        results = []
        for step in steps:
            try:
                results.append(step.run(stamp))
            except BaseException:
                if results:  # say what is already restored, since the error names only the rest
                    log.error("restore of snapshot %s stopped part way; already restored: %s",
                              snap.id, "; ".join(_describe(r) for r in results))
                raise
    seconds = time.monotonic() - t0
    summary = (f"restored snapshot {snap.id} in {seconds:.1f}s: "
               + "; ".join(_describe(r) for r in results))
    logs.event("restored", summary, snapshot=snap.id, duration_sec=f"{seconds:.3f}",
               kinds=",".join(r["kind"] for r in results),
               targets=",".join(r["target"] for r in results))
    print(summary, file=out)
    return EXIT_OK


def _describe(result: dict) -> str:
    kind = result["kind"]
    if kind == "sqlite":
        aside = result["moved_aside"]
        return (f"sqlite -> {result['target']} ({result['bytes']} bytes, integrity ok"
                + (f", previous kept as {', '.join(Path(a).name for a in aside)}" if aside else "")
                + ")")
    if kind == "files":
        return (f"files -> {result['target']} ({result['members']} members: {result['new']} new, "
                f"{result['replaced']} replaced, {result['unchanged']} unchanged)")
    return f"mysql -> database {result['target']} ({result.get('bytes', 0)} bytes of SQL)"


class _Step:
    """One part's target, plan and the call that restores it."""

    def __init__(self, part: planning.Part, action: planning.Action, target: Path | str,
                 run: Callable[[str], dict], scan: object | None = None):
        self.part = part
        self.action = action
        self.target = target
        self.run = run
        self.scan = scan


def _prepare(config: Config, snap: Snapshot, part: planning.Part, to: Path | None,
             database: str | None) -> _Step:
    """Resolve the target of one part and plan it (reads only)."""
    src = planning.artifact_path(snap, part.artifacts[0])
    if part.kind == "sqlite":
        from tracker_backup.restore import sqlite as kind

        if to is None and config.sqlite is None:
            raise UsageError("no [sqlite] database configured: give the target with --to PATH")
        target = kind.target_path(part, to) if to is not None else config.sqlite.database
        in_place = config.sqlite is not None and target == config.sqlite.database
        window = config.sqlite if in_place and config.sqlite.has_maintenance_window else None
        action = kind.plan(part, target, window)
        return _Step(part, action, target,
                     lambda stamp: kind.restore(src, part, target, window=window, stamp=stamp))
    if part.kind == "files":
        from tracker_backup.restore import files as kind

        if to is None and config.files is None:
            raise UsageError("no [files] root configured: give the target directory with --to DIR")
        target = to if to is not None else config.files.root
        action, scan = kind.plan(part, src, target)
        return _Step(part, action, target, lambda stamp: kind.restore(src, part, target),
                     scan)
    from tracker_backup.restore import mysql as kind

    if config.mysql is None:
        raise UsageError("no [mysql] section configured: the restore needs its connection "
                         "settings (socket/host, user, password_file, exec_prefix)")
    name = database or config.mysql.database
    action = kind.plan(part, config.mysql, name)
    return _Step(part, action, name,
                 lambda stamp: kind.restore(src, part, config.mysql, name))
