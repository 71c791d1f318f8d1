#!/usr/bin/python3
"""Storage growth: 7 daily snapshots of a database with ~1 % of its rows changed each day.

    /usr/bin/python3 bench/storage_growth.py --size 256M --days 7

Today's plain layout stores every snapshot whole, so N days cost about N times
one snapshot: the anchor is one snapshot's bytes on disk. Between runs, a
random ~1 % of torrents get `completed + 1` (and the metric follows, so the
invariant holds). For the uncompressed runs the script also measures what an
ideal fixed-size-chunk dedup store would keep (distinct 4 KiB pages and
64 KiB chunks over all days, versus one day): the bar a dedup store can reach.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    MB,
    fresh_copy,
    machine_info,
    parse_list,
    run_agent,
    save,
    table,
    tree_bytes,
    workdir,
    write_agent_config,
)
from dbgen import parse_size, size_label  # noqa: E402

from support.tracker_db import METRIC  # noqa: E402

COLUMNS = ["compression", "day", "rows_changed", "artifact_mb", "total_disk_mb", "x_one"]
SUMMARY_COLUMNS = ["compression", "days", "one_mb", "total_mb", "x_one", "dedup_4k_x_one",
                   "dedup_64k_x_one"]


def change_rows(db: Path, percent: float) -> int:
    """completed + 1 on about `percent` % of torrents, metric updated in the same transaction."""
    modulo = max(1, round(100 / percent))
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE torrents SET completed = completed + 1 WHERE abs(random()) % ? = 0",
                     (modulo,))
        n = conn.execute("SELECT changes()").fetchone()[0]
        conn.execute("UPDATE torrent_aggregate_metrics SET value = value + ? WHERE metric_name = ?",
                     (n, METRIC))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return n


def distinct_chunks(files: list[Path], chunk: int) -> tuple[int, int]:
    """(distinct chunks over all files, chunks in the first file)."""
    seen: set[bytes] = set()
    first = 0
    for i, f in enumerate(files):
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                seen.add(hashlib.blake2b(block, digest_size=16).digest())
                if i == 0:
                    first += 1
    return len(seen), first


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="256M")
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--change-percent", type=float, default=1.0)
    ap.add_argument("--compressions", default="zstd,none")
    ap.add_argument("--workdir")
    ap.add_argument("--out")
    ap.add_argument("--name", default="storage_growth")
    args = ap.parse_args()
    size = parse_size(args.size)
    wd = workdir(args.workdir, "growth")
    machine = machine_info(wd)
    rows, summaries = [], []
    try:
        for comp in parse_list(args.compressions):
            db = fresh_copy(size, wd / "live" / "tracker.db")
            backups = wd / f"backups-{comp}"
            config = write_agent_config(wd / "agent.conf", backups, db, compression=comp,
                                        verify="quick", keep_last=args.days + 1)
            one = 0
            for day in range(1, args.days + 1):
                changed = change_rows(db, args.change_percent) if day > 1 else 0
                res = run_agent(config)
                if res["rc"] != 0:
                    raise RuntimeError(f"agent run failed on day {day}: {res['stderr']}")
                total = tree_bytes(backups)
                one = one or total
                newest = sorted(p for p in backups.iterdir() if not p.name.startswith("."))[-1]
                rows.append({"compression": comp, "day": day, "rows_changed": changed,
                             "artifact_mb": round(tree_bytes(newest) / MB, 1),
                             "total_disk_mb": round(total / MB, 1), "x_one": round(total / one, 2)})
            s = {"compression": comp, "days": args.days, "one_mb": round(one / MB, 1),
                 "total_mb": rows[-1]["total_disk_mb"], "x_one": rows[-1]["x_one"]}
            if comp == "none":
                files = sorted(backups.glob("*/sqlite/*"))
                for chunk, key in ((4096, "dedup_4k_x_one"), (65536, "dedup_64k_x_one")):
                    distinct, first = distinct_chunks(files, chunk)
                    s[key] = round(distinct / first, 2)
            summaries.append(s)
            shutil.rmtree(backups, ignore_errors=True)
    finally:
        shutil.rmtree(wd, ignore_errors=True)
    summary = "; ".join(
        f"{s['compression']}: {s['days']} daily snapshots take {s['x_one']:.2f}x one "
        f"({s['total_mb']:.0f} MB vs {s['one_mb']:.0f} MB)"
        + (f", ideal dedup would keep {s['dedup_4k_x_one']:.2f}x (4 KiB pages) / "
           f"{s['dedup_64k_x_one']:.2f}x (64 KiB chunks)" if "dedup_4k_x_one" in s else "")
        for s in summaries) + f" [{size_label(size)}, {args.change_percent:g}% rows/day]"
    path = save(args.name, {"benchmark": "storage_growth", "args": vars(args), "machine": machine,
                            "columns": COLUMNS, "rows": rows, "summaries": summaries,
                            "summary": summary}, args.out)
    print(table(rows, COLUMNS))
    print()
    print(table(summaries, SUMMARY_COLUMNS))
    print(f"summary: {summary}")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
