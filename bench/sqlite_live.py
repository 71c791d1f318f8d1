#!/usr/bin/python3
"""Live SQLite (WAL) under a tracker-style writer: the agent versus the tools an operator would use.

    /usr/bin/python3 bench/sqlite_live.py --sizes 256M,1G --rates 1000,5000

For each size and writer rate, on the same database in the same run:
  idle          the writer alone: its latency baseline (p50/p99/max);
  cp            offline `cp` with the writer stopped: the anchor (the deployer's approach);
  cp+sync live  `cp` and `sync` of the live file under the writer: NOT a backup (no -wal,
                may be torn), only the same bytes' I/O load, to separate what copying
                any 1 GB does to the writer's latency from what the agent adds;
  .backup       `sqlite3 DB ".backup F"` under the writer, killed after --backup-limit
                seconds; the fraction copied is the largest size F reached / DB size;
  VACUUM INTO   under the writer;
  agent ...     `python3 -m tracker_backup run` under the writer: compression none/zstd,
                rate_limit off/on, and verify=quick to show what the integrity check costs.
Every copy is checked: PRAGMA integrity_check and sum(completed) == metric.
Each method starts with the database evicted from the page cache (posix_fadvise).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    MB,
    Writer,
    bench_parser,
    check_copy,
    decompress,
    drop_cache,
    finish,
    fresh_copy,
    latest_snapshot,
    parse_list,
    run_agent,
    scratch,
    table,
    tree_bytes,
    write_agent_config,
    writer_fields,
)
from dbgen import parse_size, size_label  # noqa: E402

COLUMNS = ["size", "rate", "method", "wall_s", "x_cp", "copy_s", "verify_s", "ok", "fraction",
           "written_mb", "maxrss_mb", "w_errors", "w_p50_ms", "w_p99_ms", "w_max_ms", "p99_x_idle",
           "w_rate"]

METHODS = ("cp", "cplive", "cli", "vacuum", "agent")
AGENT_VARIANTS = {
    # name: (label, compression, rate limited, verify)
    "none": ("agent none", "none", False, "full"),
    "none-rl": ("agent none rl", "none", True, "full"),
    "zstd": ("agent zstd", "zstd", False, "full"),
    "zstd-rl": ("agent zstd rl", "zstd", True, "full"),
    "none-quick": ("agent none quick", "none", False, "quick"),
}


def measure_idle(db: Path, wd: Path, rate: float, seconds: float) -> dict:
    w = Writer(db, wd / "w-idle.json", rate)
    time.sleep(seconds)
    return w.stop()


def measure_cp(db: Path, wd: Path) -> dict:
    """Offline cp (writer stopped), then fsync of the copy timed separately."""
    dest = wd / "cp.db"
    drop_cache(db)
    t0 = time.monotonic()
    subprocess.run(["cp", str(db), str(dest)], check=True)
    wall = time.monotonic() - t0
    t1 = time.monotonic()
    subprocess.run(["sync", str(dest)], check=True)
    sync_s = time.monotonic() - t1
    row = {"method": "cp (offline)", "wall_s": round(wall, 3), "sync_s": round(sync_s, 3),
           "written_mb": round(dest.stat().st_size / MB, 1), "fraction": 1.0}
    row.update(_check(dest))
    dest.unlink()
    return row


def measure_cp_live(db: Path, wd: Path, rate: float) -> dict:
    """cp + sync of the live file under the writer: not a backup (the -wal is left out and a
    checkpoint may tear it), only the I/O load of copying these bytes, to see what that
    load alone does to the writer's latency."""
    dest = wd / "cp-live.db"
    drop_cache(db)
    w = Writer(db, wd / "w-cplive.json", rate)
    t0 = time.monotonic()
    subprocess.run(["cp", str(db), str(dest)], check=True)
    subprocess.run(["sync", str(dest)], check=True)
    wall = time.monotonic() - t0
    stats = w.stop()
    row = {"method": "cp+sync live (load only)", "wall_s": round(wall, 3),
           "written_mb": round(dest.stat().st_size / MB, 1)}
    row.update(_check(dest))
    row.update(writer_fields(stats))
    dest.unlink()
    return row


def measure_cli_backup(db: Path, wd: Path, rate: float, limit: float) -> dict:
    """sqlite3 .backup under the writer, killed at `limit` seconds."""
    dest = wd / "cli-backup.db"
    dest.unlink(missing_ok=True)
    size = db.stat().st_size
    drop_cache(db)
    w = Writer(db, wd / "w-cli.json", rate)
    t0 = time.monotonic()
    proc = subprocess.Popen(["sqlite3", str(db), f".backup '{dest}'"], stderr=subprocess.PIPE)
    biggest = 0
    while proc.poll() is None and time.monotonic() - t0 < limit:
        if dest.exists():
            biggest = max(biggest, dest.stat().st_size)
        time.sleep(0.05)
    finished = proc.poll() is not None
    if not finished:
        proc.kill()
    proc.wait()
    wall = time.monotonic() - t0
    stats = w.stop()
    row = {"method": ".backup (sqlite3)", "wall_s": round(wall, 3), "finished": finished,
           "time_limit_s": limit}
    if finished and proc.returncode == 0:
        row["fraction"] = 1.0
        row["written_mb"] = round(dest.stat().st_size / MB, 1)
        row.update(_check(dest))
    else:
        if dest.exists():
            biggest = max(biggest, dest.stat().st_size)
        row["fraction"] = round(biggest / size, 4)
        row["written_mb"] = round(biggest / MB, 1)
        row["ok"] = None  # an unfinished copy is not a backup
        row["mb_per_hour"] = round(biggest / MB / wall * 3600, 1)
    row.update(writer_fields(stats))
    dest.unlink(missing_ok=True)
    Path(f"{dest}-journal").unlink(missing_ok=True)
    return row


def measure_vacuum_into(db: Path, wd: Path, rate: float) -> dict:
    dest = wd / "vacuum.db"
    dest.unlink(missing_ok=True)
    drop_cache(db)
    w = Writer(db, wd / "w-vacuum.json", rate)
    t0 = time.monotonic()
    proc = subprocess.run(["sqlite3", str(db), f"VACUUM INTO '{dest}'"], capture_output=True,
                          text=True)
    wall = time.monotonic() - t0
    stats = w.stop()
    row = {"method": "VACUUM INTO", "wall_s": round(wall, 3), "fraction": 1.0}
    if proc.returncode == 0:
        row["written_mb"] = round(dest.stat().st_size / MB, 1)
        row.update(_check(dest))
    else:
        row.update({"ok": False, "error": proc.stderr.strip()[-300:]})
    row.update(writer_fields(stats))
    dest.unlink(missing_ok=True)
    return row


def measure_agent(db: Path, wd: Path, rate: float, label: str, compression: str,
                  rate_limit: float, verify: str) -> dict:
    backups = wd / "backups"
    shutil.rmtree(backups, ignore_errors=True)
    config = write_agent_config(wd / "agent.conf", backups, db, compression=compression,
                                rate_limit=rate_limit, verify=verify)
    drop_cache(db)
    w = Writer(db, wd / "w-agent.json", rate)
    res = run_agent(config)
    stats = w.stop()
    row = {"method": label, "wall_s": res["wall_s"], "rc": res["rc"],
           "tree_pss_mb": res["tree_pss_mb"], "maxrss_mb": res["maxrss_mb"],
           "rate_limit_mbps": rate_limit, "compression": compression, "verify": verify}
    row.update(writer_fields(stats))
    snap = latest_snapshot(backups) if backups.exists() else None
    if res["rc"] != 0 or snap is None:
        row.update({"ok": False, "error": res["stderr"][-500:]})
        return row
    snap_dir, manifest = snap
    details = manifest["sources"]["sqlite"]
    art = next(a for a in manifest["artifacts"] if a["source"] == "sqlite")
    # What reached the disk: the staging copy, plus the compressed artifact when compressed.
    written = details["copied_bytes"] + (art["bytes"] if compression != "none" else 0)
    row.update({"copy_s": details.get("copy_seconds"), "verify_s": details["check"]["seconds"],
                "source_s": details.get("seconds"), "fraction": 1.0,
                "artifact_mb": round(art["bytes"] / MB, 1), "written_mb": round(written / MB, 1),
                "snapshot_disk_mb": round(tree_bytes(snap_dir) / MB, 1)})
    stored = snap_dir / art["path"]
    if compression == "zstd":
        stored = decompress(stored, wd / "agent-check.db")
    row.update(_check(stored))
    if compression == "zstd":
        stored.unlink()
    shutil.rmtree(backups, ignore_errors=True)
    return row


def _check(path: Path) -> dict:
    c = check_copy(path)
    return {"ok": c["ok"], "integrity": c["integrity"], "invariant": c["invariant"],
            "check_s": c["check_s"]}


def summarize(rows: list[dict]) -> str:
    parts = []
    for key in dict.fromkeys((r["size"], r["rate"]) for r in rows):
        group = {r["method"]: r for r in rows if (r["size"], r["rate"]) == key}
        bits = [f"{key[0]}@{key[1]}/s:"]
        cp = group.get("cp (offline)", {}).get("wall_s")
        for m in ("agent none", "agent zstd", "VACUUM INTO"):
            r = group.get(m, {})
            if r.get("x_cp") is not None:
                bits.append(f"{m} {r['x_cp']:.2f}x cp"
                            + (f" (copy step {r['copy_s'] / cp:.2f}x)" if r.get("copy_s") and cp
                               else "") + ",")
        cli = group.get(".backup (sqlite3)")
        if cli:
            bits.append(f".backup {100 * cli['fraction']:.1f}% in {cli['wall_s']:.0f}s,")
        agents = [r for m, r in group.items() if m.startswith("agent")]
        errs = sum(r.get("w_errors") or 0 for r in agents)
        worst = max((r.get("p99_x_idle") or 0 for r in agents), default=0)
        bits.append(f"agent writer errors {errs}, worst p99 {worst:.2f}x idle")
        parts.append(" ".join(bits))
    return "; ".join(parts)


def main() -> int:
    ap = bench_parser(__doc__, "sqlite_live")
    ap.add_argument("--sizes", default="256M,1G", help="database sizes, e.g. 256M,1G")
    ap.add_argument("--rates", default="1000,5000", help="writer transactions per second")
    ap.add_argument("--backup-limit", type=float, default=30.0,
                    help="seconds before the sqlite3 .backup run is killed")
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    ap.add_argument("--rate-limit", type=float, default=100.0,
                    help="MB/s for the rate-limited agent runs")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="subset of cp,cplive,cli,vacuum,agent (cp always runs: it is the anchor)")
    ap.add_argument("--variants", default=",".join(AGENT_VARIANTS),
                    help=f"agent runs, subset of {','.join(AGENT_VARIANTS)}")
    args = ap.parse_args()
    methods = set(parse_list(args.methods))
    for opt, given, known in (("--methods", methods, METHODS),
                              ("--variants", set(parse_list(args.variants)), AGENT_VARIANTS)):
        if given - set(known):
            ap.error(f"{opt}: unknown {', '.join(sorted(given - set(known)))}; "
                     f"expected some of {', '.join(known)}")
    wd, machine = scratch(args, "live")
    rows: list[dict] = []
    try:
        for size in parse_list(args.sizes, parse_size):
            db = fresh_copy(size, wd / "live" / "tracker.db")
            for rate in parse_list(args.rates, float):
                base = {"size": size_label(size), "rate": int(rate),
                        "db_mb": round(db.stat().st_size / MB, 1)}
                idle = measure_idle(db, wd, rate, args.idle_seconds)
                group = [{"method": "idle writer", **writer_fields(idle)}]
                group.append(measure_cp(db, wd))
                if "cplive" in methods:
                    group.append(measure_cp_live(db, wd, rate))
                if "cli" in methods:
                    group.append(measure_cli_backup(db, wd, rate, args.backup_limit))
                if "vacuum" in methods:
                    group.append(measure_vacuum_into(db, wd, rate))
                if "agent" in methods:
                    for variant in parse_list(args.variants):
                        label, comp, limited, verify = AGENT_VARIANTS[variant]
                        group.append(measure_agent(db, wd, rate, label, comp,
                                                   args.rate_limit if limited else 0, verify))
                cp_wall = group[1]["wall_s"]
                for r in group:
                    r.update({k: v for k, v in base.items() if k not in r})
                    if r.get("wall_s") is not None and r["method"] != "idle writer":
                        r["x_cp"] = round(r["wall_s"] / cp_wall, 2) if cp_wall else None
                    if r.get("w_p99_ms") and idle.get("p99_ms"):
                        r["p99_x_idle"] = round(r["w_p99_ms"] / idle["p99_ms"], 2)
                rows.extend(group)
                print(table(group, COLUMNS), flush=True)
    finally:
        shutil.rmtree(wd, ignore_errors=True)
    summary = summarize(rows)
    return finish("sqlite_live", args, machine, COLUMNS, rows, summary, blank_line=True)


if __name__ == "__main__":
    raise SystemExit(main())
