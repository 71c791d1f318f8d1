"""`tracker-backup prune`: apply retention to the store, explaining every decision."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os

from tracker_backup import engines, logs
from tracker_backup.config import Config
from tracker_backup.errors import EXIT_OK
from tracker_backup.humanize import human_bytes
from tracker_backup.retention import Candidate, Decision, plan
from tracker_backup.store import Store, utc_now

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add the `prune` subcommand."""
    pr = subparsers.add_parser("prune",
                               help="apply retention, printing what is kept and deleted and why")
    pr.add_argument("--dry-run", action="store_true", help="only print the plan")
    pr.set_defaults(handler=_handler, refresh_metrics=True)


def _handler(args: argparse.Namespace, config: Config, out) -> int:
    prune(config, dry_run=args.dry_run, out=out)
    return EXIT_OK


def prune(config: Config, *, dry_run: bool, out=None) -> list[Decision]:
    """Keep what the policy keeps, delete the rest (unless dry_run); return the plan."""
    store = Store(config.backup.path)
    store.prepare(require_mountpoint=config.backup.require_mountpoint, create=False)
    with store.lock("prune"):
        snaps = store.snapshots()
        now = utc_now()
        candidates = [Candidate(s.id, s.started or now, s.sequence, s.good and s.started is not None)
                      for s in snaps]
        decisions = plan(candidates, config.retention, now)
        by_id = {s.id: s for s in snaps}
        doomed = [d.id for d in decisions if not d.keep]
        freed = sum(_dir_bytes(by_id[i].path) for i in doomed)
        deleted = []
        for d in decisions:
            verb = "keep" if d.keep else ("would delete" if dry_run else "delete")
            line = f"{verb:12} {d.id}  ({'; '.join(d.reasons)})"
            if out is not None:
                print(line, file=out)
            if not d.keep and not dry_run:
                store.delete(by_id[d.id])
                deleted.append(d.id)
                log.info("retention: deleted %s (%s)", d.id, "; ".join(d.reasons))
        # Then what only the deleted snapshots used (the SQLite page store's objects), still
        # under the lock: no run can be between writing objects and publishing their index.
        for engine in engines.ENGINES:
            collected = engine.collect_garbage(store.path, dry_run=dry_run,
                                               deleting=doomed if dry_run else ())
            if collected is None:
                continue
            freed += collected.freed_bytes
            if out is not None:
                print(collected.line(dry_run), file=out)
            if collected.problem:
                log.warning("retention: %s: %s", collected.what, collected.problem)
        if out is not None:
            print(f"{'would free' if dry_run else 'freed'} {human_bytes(freed)} ({freed} bytes)",
                  file=out)
        kept = sum(1 for d in decisions if d.keep)
        # The continuous archive: only what no kept snapshot (or own base) needs goes.
        kept_snaps = [by_id[d.id] for d in decisions if d.keep]
        for engine in engines.configured(config):
            for line in engine.archive_prune(config, kept_snaps, dry_run):
                if out is not None:
                    print(line, file=out)
                if not dry_run:
                    log.info("retention: %s", line)
        if not dry_run:
            logs.event("pruned", f"retention kept {kept} snapshots, deleted {len(deleted)}, "
                       f"freed {human_bytes(freed)}",
                       kept=kept, deleted=len(deleted), deleted_ids=",".join(deleted) or None,
                       freed_bytes=freed)
        return decisions


def _dir_bytes(path) -> int:
    """Bytes of the files under a snapshot directory."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total
