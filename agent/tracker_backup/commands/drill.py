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

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tracker_backup import logs
from tracker_backup.config import Config
from tracker_backup.errors import LockHeld, RunFailed, TrackerBackupError
from tracker_backup.restore import plan as planning
from tracker_backup.store import Snapshot, Store, iso, utc_now

log = logging.getLogger(__name__)
LOCK_RETRY = 5.0  # seconds between attempts to take the store lock with --wait


class _Damaged(RunFailed):
    """The snapshot's own bytes are bad (not the environment)."""


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
    """Run one drill; print and record the result; 0 if the snapshot restored, else 1."""
    store = Store(config.backup.path)
    store.prepare(require_mountpoint=config.backup.require_mountpoint, create=False)
    with _lock(store, wait):
        snap = store.get(snap_id)
        started = utc_now()
        t0 = time.monotonic()
        details: dict = {}
        problems: list[str] = []
        damaged = False
        scratch = Path(tempfile.mkdtemp(prefix=".staging-drill-", dir=store.path))
        try:
            parts = planning.parts_of(snap, tuple(planning.KINDS))
            try:
                planning.verify_parts(snap, parts)
            except RunFailed as exc:
                raise _Damaged(str(exc)) from None
            for part in parts:
                try:
                    details[part.name] = _drill_part(config, snap, part, scratch)
                except _Damaged as exc:
                    damaged = True
                    problems.append(f"{part.name}: {exc}")
                except TrackerBackupError as exc:
                    problems.append(f"{part.name}: {exc}")
        except _Damaged as exc:
            damaged = True
            problems.append(str(exc))
        except TrackerBackupError as exc:
            problems.append(str(exc))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        rto = time.monotonic() - t0
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


def _drill_part(config: Config, snap: Snapshot, part: planning.Part, scratch: Path) -> dict:
    """Restore one part into scratch and check it; return facts for the record."""
    src = planning.artifact_path(snap, part.artifacts[0])
    t = time.monotonic()
    if part.kind == "sqlite":
        from tracker_backup.restore import sqlite as kind

        target = scratch / "sqlite" / Path(part.artifacts[0].path).name.removesuffix(".zst")
        target.parent.mkdir(mode=0o700)
        try:
            done = kind.restore(src, part, target, window=None, stamp="drill", keep_owner=False)
        except RunFailed as exc:
            raise _Damaged(str(exc)) from None
        counts = done["row_counts"]
        return {"seconds": round(time.monotonic() - t, 3), "bytes": done["bytes"],
                "row_counts": counts,
                "summary": f"integrity_check ok, row counts match the manifest "
                           f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})"}
    if part.kind == "files":
        from tracker_backup.restore import files as kind

        target = scratch / "files"
        try:
            done = kind.restore(src, part, target)
        except RunFailed as exc:
            raise _Damaged(str(exc)) from None
        on_disk = _count_entries(target)
        if on_disk != done["members"]:
            raise _Damaged(f"{done['members']} archive members but {on_disk} entries restored")
        return {"seconds": round(time.monotonic() - t, 3), "members": done["members"],
                "bytes": done["bytes"],
                "summary": f"{done['members']} members restored ({done['bytes']} bytes)"}
    from tracker_backup.restore import mysql as kind

    if config.mysql is None:
        raise RunFailed("mysql: no [mysql] section configured: cannot load the dump into a "
                        "scratch database")
    done = kind.drill(src, part, config.mysql)
    return {"seconds": round(time.monotonic() - t, 3), **done}


def _count_entries(top: Path) -> int:
    """Files, links and directories below `top` (not `top` itself)."""
    n = 0
    for _dirpath, dirnames, filenames in os.walk(top):
        n += len(dirnames) + len(filenames)
    return n
