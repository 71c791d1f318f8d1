#!/usr/bin/python3
"""Rollback-journal SQLite: the longest writer stall during an agent run versus max_lock.

    /usr/bin/python3 bench/rollback_stall.py --sizes 64M,256M,1G --max-locks 2s,0.5s

A rollback-journal database (the tracker's default) cannot be read without
blocking writers, so the agent copies it under a lock only while that stays
within [sqlite] max_lock, and otherwise fails (no maintenance window here).
The writer uses the tracker's 5 s busy timeout: a stall shorter than that
delays writes, a longer one loses them (writer errors). For each size and
max_lock: the idle writer's max latency (the baseline), then the agent run
under the writer: outcome, how long it held the read transaction, the writer's
longest stall, and that stall as a fraction of max_lock. A writer that is
busy all the time (its achieved rate below the target) starves the agent's
read lock: the run then fails after busy_timeout with "database is locked".
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    MB,
    Writer,
    bench_parser,
    check_copy,
    drop_cache,
    finish,
    fresh_copy,
    latest_snapshot,
    parse_list,
    run_agent,
    scratch,
    table,
    write_agent_config,
    writer_fields,
)
from dbgen import parse_size, size_label  # noqa: E402

COLUMNS = ["size", "rate", "w_rate", "max_lock_s", "outcome", "wall_s", "lock_s", "idle_max_ms", "w_max_ms",
           "stall_x_max_lock", "w_errors", "w_p99_ms", "ok"]


def parse_seconds(text: str) -> float:
    t = text.strip().lower()
    if t.endswith("ms"):
        return float(t[:-2]) / 1000
    return float(t.removesuffix("s"))


def measure(db: Path, wd: Path, rate: float, max_lock: float, idle_s: float) -> dict:
    idle = Writer(db, wd / "w-idle.json", rate)
    time.sleep(idle_s)
    idle_stats = idle.stop()
    backups = wd / "backups"
    shutil.rmtree(backups, ignore_errors=True)
    config = write_agent_config(wd / "agent.conf", backups, db, compression="none",
                                verify="quick", max_lock=f"{max_lock:g}s")
    drop_cache(db)
    w = Writer(db, wd / "w-agent.json", rate)
    res = run_agent(config)
    time.sleep(0.2)  # let the writer record the write that was blocked
    stats = w.stop()
    row = {"max_lock_s": max_lock, "wall_s": res["wall_s"], "rc": res["rc"],
           "idle_max_ms": round(idle_stats.get("max_ms", 0), 1),
           "idle_p99_ms": round(idle_stats.get("p99_ms", 0), 3)}
    row.update(writer_fields(stats))
    row["stall_x_max_lock"] = round(row["w_max_ms"] / 1000 / max_lock, 2)
    snap = latest_snapshot(backups) if backups.exists() else None
    if res["rc"] == 0 and snap:
        snap_dir, manifest = snap
        src = manifest["sources"]["sqlite"]
        art = next(a for a in manifest["artifacts"] if a["source"] == "sqlite")
        row.update({"outcome": src["method"], "lock_s": src.get("read_transaction_seconds")})
        row["ok"] = check_copy(snap_dir / art["path"])["ok"]
    else:
        last = [ln for ln in res["stderr"].splitlines() if ln.strip()]
        row.update({"outcome": f"failed (rc {res['rc']})", "ok": None,
                    "error": last[-1][-300:] if last else ""})
    shutil.rmtree(backups, ignore_errors=True)
    return row


def main() -> int:
    ap = bench_parser(__doc__, "rollback_stall")
    ap.add_argument("--sizes", default="64M,256M,1G")
    ap.add_argument("--max-locks", default="2s,0.5s", help="max_lock values to try")
    ap.add_argument("--rates", default="200,1000", help="writer transactions per second")
    ap.add_argument("--idle-seconds", type=float, default=3.0)
    args = ap.parse_args()
    wd, machine = scratch(args, "rollback")
    rows = []
    try:
        for size in parse_list(args.sizes, parse_size):
            db = fresh_copy(size, wd / "live" / "tracker.db", wal=False)
            for rate in parse_list(args.rates, float):
                for max_lock in parse_list(args.max_locks, parse_seconds):
                    row = {"size": size_label(size), "db_mb": round(db.stat().st_size / MB, 1),
                           "rate": int(rate)}
                    row.update(measure(db, wd, rate, max_lock, args.idle_seconds))
                    rows.append(row)
                    print(table([row], COLUMNS), flush=True)
    finally:
        shutil.rmtree(wd, ignore_errors=True)
    worst = max(rows, key=lambda r: r["stall_x_max_lock"])
    errors = sum(r.get("w_errors") or 0 for r in rows)
    summary = (f"longest writer stall {worst['w_max_ms']:.0f} ms = {worst['stall_x_max_lock']:.2f}x "
               f"max_lock ({worst['size']}, max_lock {worst['max_lock_s']:g}s, {worst['outcome']}); "
               f"writer errors {errors}; "
               + ", ".join(f"{r['size']}@{r['rate']}/s/{r['max_lock_s']:g}s: {r['outcome']}"
                           for r in rows))
    return finish("rollback_stall", args, machine, COLUMNS, rows, summary, blank_line=True)


if __name__ == "__main__":
    raise SystemExit(main())
