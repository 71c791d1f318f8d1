#!/usr/bin/python3
"""Restore time (RTO) of the SQLite database: the agent versus the runbook's manual steps.

    /usr/bin/python3 bench/restore_rto.py --sizes 256M,1G

For each size: back up a copy of the tracker database with zstd, then time, in
the same run on the same snapshot (page cache dropped before each):
  anchor  the runbook by hand: `zstd -dc` into a file, then `sqlite3` integrity_check;
  restore `tracker-backup restore --kind sqlite --to FILE` (checksums, decompress,
          integrity_check, row counts, owner/mode, rename, quick_check);
  drill   `tracker-backup drill` (the same, in scratch space; records the RTO).
Reported: seconds and the ratio to the anchor.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    PYTHON,
    agent_env,
    bench_parser,
    drop_cache,
    finish,
    fresh_copy,
    latest_snapshot,
    parse_list,
    run_agent,
    scratch,
    write_agent_config,
)
from dbgen import parse_size, size_label  # noqa: E402

COLUMNS = ["size", "step", "seconds", "x_anchor", "result"]


def timed(cmd: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return time.monotonic() - t0, proc


def agent(config: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    return timed([PYTHON, "-m", "tracker_backup", "--config", str(config), *args], env=agent_env())


def main() -> int:
    ap = bench_parser(__doc__, "restore_rto")
    ap.add_argument("--sizes", default="256M")
    args = ap.parse_args()
    wd, machine = scratch(args, "restore")
    rows = []
    try:
        for size in parse_list(args.sizes, parse_size):
            label = size_label(size)
            db = fresh_copy(size, wd / "live" / "tracker.db")
            backups = wd / "backups"
            config = write_agent_config(wd / "tb.conf", backups, db, compression="zstd")
            backup = run_agent(config)
            if backup["rc"] != 0:
                raise SystemExit(f"backup failed: {backup['stderr']}")
            snap, _manifest = latest_snapshot(backups)
            art = snap / "sqlite" / "tracker.db.zst"

            manual = wd / "manual.db"
            drop_cache(art)
            t0 = time.monotonic()
            with open(manual, "wb") as out:
                subprocess.run(["zstd", "-dc", str(art)], stdout=out, check=True)
            check = subprocess.run(["sqlite3", f"file:{manual}?immutable=1",
                                    "PRAGMA integrity_check;"], capture_output=True, text=True)
            anchor = time.monotonic() - t0
            rows.append({"size": label, "step": "anchor: zstd -dc + sqlite3 integrity_check",
                         "seconds": round(anchor, 3), "x_anchor": 1.0,
                         "result": check.stdout.strip()})
            manual.unlink()

            drop_cache(art)
            secs, proc = agent(config, "restore", "--kind", "sqlite", "--to", str(wd / "r.db"))
            rows.append({"size": label, "step": "tracker-backup restore --kind sqlite",
                         "seconds": round(secs, 3), "x_anchor": round(secs / anchor, 2),
                         "result": "ok" if proc.returncode == 0 else proc.stderr[-300:]})
            (wd / "r.db").unlink(missing_ok=True)

            drop_cache(art)
            secs, proc = agent(config, "drill", "--json")
            rto = json.loads(proc.stdout)["rto_sec"] if proc.returncode == 0 else None
            rows.append({"size": label, "step": f"tracker-backup drill (recorded RTO {rto}s)",
                         "seconds": round(secs, 3), "x_anchor": round(secs / anchor, 2),
                         "result": "ok" if proc.returncode == 0 else proc.stdout[-300:]})
            shutil.rmtree(backups, ignore_errors=True)
    finally:
        shutil.rmtree(wd, ignore_errors=True)
    summary = "; ".join(f"{r['size']} {r['step'].split(' (')[0]}: {r['seconds']}s "
                        f"({r['x_anchor']}x)" for r in rows)
    return finish("restore_rto", args, machine, COLUMNS, rows, summary)


if __name__ == "__main__":
    raise SystemExit(main())
