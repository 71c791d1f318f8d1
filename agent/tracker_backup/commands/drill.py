"""`tracker-backup drill`: prove a snapshot restores, and how long it takes (the RTO).

Restores every kind of the snapshot into scratch space with the same code as
`restore` (SQLite and files into a hidden `.staging-drill-*` directory of the
backup path, which a crashed drill leaves as debris for the next run to
remove; MySQL into a scratch database dropped afterwards), checks integrity,
the tracker's tables and row counts against the manifest, and records the
result in .state/checks.json so `list` and `status` show when each snapshot
was last proven restorable. A drill that finds the snapshot itself damaged
also marks it failed, so `restore latest` and retention stop counting on it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tracker_backup import audit, engines, logs
from tracker_backup import restore_plan as planning
from tracker_backup.commands.args import snapshot_command
from tracker_backup.config import Config, parse_duration
from tracker_backup.engines.contract import DrillResult, Part, SnapshotDamaged
from tracker_backup.errors import LockHeld, RunFailed, TrackerBackupError, UsageError
from tracker_backup.store import Snapshot, Store, iso, utc_now

log = logging.getLogger(__name__)
LOCK_RETRY = 5.0  # seconds between attempts to take the store lock with --wait


def register(subparsers) -> None:
    """Add the `drill` subcommand."""
    d = snapshot_command(
        subparsers, "drill", handler=_handler,
        help="restore a snapshot into scratch space, check it, record the RTO",
        description="Restore drill: restores the newest snapshot (or ID) into a scratch "
                    "directory in the backup path (and MySQL into a scratch database), checks "
                    "integrity, tables and row counts against the manifest, reports the time "
                    "taken and records the result for `list` and `status`.")
    d.add_argument("--json", action="store_true")
    d.add_argument("--wait", default="0", metavar="DURATION",
                   help="if a backup run holds the lock, wait up to this long (e.g. 6h; "
                        "default: fail at once with exit 3)")
    d.set_defaults(refresh_metrics=True)


def _handler(args: argparse.Namespace, config: Config, out) -> int:
    try:
        wait = parse_duration(args.wait)
    except ValueError:
        raise UsageError(f"drill --wait {args.wait!r}: expected a duration such as 30s, 10m "
                         "or 6h") from None
    return drill(config, snap_id=args.id, as_json=args.json, out=out, wait=wait)


@contextlib.contextmanager
def _lock(store: Store, wait: float) -> Iterator[None]:
    """The store lock; while a run holds it, retry for up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with store.lock("drill"):
                yield
                return
        except LockHeld as exc:
            if time.monotonic() >= deadline:
                raise
            log.info("%s; waiting (up to %gs in all)", exc, wait)
            time.sleep(min(LOCK_RETRY, max(0.0, deadline - time.monotonic())))


def drill(config: Config, *, snap_id: str, as_json: bool, out, wait: float = 0.0) -> int:
    """Run one drill; print and record the result; 0 if the snapshot restored, else 1.

    Every drill, whatever its outcome, leaves an audit entry in the journal (audit.py).
    """
    trail: dict = {"snapshot": snap_id, "kinds": [],
                   "target": f"{config.backup.path}/.staging-drill-* (scratch)"}
    try:
        code = _drill(config, snap_id=snap_id, as_json=as_json, out=out, wait=wait,
                      trail=trail)
    except BaseException as exc:
        audit.record("drill", snapshot=trail["snapshot"], kinds=trail["kinds"],
                     target=trail["target"], result="failed",
                     error=str(exc) or type(exc).__name__)
        raise
    audit.record("drill", snapshot=trail["snapshot"], kinds=trail["kinds"],
                 target=trail["target"], result="ok" if code == 0 else "failed",
                 error="; ".join(trail.get("problems", [])) or None)
    return code


def _drill(config: Config, *, snap_id: str, as_json: bool, out, wait: float,
           trail: dict) -> int:
    store = Store(config.backup.path)
    store.prepare(require_mountpoint=config.backup.require_mountpoint, create=False)
    with _lock(store, wait):
        snap = store.get(snap_id)
        trail["snapshot"] = snap.id
        started = utc_now()
        t0 = time.monotonic()
        details: dict = {}
        problems: list[str] = []
        damaged = False
        scratch = Path(tempfile.mkdtemp(prefix=".staging-drill-", dir=store.path))
        try:
            parts = planning.parts_of(snap, engines.kinds())
            try:
                planning.verify_parts(snap, parts)
            except RunFailed as exc:
                raise SnapshotDamaged(str(exc)) from None
            for part in parts:
                try:
                    details[part.name] = _drill_part(config, snap, part, scratch).to_json()
                except SnapshotDamaged as exc:
                    damaged = True
                    problems.append(f"{part.name}: {exc}")
                except TrackerBackupError as exc:
                    problems.append(f"{part.name}: {exc}")
            # The continuous archive: a random second inside it, restored and checked too.
            for engine in engines.configured(config):
                try:
                    found = engine.archive_drill(config, scratch)
                except TrackerBackupError as exc:
                    problems.append(f"{engine.kind} archive: {exc}")
                    continue
                if found is not None:
                    details[f"{engine.kind}-archive"] = found
        except SnapshotDamaged as exc:
            damaged = True
            problems.append(str(exc))
        except TrackerBackupError as exc:
            problems.append(str(exc))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        rto = time.monotonic() - t0
        trail.update(kinds=sorted(details), problems=problems)
        result = "failed" if problems else "ok"
        record = {"result": result, "at": iso(utc_now()), "started": iso(started),
                  "rto_sec": round(rto, 3), "kinds": sorted(details), "details": details,
                  "problems": problems}
        check = {"drill": record}
        if damaged:
            check.update({"kind": "drill", "result": "failed", "at": record["at"],
                          "problems": problems})
        store.record_check(snap.id, check)
    if problems:
        logs.event("drill-failed", f"restore drill of snapshot {snap.id} FAILED after {rto:.1f}s: "
                   + "; ".join(problems), error=True, snapshot=snap.id,
                   duration_sec=f"{rto:.3f}")
    else:
        logs.event("drill-succeeded", f"restore drill of snapshot {snap.id} ok: "
                   f"{', '.join(sorted(details))} restored and checked, RTO {rto:.1f}s",
                   snapshot=snap.id, duration_sec=f"{rto:.3f}", rto_sec=f"{rto:.3f}")
    if as_json:
        json.dump({"id": snap.id, **record}, out, indent=2)
        out.write("\n")
    else:
        print(f"{snap.id}: drill {result.upper()} (RTO {rto:.2f}s)", file=out)
        for name, info in sorted(details.items()):
            print(f"  {name}: {info.get('summary', 'ok')}", file=out)
        for p in problems:
            print(f"  - {p}", file=out)
    return 0 if not problems else 1


def _drill_part(config: Config, snap: Snapshot, part: Part, scratch: Path) -> DrillResult:
    """Restore one part into scratch (its engine's drill) and time it."""
    engine = engines.get(part.kind)
    assert engine is not None  # parts_of only returns parts of known kinds
    t = time.monotonic()
    result = engine.drill(config, snap, part, scratch)
    result.seconds = round(time.monotonic() - t, 3)
    return result
