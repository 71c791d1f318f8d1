#!/usr/bin/python3
"""Archive-built page snapshots: does a run's wall time depend on the database's size?

    /usr/bin/python3 bench/archive_built_run.py --sizes 256M,2000000000 --updates 5000 --rounds 3

For each size: a live WAL tracker database, the archiver (tests/support/run_archiver.py:
the same Runner and SqliteArchiver as `tracker-backup archive`) following it, `[backup]
layout = pages` with `[sqlite] continuous = yes` (archive_check = pages, the default). The
first run reads the database (the first page snapshot); then, `--rounds` times, the same change
volume (`--updates` upserts of random torrents, the metric kept equal to their sum), the archive
catches up, and one timed run, which builds the snapshot from the archived commits without
reading the database. Anchor, same run: the archive-built run on the smallest size; printed:
each size's median archive-built run and its ratio to the anchor, beside the first run (which
reads the whole database) and its ratio, so the two scalings can be compared.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    MB,
    PYTHON,
    ROOT,
    agent_env,
    bench_parser,
    finish,
    fresh_copy,
    latest_snapshot,
    parse_list,
    run_agent,
    scratch,
    write_agent_config,
)
from dbgen import parse_size, size_label  # noqa: E402

from support.tracker_db import METRIC  # noqa: E402

ARCHIVER = ROOT / "tests" / "support" / "run_archiver.py"
COLUMNS = ["size", "db_mb", "first_run_s", "first_x", "archive_run_s", "archive_x",
           "archive_runs", "changed_pages", "new_mb", "check", "check_s", "pss_mb"]


def update(db: Path, rng: random.Random, n: int) -> None:
    """`n` downloads of random torrents in 100-row transactions (the tracker's invariant kept)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        lo, hi = conn.execute("SELECT min(id), max(id) FROM torrents").fetchone()
        for start in range(0, n, 100):
            k = min(100, n - start)
            conn.execute("BEGIN IMMEDIATE")
            for _ in range(k):
                conn.execute("UPDATE torrents SET completed = completed + 1 WHERE id = ?",
                             (rng.randint(lo, hi),))
            conn.execute("UPDATE torrent_aggregate_metrics SET value = value + ? "
                         "WHERE metric_name = ?", (k, METRIC))
            conn.execute("COMMIT")
    finally:
        conn.close()


def wait_archived(db: Path, backups: Path, timeout: float = 300) -> None:
    """Until the archive's last entry is the database's last commit (no writer running)."""
    sys.path.insert(0, str(ROOT / "agent"))
    from tracker_backup.archive.store import SourceArchive
    from tracker_backup.engines.sqlite.archive.wal import read_index_header

    deadline = time.monotonic() + timeout
    fd = os.open(f"{db}-shm", os.O_RDONLY)
    try:
        while time.monotonic() < deadline:
            hdr = read_index_header(fd)
            gen = SourceArchive(backups, "sqlite").current()
            segs = gen.segments()[0] if gen is not None else []
            last = (segs[-1].trailer.get("last_meta") or {}) if segs else {}
            if hdr is not None and last.get("frame") == hdr.mx_frame and hdr.mx_frame > 0:
                return
            time.sleep(0.2)
    finally:
        os.close(fd)
    raise RuntimeError("the archiver did not catch up")


def one_size(args, size: int, wd: Path, rng: random.Random) -> dict:
    db = fresh_copy(size, wd / "live" / "tracker.db")
    backups = wd / "backups"
    backups.mkdir(mode=0o700)
    config = write_agent_config(wd / "pages.conf", backups, db, compression="zstd",
                                verify="quick", keep_last=args.rounds + 2,
                                extra="continuous = yes\n")
    config.write_text(config.read_text().replace("[backup]\n", "[backup]\nlayout = pages\n"))
    log = open(wd / "archiver.log", "wb")
    arch = subprocess.Popen([PYTHON, str(ARCHIVER), str(db), str(backups),
                             "--publish-interval", "0.2"], stdout=log, stderr=log, env=agent_env())
    try:
        deadline = time.monotonic() + 900
        while "archive base" not in (wd / "archiver.log").read_text():
            if arch.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((wd / "archiver.log").read_text()[-2000:])
            time.sleep(0.2)
        first = run_agent(config)
        if first["rc"] != 0:
            raise RuntimeError(first["stderr"])
        runs = []
        for _ in range(args.rounds):
            update(db, rng, args.updates)
            wait_archived(db, backups)
            res = run_agent(config)
            if res["rc"] != 0:
                raise RuntimeError(res["stderr"])
            _snap, manifest = latest_snapshot(backups)
            src = manifest["sources"]["sqlite"]
            if src.get("method") != "archive":
                raise RuntimeError(f"the run did not build from the archive: {src.get('method')}")
            runs.append({"wall_s": res["wall_s"], "pss_mb": res["tree_pss_mb"],
                         "changed_pages": src["changed_pages"], "new_mb": src["new_bytes"] / MB,
                         "check_s": src["check"]["seconds"],
                         "check": src["check"]["level"]})
    finally:
        arch.send_signal(signal.SIGTERM)
        arch.wait(timeout=120)
        log.close()
    med = statistics.median(r["wall_s"] for r in runs)
    return {"size": size_label(size), "db_mb": round(os.path.getsize(db) / MB),
            "first_run_s": first["wall_s"], "archive_run_s": med,
            "archive_runs": [r["wall_s"] for r in runs],
            "changed_pages": round(statistics.median(r["changed_pages"] for r in runs)),
            "new_mb": round(statistics.median(r["new_mb"] for r in runs), 1),
            "check_s": statistics.median(r["check_s"] for r in runs),
            "pss_mb": max(r["pss_mb"] for r in runs), "check": runs[-1]["check"]}


def main() -> int:
    ap = bench_parser(__doc__, "archive_built_run")
    ap.add_argument("--sizes", default="256M,2000000000")
    ap.add_argument("--updates", type=int, default=5000, help="downloads per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    wd0, machine = scratch(args, "archive-built")
    rows = []
    try:
        for n, size in enumerate(parse_list(args.sizes, parse_size)):
            wd = wd0 / f"s{n}"
            wd.mkdir()
            rows.append(one_size(args, size, wd, random.Random(args.seed)))
            print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(wd, ignore_errors=True)
    finally:
        shutil.rmtree(wd0, ignore_errors=True)
    anchor = rows[0]
    for r in rows:
        r["first_x"] = round(r["first_run_s"] / anchor["first_run_s"], 2)
        r["archive_x"] = round(r["archive_run_s"] / anchor["archive_run_s"], 2)
    big = rows[-1]
    summary = (f"database {anchor['db_mb']} MB -> {big['db_mb']} MB "
               f"({big['db_mb'] / anchor['db_mb']:.1f}x): archive-built run "
               f"{anchor['archive_run_s']:.1f} s -> {big['archive_run_s']:.1f} s "
               f"({big['archive_x']:.2f}x) for the same {args.updates} downloads; the run that "
               f"reads the database {big['first_x']:.2f}x")
    return finish("archive_built_run", args, machine, COLUMNS, rows, summary)


if __name__ == "__main__":
    raise SystemExit(main())
