#!/usr/bin/env python3
"""A tracker-style MySQL writer: upserts at a fixed rate, like the Torrust tracker's MySQL driver.

Each transaction does `INSERT ... ON DUPLICATE KEY UPDATE completed = completed + 1` on
`torrents` and bumps the `torrents_downloads_total` metric, then commits: a
consistent copy always has sum(completed) == metric. Every other write is a new
torrent whose number is recorded once committed, so a test knows which rows
must be in any snapshot taken after that moment.

Usage: mysql_writer.py --socket S --database D --rate N --stats FILE [--existing N] [--acks F]
--acks F records each committed new torrent as "N BEGIN ACK" (time.time() before the
INSERT and after COMMIT returned): what a point-in-time restore must hold.
SIGUSR1 starts a new latency window (stats["windows"]); SIGTERM/SIGINT stops,
writes final stats (JSON) and exits 0. Needs python3-pymysql (tests only).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import time

import pymysql

try:  # run as a script (how the tests start it): this directory is sys.path[0]
    from pacing import Pacer
except ImportError:  # imported as a module of the support package
    from support.pacing import Pacer

METRIC = "torrents_downloads_total"
START_NEW = 10**12  # numbers of new torrents: far from the pre-filled ones


def _summary(lat: list[float]) -> dict:
    lat = sorted(lat)
    if not lat:
        return {"ops": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, round(q * (len(lat) - 1)))] * 1000

    return {"ops": len(lat), "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": lat[-1] * 1000}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--database", required=True)
    ap.add_argument("--user", default="root")
    ap.add_argument("--rate", type=float, default=300.0, help="transactions per second")
    ap.add_argument("--stats", required=True)
    ap.add_argument("--existing", type=int, default=1000, help="torrents already in the DB")
    ap.add_argument("--start-new", type=int, default=START_NEW, help="first number for new torrents")
    ap.add_argument("--acks", help="append 'N BEGIN ACK' (wall clock) per committed new torrent")
    args = ap.parse_args()
    acks = open(args.acks, "a", buffering=1 << 16) if args.acks else None  # noqa: SIM115

    state = {"stop": False, "new_window": False}
    signal.signal(signal.SIGTERM, lambda s, f: state.update(stop=True))
    signal.signal(signal.SIGINT, lambda s, f: state.update(stop=True))
    signal.signal(signal.SIGUSR1, lambda s, f: state.update(new_window=True))

    conn = pymysql.connect(unix_socket=args.socket, user=args.user, database=args.database,
                           autocommit=False)
    with conn.cursor() as cur:
        # A lock wait longer than this is an error, and counted as one.
        cur.execute("SET SESSION innodb_lock_wait_timeout = 5")
    rng = random.Random(os.getpid())
    stats = {"ops": 0, "errors": 0, "last_error": None, "last_new_committed": -1,
             "first_new": args.start_new, "new_committed": 0, "running": True, "window": 0,
             "windows": []}
    window: list[float] = []
    next_new = args.start_new
    pacer = Pacer(args.rate)
    last_dump = 0.0

    def dump() -> None:
        out = dict(stats, current=_summary(window))
        tmp = f"{args.stats}.tmp"
        with open(tmp, "w") as fh:
            json.dump(out, fh)
        os.replace(tmp, args.stats)

    while not state["stop"]:
        if state["new_window"]:
            state["new_window"] = False
            stats["windows"].append(_summary(window))
            stats["window"] += 1
            window = []
            dump()
        new = rng.random() < 0.5
        n = next_new if new else rng.randrange(max(1, args.existing))
        t0 = time.monotonic()
        begin = time.time()
        try:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO torrents (info_hash, completed) VALUES (%s, 1) "
                            "ON DUPLICATE KEY UPDATE completed = completed + 1", (f"{n:040x}",))
                cur.execute("UPDATE torrent_aggregate_metrics SET value = value + 1 "
                            "WHERE metric_name = %s", (METRIC,))
            conn.commit()
            window.append(time.monotonic() - t0)
            stats["ops"] += 1
            if new:
                stats["last_new_committed"] = n
                stats["new_committed"] += 1
                next_new += 1
                if acks:
                    acks.write(f"{n} {begin:.6f} {time.time():.6f}\n")
        except pymysql.MySQLError as exc:
            stats["errors"] += 1
            stats["last_error"] = str(exc)
            try:
                conn.rollback()
            except pymysql.MySQLError:
                time.sleep(0.2)  # server gone: do not spin
        now = time.monotonic()
        if now - last_dump > 0.1:
            if acks:
                acks.flush()
            dump()
            last_dump = now
        pacer.wait()
    stats["windows"].append(_summary(window))
    stats["running"] = False
    if acks:
        acks.close()
    dump()
    conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
