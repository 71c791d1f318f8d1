#!/usr/bin/env python3
"""A tracker-style writer: upserts at a fixed rate, like the Torrust tracker's SQLite driver.

Each transaction does `INSERT ... ON CONFLICT(info_hash) DO UPDATE SET completed = completed + 1`
and bumps the aggregate metric, in one transaction. Every other write is a new
torrent whose number is recorded once committed, so a test knows which rows
must be in any snapshot taken after that moment.

Usage: tracker_writer.py DB --rate N --stats FILE [--start-new N] [--busy-timeout S] [--commit-log F]
Runs until SIGTERM/SIGINT, then writes final stats (JSON) and exits 0.
--commit-log F appends one line per committed transaction: "t_begin t_ack n", POSIX seconds
around BEGIN..COMMIT and the new torrent's number (-1 for an update), for point-in-time checks.
Standalone on purpose: the end-to-end tests run it inside a container as a non-root user.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sqlite3
import time

try:  # run as a script (how the tests start it): this directory is sys.path[0]
    from pacing import Pacer
except ImportError:  # imported as a module of the support package
    from support.pacing import Pacer

METRIC = "torrents_downloads_total"


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def write_stats(path: str, stats: dict, latencies: list[float]) -> None:
    lat = sorted(latencies)
    out = dict(stats)
    out.update({"p50_ms": percentile(lat, 0.50) * 1000, "p99_ms": percentile(lat, 0.99) * 1000,
                "max_ms": (lat[-1] if lat else 0.0) * 1000, "samples": len(lat)})
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(out, fh)
    os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("db")
    ap.add_argument("--rate", type=float, default=500.0, help="transactions per second")
    ap.add_argument("--stats", required=True)
    ap.add_argument("--start-new", type=int, default=10**9, help="first number for new torrents")
    ap.add_argument("--existing", type=int, default=1000, help="torrents already in the DB")
    ap.add_argument("--busy-timeout", type=float, default=5.0)
    ap.add_argument("--commit-log", default=None)
    args = ap.parse_args()
    commit_log = open(args.commit_log, "a", buffering=1 << 16) if args.commit_log else None

    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    conn = sqlite3.connect(args.db, isolation_level=None, timeout=args.busy_timeout)
    rng = random.Random(os.getpid())
    stats = {"ops": 0, "errors": 0, "last_error": None, "last_new_committed": -1,
             "new_committed": 0, "started": time.time(), "running": True}
    latencies: list[float] = []
    next_new = args.start_new
    pacer = Pacer(args.rate)
    last_dump = 0.0
    while not stop["flag"]:
        new = rng.random() < 0.5
        n = next_new if new else rng.randrange(max(1, args.existing))
        ih = f"{n:040x}"
        t0 = time.monotonic()
        wall0 = time.time()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO torrents(info_hash, completed) VALUES (?, 1) "
                         "ON CONFLICT(info_hash) DO UPDATE SET completed = completed + 1", (ih,))
            conn.execute("UPDATE torrent_aggregate_metrics SET value = value + 1 "
                         "WHERE metric_name = ?", (METRIC,))
            conn.execute("COMMIT")
            latencies.append(time.monotonic() - t0)
            if commit_log is not None:
                commit_log.write(f"{wall0:.6f} {time.time():.6f} {n if new else -1}\n")
            stats["ops"] += 1
            if new:
                stats["last_new_committed"] = n
                stats["new_committed"] += 1
                next_new += 1
        except sqlite3.Error as exc:
            stats["errors"] += 1
            stats["last_error"] = str(exc)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        now = time.monotonic()
        if now - last_dump > 0.2:
            if commit_log is not None:
                commit_log.flush()
            write_stats(args.stats, stats, latencies)
            last_dump = now
        pacer.wait()
    stats["running"] = False
    if commit_log is not None:
        commit_log.close()
    write_stats(args.stats, stats, latencies)
    conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
