"""`tracker-backup restore`: argument parsing and the restore action.

restore: pick a snapshot (id or latest), hold the store lock so retention
cannot delete it, verify its checksums, print what each kind would replace,
stop there on --dry-run, else restore kind by kind and end with one summary line.
Each kind's engine adds its own options, resolves its target and restores.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from tracker_backup import audit, engines, logs
from tracker_backup import restore_plan as planning
from tracker_backup.archive.times import parse_at
from tracker_backup.commands.args import snapshot_command
from tracker_backup.config import Config
from tracker_backup.engines.contract import Engine, RestoreContext, RestoreResult
from tracker_backup.errors import EXIT_OK, EXIT_RUN_FAILED, UsageError
from tracker_backup.store import Store, utc_now

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add the `restore` subcommand (engines add their own options)."""
    r = snapshot_command(
        subparsers, "restore", handler=restore_handler,
        help="restore a snapshot (checksums first; --dry-run shows what changes)",
        description="Restore one kind or all kinds of a snapshot. Default targets are the "
                    "configured ones (in place): [sqlite] database, [files] root, [mysql] "
                    "database. The store lock is held throughout, so retention cannot delete "
                    "the snapshot being read.")
    r.add_argument("--kind", choices=("all", *engines.kinds()), default="all",
                   help="what to restore (default: every kind in the snapshot)")
    r.add_argument("--to", type=Path, metavar="PATH",
                   help="sqlite: a file or directory; files: a directory (default: in place). "
                        "Needs one --kind")
    r.add_argument("--at", metavar="TIME",
                   help="point in time from the continuous archive: ISO-8601 UTC "
                        "(2026-12-01T07:00:05Z) or 'latest'; needs --kind sqlite or mysql, no ID")
    r.add_argument("--dry-run", action="store_true", help="only show what would be replaced")
    for engine in engines.ENGINES:
        engine.restore_arguments(r)


def restore_handler(args: argparse.Namespace, config: Config, out) -> int:
    """Entry point of `tracker-backup restore`."""
    kinds = engines.kinds() if args.kind == "all" else (args.kind,)
    if args.to is not None and len(kinds) != 1:
        raise UsageError("--to names one target: give --kind sqlite or --kind files with it")
    for engine in engines.ENGINES:
        engine.check_restore_args(args, engine.kind in kinds)
    if args.at is not None:
        if len(kinds) != 1:
            raise UsageError("--at restores one kind from its continuous archive: give --kind "
                             "sqlite or --kind mysql")
        if args.id != "latest":
            raise UsageError("--at picks its own base: give no snapshot ID with it")
        try:
            parse_at(args.at)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return restore_at(config, args, kinds[0], out)
    return restore(config, args, snap_id=args.id, kinds=kinds, dry_run=args.dry_run, out=out)


def restore_at(config: Config, args: argparse.Namespace, kind: str, out) -> int:
    """Point-in-time restore of one kind from the continuous archive (base + entries)."""
    engine = engines.get(kind)
    assert engine is not None
    store = Store(config.backup.path)
    store.prepare(require_mountpoint=config.backup.require_mountpoint, create=False,
                  writable=False)
    t0 = time.monotonic()
    journal = store.window_journal_path
    ctx = RestoreContext(utc_now().strftime("%Y%m%dT%H%M%SZ"),
                         journal if os.access(journal.parent, os.W_OK) else None)
    with store.lock("restore --at"):  # retention cannot delete a base or segment meanwhile
        step = engine.plan_restore_at(config, args.at, args.to, args)
        for line in step.action.lines():
            print(line, file=out)
        if args.dry_run:
            print("dry run: nothing was changed", file=out)
            return EXIT_OK
        result = step.run(ctx)
    seconds = time.monotonic() - t0
    summary = f"restored {kind} at {args.at} in {seconds:.1f}s: {result.describe()}"
    logs.event("restored", summary, duration_sec=f"{seconds:.3f}", kinds=kind,
               targets=result.target, at=args.at)
    print(summary, file=out)
    return EXIT_OK


def restore(config: Config, args: argparse.Namespace, *, snap_id: str, kinds: tuple[str, ...],
            dry_run: bool, out) -> int:
    """Restore the chosen kinds of one snapshot; return 0 (raises on any failure).

    A dry run returns 1 when a step is BLOCKED (the restore would be refused). Every real
    restore, finished or failed, leaves an audit entry in the journal (audit.py).
    """
    trail = {"snapshot": snap_id, "kinds": list(kinds),
             "targets": [str(args.to)] if args.to is not None else []}
    try:
        code = _restore(config, args, snap_id=snap_id, kinds=kinds, dry_run=dry_run, out=out,
                        trail=trail)
    except BaseException as exc:
        if not dry_run:
            audit.record("restore", snapshot=trail["snapshot"], kinds=trail["kinds"],
                         target=",".join(trail["targets"]), result="failed",
                         error=str(exc) or type(exc).__name__)
        raise
    if not dry_run:
        audit.record("restore", snapshot=trail["snapshot"], kinds=trail["kinds"],
                     target=",".join(trail["targets"]), result="ok")
    return code


def _restore(config: Config, args: argparse.Namespace, *, snap_id: str, kinds: tuple[str, ...],
             dry_run: bool, out, trail: dict) -> int:
    store = Store(config.backup.path)
    store.prepare(require_mountpoint=config.backup.require_mountpoint, create=False,
                  writable=False)  # restoring from a volume mounted read-only must work
    t0 = time.monotonic()
    # The same note a backup's maintenance window keeps, so window-recover and the next
    # run restart a tracker that a killed in-place restore left stopped.
    journal = store.window_journal_path
    ctx = RestoreContext(utc_now().strftime("%Y%m%dT%H%M%SZ"),
                         journal if os.access(journal.parent, os.W_OK) else None)
    with store.lock("restore"):
        snap = store.get(snap_id)
        trail["snapshot"] = snap.id
        parts = planning.parts_of(snap, kinds)
        trail["kinds"] = [p.kind for p in parts]
        planning.verify_parts(snap, parts)
        print(f"snapshot {snap.id} ({(snap.manifest or {}).get('started', '?')}): "
              f"checksums of {sum(len(p.artifacts) for p in parts)} artifact(s) OK", file=out)
        steps = [_engine(part).plan_restore(config, snap, part, args) for part in parts]
        trail["targets"] = [step.action.target for step in steps]
        for step in steps:
            for line in step.action.lines():
                print(line, file=out)
        if dry_run:
            print("dry run: nothing was changed", file=out)
            if any(step.action.blocked for step in steps):
                print("dry run: the restore is BLOCKED as things stand (see above)", file=out)
                return EXIT_RUN_FAILED
            return EXIT_OK
        blocked = [s.needs_force for s in steps if s.needs_force]
        if blocked:
            raise UsageError(blocked[0])
        results: list[RestoreResult] = []
        for step in steps:
            try:
                results.append(step.run(ctx))
            except BaseException:
                if results:  # say what is already restored, since the error names only the rest
                    log.error("restore of snapshot %s stopped part way; already restored: %s",
                              snap.id, "; ".join(r.describe() for r in results))
                raise
    seconds = time.monotonic() - t0
    summary = (f"restored snapshot {snap.id} in {seconds:.1f}s: "
               + "; ".join(r.describe() for r in results))
    logs.event("restored", summary, snapshot=snap.id, duration_sec=f"{seconds:.3f}",
               kinds=",".join(r.kind for r in results),
               targets=",".join(r.target for r in results))
    print(summary, file=out)
    return EXIT_OK


def _engine(part: planning.Part) -> Engine:
    engine = engines.get(part.kind)
    assert engine is not None  # parts_of only returns parts of known kinds
    return engine
