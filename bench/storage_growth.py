#!/usr/bin/python3
"""Storage growth of daily snapshots: full copies versus the page store (layout = pages).

    /usr/bin/python3 bench/storage_growth.py --size 256M --days 7,30
    /usr/bin/python3 bench/storage_growth.py --size 2G --days 3 --no-restic --name storage_growth_2g

One live tracker database (WAL), one simulated day of tracker writes between
runs (bench/tracker_workload.py: skewed popularity, a share of new torrents),
and on every day, on the same database state, in the same run:
  full   `tracker-backup run` with layout = full (one .db.zst per snapshot): the anchor;
  pages  `tracker-backup run` with layout = pages;
  floor  zstd (same level) of exactly the pages that changed since the previous day:
         what any page-level store must keep at least;
  restic Debian's restic backing up the same file (its own chunk dedup), for reference.
Then, on the last series' snapshots: restore of the newest and of the oldest pages
snapshot versus restoring the full copy of the same day (alternating, --restore-repeats
samples each, fastest of each compared), and one extra day with few
changes (default ≤ 5 % of pages) to compare the wall time of the two runs.
Every ratio is against an anchor measured in this run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
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
    agent_env,
    drop_cache,
    finish,
    fresh_copy,
    machine_info,
    parse_list,
    run_agent,
    tree_bytes,
    workdir,
    write_agent_config,
)
from dbgen import parse_size, size_label  # noqa: E402
from tracker_workload import tracker_day  # noqa: E402

COLUMNS = ["days", "day", "changed_pct", "floor_mb", "pages_new_mb", "x_floor", "full_total_mb",
           "pages_total_mb", "pages_x_full", "restic_total_mb", "full_s", "pages_s",
           "full_rss_mb", "pages_rss_mb"]


def checkpoint(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def page_digests(db: Path, page_size: int = 4096) -> list[bytes]:
    out = []
    with open(db, "rb") as fh:
        while page := fh.read(page_size):
            out.append(hashlib.blake2b(page, digest_size=16).digest())
    return out


def changed_floor(db: Path, before: list[bytes], level: int) -> tuple[int, int, list[bytes]]:
    """(changed pages, zstd bytes of exactly those pages in one stream, today's digests)."""
    import zstandard

    comp = zstandard.ZstdCompressor(level=level).compressobj()
    out = 0
    changed = 0
    now = []
    with open(db, "rb") as fh:
        i = 0
        while page := fh.read(4096):
            d = hashlib.blake2b(page, digest_size=16).digest()
            now.append(d)
            if i >= len(before) or before[i] != d:
                changed += 1
                out += len(comp.compress(page))
            i += 1
    out += len(comp.flush())
    return changed, out, now


def newest_id(backups: Path) -> str:
    return sorted(p.name for p in backups.iterdir() if p.name[:1].isdigit())[-1]


def restic(repo: Path, password: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "RESTIC_PASSWORD_FILE": str(password),
           "RESTIC_CACHE_DIR": str(repo.parent / "restic-cache"), "HOME": str(repo.parent)}
    return subprocess.run(["restic", "-r", str(repo), "-q", *args], env=env, check=True,
                          capture_output=True, text=True)


def timed_restore(config: Path, snap: str, dest: Path) -> float:
    dest.unlink(missing_ok=True)
    t0 = time.monotonic()
    proc = subprocess.run([PYTHON, "-m", "tracker_backup", "--config", str(config), "restore",
                           snap, "--kind", "sqlite", "--to", str(dest)],
                          capture_output=True, text=True, env=agent_env())
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"restore {snap} failed: {proc.stderr[-2000:]}")
    dest.unlink(missing_ok=True)
    return round(wall, 2)


def run_both(configs: dict[str, Path], backups: dict[str, Path], db: Path) -> dict:
    out = {}
    for layout in ("full", "pages"):
        before = tree_bytes(backups[layout])
        drop_cache(db)  # both runs read the database from disk
        res = run_agent(configs[layout])
        if res["rc"] != 0:
            raise RuntimeError(f"{layout} run failed: {res['stderr']}")
        out[layout] = {"wall_s": res["wall_s"], "rss_mb": res["maxrss_mb"],
                       "new": tree_bytes(backups[layout]) - before,
                       "total": tree_bytes(backups[layout])}
    return out


def series(args, size: int, days: int, wd: Path, last: bool) -> tuple[list[dict], dict]:
    db = fresh_copy(size, wd / "live" / "tracker.db")
    rng = random.Random(args.seed)
    backups, configs = {}, {}
    for layout in ("full", "pages"):
        backups[layout] = wd / f"backups-{layout}"
        shutil.rmtree(backups[layout], ignore_errors=True)
        configs[layout] = write_agent_config(
            wd / f"{layout}.conf", backups[layout], db, compression="zstd", verify=args.verify,
            keep_last=days + 2, extra="")
        text = configs[layout].read_text().replace("[backup]\n", f"[backup]\nlayout = {layout}\n")
        configs[layout].write_text(text)
    repo, password = wd / "restic-repo", wd / "restic-password"
    if args.restic:
        shutil.rmtree(repo, ignore_errors=True)
        password.write_text("bench\n")
        restic(repo, password, "init")
    rows = []
    digests: list[bytes] = []
    for day in range(1, days + 1):
        if day > 1:
            tracker_day(db, rng, downloads_percent=args.downloads_percent,
                        new_percent=args.new_percent)
        checkpoint(db)  # the file holds the whole state: the floor and restic read it
        changed, floor, digests = changed_floor(db, digests, args.level)
        ran = run_both(configs, backups, db)
        row = {"days": days, "day": day, "changed_pct": round(100 * changed / len(digests), 1),
               "floor_mb": round(floor / MB, 2), "pages_new_mb": round(ran["pages"]["new"] / MB, 2),
               "x_floor": round(ran["pages"]["new"] / floor, 3) if day > 1 else None,
               "full_total_mb": round(ran["full"]["total"] / MB, 1),
               "pages_total_mb": round(ran["pages"]["total"] / MB, 1),
               "pages_x_full": round(ran["pages"]["total"] / ran["full"]["total"], 3),
               "full_s": ran["full"]["wall_s"], "pages_s": ran["pages"]["wall_s"],
               "full_rss_mb": ran["full"]["rss_mb"], "pages_rss_mb": ran["pages"]["rss_mb"]}
        if args.restic:
            restic(repo, password, "backup", str(db))
            row["restic_total_mb"] = round(tree_bytes(repo) / MB, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary: dict = {"days": days}
    ratios = [r["x_floor"] for r in rows if r["x_floor"] is not None]
    summary["x_floor_max"] = max(ratios) if ratios else None
    summary["x_floor_median"] = statistics.median(ratios) if ratios else None
    summary["pages_x_full"] = rows[-1]["pages_x_full"]
    summary["restic_x_full"] = (round(rows[-1]["restic_total_mb"] / rows[-1]["full_total_mb"], 3)
                                if args.restic else None)
    summary["changed_pct_median"] = statistics.median(r["changed_pct"] for r in rows[1:]) \
        if days > 1 else None
    if last:
        pages_ids = sorted(p.name for p in backups["pages"].iterdir() if p.name[:1].isdigit())
        full_ids = sorted(p.name for p in backups["full"].iterdir() if p.name[:1].isdigit())
        dest = wd / "restored.db"
        for label, i in (("newest", -1), ("oldest", 0)):
            # Alternating full, pages, full, pages...: on a shared host a load spike hits one
            # sample, not one layout; the ratio is of each layout's fastest sample.
            t_full, t_pages = [], []
            for _ in range(args.restore_repeats):
                drop_cache(db)
                t_full.append(timed_restore(configs["full"], full_ids[i], dest))
                t_pages.append(timed_restore(configs["pages"], pages_ids[i], dest))
            summary[f"restore_{label}_full_s"] = min(t_full)
            summary[f"restore_{label}_pages_s"] = min(t_pages)
            summary[f"restore_{label}_samples"] = {"full": t_full, "pages": t_pages}
            summary[f"restore_{label}_x_full"] = round(min(t_pages) / min(t_full), 3)
        # One quiet day: few pages changed; both runs on the same state.
        tracker_day(db, rng, downloads_percent=args.quiet_downloads_percent,
                    new_percent=args.quiet_new_percent)
        checkpoint(db)
        changed, _floor, digests = changed_floor(db, digests, args.level)
        ran = run_both(configs, backups, db)
        summary["quiet_changed_pct"] = round(100 * changed / len(digests), 2)
        summary["quiet_full_s"] = ran["full"]["wall_s"]
        summary["quiet_pages_s"] = ran["pages"]["wall_s"]
        summary["quiet_x_full"] = round(ran["pages"]["wall_s"] / ran["full"]["wall_s"], 3)
        summary["pages_rss_max_mb"] = max(r["pages_rss_mb"] for r in rows)
        summary["full_rss_max_mb"] = max(r["full_rss_mb"] for r in rows)
    for layout in ("full", "pages"):
        shutil.rmtree(backups[layout], ignore_errors=True)
    shutil.rmtree(repo, ignore_errors=True)
    return rows, summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="256M")
    ap.add_argument("--days", default="7,30", help="series lengths, e.g. 7,30")
    ap.add_argument("--downloads-percent", type=float, default=2.0,
                    help="downloads per day, as a percentage of the torrents")
    ap.add_argument("--new-percent", type=float, default=0.3,
                    help="new torrents per day, as a percentage of the torrents")
    ap.add_argument("--quiet-downloads-percent", type=float, default=0.2)
    ap.add_argument("--quiet-new-percent", type=float, default=0.02)
    ap.add_argument("--verify", default="quick")
    ap.add_argument("--level", type=int, default=3, help="the agent's zstd level (default 3)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-restic", dest="restic", action="store_false")
    ap.add_argument("--restore-repeats", type=int, default=2,
                    help="restore samples per layout and snapshot, alternating (default 2)")
    ap.add_argument("--workdir")
    ap.add_argument("--out")
    ap.add_argument("--name", default="storage_growth")
    args = ap.parse_args()
    size = parse_size(args.size)
    if args.restic and not shutil.which("restic"):
        subprocess.run(["apt-get", "install", "-y", "restic"], check=True, capture_output=True)
    wd = workdir(args.workdir, "growth")
    machine = machine_info(wd)
    rows, summaries = [], []
    try:
        lengths = parse_list(args.days, int)
        for n, days in enumerate(lengths):
            r, s = series(args, size, days, wd, last=n == len(lengths) - 1)
            rows += r
            summaries.append(s)
    finally:
        shutil.rmtree(wd, ignore_errors=True)
    parts = []
    for s in summaries:
        text = (f"{s['days']} days: pages store {s['pages_x_full']:.2f}x the full copies"
                + (f" (restic {s['restic_x_full']:.2f}x)" if s.get("restic_x_full") else "")
                + (f", per restore point max {s['x_floor_max']:.2f}x / median "
                   f"{s['x_floor_median']:.2f}x the zstd of exactly the changed pages "
                   f"(median {s['changed_pct_median']:.0f}% pages changed/day)"
                   if s.get("x_floor_max") else ""))
        if "quiet_x_full" in s:
            text += (f"; run at {s['quiet_changed_pct']:.1f}% pages changed {s['quiet_x_full']:.2f}x"
                     f" a full run; restore newest {s['restore_newest_x_full']:.2f}x, oldest "
                     f"{s['restore_oldest_x_full']:.2f}x a full copy's; peak RSS pages "
                     f"{s['pages_rss_max_mb']:.0f} MB vs full {s['full_rss_max_mb']:.0f} MB")
        parts.append(text)
    summary = "; ".join(parts) + f" [{size_label(size)}]"
    print()
    print(json.dumps(summaries, indent=1))
    return finish("storage_growth", args, machine, COLUMNS, rows, summary,
                  extra={"summaries": summaries}, blank_line=True)


if __name__ == "__main__":
    raise SystemExit(main())
