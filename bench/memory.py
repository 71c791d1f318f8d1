#!/usr/bin/python3
"""Peak RSS of `tracker-backup run` (the agent and all its children) by database size.

    /usr/bin/python3 bench/memory.py --sizes 100M,1G

Streaming means the peak must not grow with the database. For each size and
compression (none, zstd) the agent backs up the SQLite database (no writer):
the kernel's ru_maxrss of the agent (exact high-water mark), and the peak of
the PSS summed over the agent and its children (sampled every 50 ms). The anchor is the smallest size:
the summary gives the largest size's peak as a ratio of it (flat = ~1.0).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    MB,
    bench_parser,
    drop_cache,
    finish,
    fresh_copy,
    parse_list,
    run_agent,
    scratch,
    write_agent_config,
)
from dbgen import parse_size, size_label  # noqa: E402

COLUMNS = ["size", "compression", "rc", "wall_s", "maxrss_mb", "tree_pss_mb", "x_smallest"]
TARGET_MB = 80


def main() -> int:
    ap = bench_parser(__doc__, "memory")
    ap.add_argument("--sizes", default="100M,1G")
    ap.add_argument("--compressions", default="none,zstd")
    args = ap.parse_args()
    wd, machine = scratch(args, "memory")
    rows = []
    try:
        for size in sorted(parse_list(args.sizes, parse_size)):
            db = fresh_copy(size, wd / "live" / "tracker.db")
            for comp in parse_list(args.compressions):
                backups = wd / "backups"
                shutil.rmtree(backups, ignore_errors=True)
                config = write_agent_config(wd / "agent.conf", backups, db, compression=comp)
                drop_cache(db)
                res = run_agent(config)
                row = {"size": size_label(size), "db_mb": round(db.stat().st_size / MB, 1),
                       "compression": comp, "rc": res["rc"], "wall_s": res["wall_s"],
                       "tree_pss_mb": res["tree_pss_mb"], "maxrss_mb": res["maxrss_mb"]}
                if res["rc"] != 0:
                    row["error"] = res["stderr"][-300:]
                rows.append(row)
                shutil.rmtree(backups, ignore_errors=True)
    finally:
        shutil.rmtree(wd, ignore_errors=True)
    parts = []
    for comp in parse_list(args.compressions):
        group = [r for r in rows if r["compression"] == comp]
        base = group[0]["maxrss_mb"]
        for r in group:
            r["x_smallest"] = round(r["maxrss_mb"] / base, 2) if base else None
        worst = max(group, key=lambda r: r["maxrss_mb"])
        parts.append(f"{comp}: peak RSS {worst['maxrss_mb']:.1f} MB (tree PSS {worst['tree_pss_mb']:.1f})"
                     f" at {worst['size']}, largest/smallest {group[-1]['x_smallest']:.2f}x")
    worst_all = max(max(r["maxrss_mb"], r["tree_pss_mb"]) for r in rows)
    summary = "; ".join(parts) + (f"; target < {TARGET_MB} MB "
                                  + ("met" if worst_all < TARGET_MB else "MISSED"))
    return finish("memory", args, machine, COLUMNS, rows, summary)


if __name__ == "__main__":
    raise SystemExit(main())
