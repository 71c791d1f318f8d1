"""`tracker-backup verify`: re-hash and re-check stored snapshots."""

from __future__ import annotations

import argparse
import json
import os

from tracker_backup import logs
from tracker_backup.config import Config
from tracker_backup.errors import UsageError
from tracker_backup.store import Store, iso, utc_now
from tracker_backup.verify import verify_snapshot


def register(subparsers) -> None:
    """Add the `verify` subcommand."""
    v = subparsers.add_parser("verify", help="re-hash and re-check stored snapshots")
    v.add_argument("id", nargs="?", help="snapshot id or 'latest' (default: latest)")
    v.add_argument("--all", action="store_true", help="verify every snapshot")
    v.add_argument("--json", action="store_true")
    v.set_defaults(handler=_handler, refresh_metrics=True)


def _handler(args: argparse.Namespace, config: Config, out) -> int:
    return verify(config, snap_id=args.id, all_snapshots=args.all, as_json=args.json, out=out)


def verify(config: Config, *, snap_id: str | None, all_snapshots: bool, as_json: bool,
           out) -> int:
    """Verify one snapshot (default: latest) or all; return 0 if all are good, else 1."""
    if snap_id and all_snapshots:
        raise UsageError("give a snapshot id or --all, not both")
    store = Store(config.backup.path)
    store.prepare(require_mountpoint=config.backup.require_mountpoint, create=False,
                  writable=False)
    # Scratch space beside the snapshots when we may write there, else the system's.
    scratch = store.path if os.access(store.path, os.W_OK) else None
    results = []
    with store.lock("verify"):
        snaps = store.snapshots()
        if all_snapshots:
            chosen = snaps
        elif snap_id and snap_id != "latest":
            chosen = [store.get(snap_id)]
        else:
            chosen = snaps[:1]
        if not chosen:
            raise UsageError(f"no snapshots to verify in {store.path}")
        for snap in chosen:
            problems = verify_snapshot(snap, config.backup.verify, scratch_parent=scratch)
            result = "ok" if not problems else "failed"
            if snap.problem is None and scratch is not None:
                store.record_check(snap.id, {"kind": "verify", "result": result, "at": iso(utc_now()),
                                             "level": config.backup.verify, "problems": problems})
            results.append({"id": snap.id, "result": result, "problems": problems})
            if problems:
                logs.event("verify-failed", f"snapshot {snap.id} failed verification: "
                           + "; ".join(problems), error=True, snapshot=snap.id)
            else:
                logs.event("verify-succeeded", f"snapshot {snap.id} verified", snapshot=snap.id)
    if as_json:
        json.dump(results, out, indent=2)
        out.write("\n")
    else:
        for r in results:
            print(f"{r['id']}: {r['result'].upper()}", file=out)
            for p in r["problems"]:
                print(f"  - {p}", file=out)
    return 0 if all(r["result"] == "ok" for r in results) else 1
