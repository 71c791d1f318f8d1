#!/usr/bin/python3
"""MySQL point-in-time recovery: RPO, PITR exactness, writer cost of the archiver, restore time.

    /usr/bin/python3 bench/mysql_pitr.py --rows 5000000 --rate 500 --hour 3600 --window 20 --no-rpo

MariaDB runs in a container of a private Docker engine (tests/support/docker_engine.py,
the deployer's compose layout: a `mysql` service, data in storage/mysql/data, binlog on,
ROW format), reached only through `docker compose exec -T mysql`. The torrents table
gets --rows rows (SHA-1 info-hashes beyond the first 100,000, which the writer updates);
tests/support/mysql_writer.py commits at --rate tx/s on the host through the server's
socket and records when each new torrent's commit was acknowledged.

1. a writer latency window (--window s) before the dump (`tracker-backup run`), then the
   binlog archiver (BinlogArchiver under the archive Runner, in its own process, as the
   service runs it). Through the hour, windows with the archiver running alternate with
   windows with it paused (SIGSTOP of its process tree; resumed, it goes on where it
   was, so the archive stays whole). Ratio: median over the pairs of p99 running / p99
   paused (target <= 1.2); alternating pairs keep the host's slow load changes out of it.
2. "The hour": the writer keeps committing for --hour s after the dump (the hour is
   compressed in time: --hour s at --rate tx/s; an hour at 500 tx/s is 1.8 M
   transactions, the replay cost scales with the transactions, not the wall time).
   T = dump + --hour s.
3. `tracker-backup restore --at T --database pitr_agent` against the anchor measured in
   the same run on the same data: the plain way, `zstd -dc dump | mariadb pitr_plain`
   then `mariadb-binlog --start-position=P --stop-datetime=T+1 <server's binlogs> |
   mariadb pitr_plain` inside the container (target <= 1.5x). Both must hold exactly
   the commits up to the end of second T (acked before T+1, none begun after T+1) and
   the same rows (CHECKSUM TABLE).
4. RPO: the archiver and the writer run again, the server is killed and its data
   directory deleted (disk loss) on a fresh server; `restore --at latest` must hold
   every commit acknowledged >= 1 s before the loss (reported: commits lost in total and
   in the last second).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import AGENT, PYTHON, ROOT, bench_parser, finish, scratch  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from support.deployment import BACKUP_USER, DATABASE, Deployment  # noqa: E402
from support.docker_engine import DockerEngine  # noqa: E402
from support.mariadb import MysqlWriter  # noqa: E402

RESTORE_USER = "tb_restore"
COLUMNS = ["phase", "wall_s", "x_anchor", "transactions", "ok", "w_errors", "w_p50_ms", "w_p99_ms",
           "note"]
ARCHIVE_CHILD = """
import sys
sys.path.insert(0, {agent!r})
from tracker_backup.archive.runner import Runner
from tracker_backup.config import load_config
from tracker_backup.engines.mysql.binlog.archiver import BinlogArchiver
cfg = load_config({config!r})
runner = Runner([BinlogArchiver(cfg.section("mysql"), cfg.backup.path)])
runner.install_signal_handlers()
runner.run()
"""
# `tracker-backup restore --kind mysql --at AT [--database NAME] --mysql-user ...`, through the
# engine's hook (the same step the command runs).
RESTORE_AT_CHILD = """
import argparse, sys
from pathlib import Path
sys.path.insert(0, {agent!r})
from tracker_backup import engines
from tracker_backup.config import load_config
from tracker_backup.engines.contract import RestoreContext
args = argparse.Namespace(database={database!r}, mysql_user={user!r},
                          mysql_password_file=Path({pwfile!r}))
step = engines.get("mysql").plan_restore_at(load_config({config!r}), {at!r}, None, args)
print("\\n".join(step.action.lines()))
print(step.run(RestoreContext("bench")).describe())
"""


class Bench:
    def __init__(self, args, wd: Path):
        self.args, self.wd = args, wd
        self.engine = DockerEngine.start()
        # A short base: the server's socket path (bind-mounted for the writer) must stay
        # under 108 bytes, whatever --workdir is.
        self.host_dir = Path(tempfile.mkdtemp(prefix="tbp-", dir="/var/tmp"))
        self.dep = Deployment(self.engine, self.host_dir, tracker=False)
        self.etc = self.host_dir / "etc"
        self.etc.mkdir(parents=True)
        self.backups = self.host_dir / "backups"
        self.pw = self._secret("mysql.password", "agent-bench-pw")
        self.rpw = self._secret("mysql-restore.password", "restore-bench-pw")
        self.config = self.etc / "tracker-backup.conf"
        self.config.write_text(f"[backup]\npath = {self.backups}\n[mysql]\ndatabase = {DATABASE}\n"
                               f"user = {BACKUP_USER}\npassword_file = {self.pw}\n"
                               f"exec_prefix = {self.dep.exec_prefix}\n")
        self.env = {**os.environ, "PYTHONPATH": str(AGENT),
                    "DOCKER_HOST": self.engine.env["DOCKER_HOST"],
                    "DOCKER_CONFIG": self.engine.env["DOCKER_CONFIG"]}
        self.archiver: subprocess.Popen | None = None

    def _secret(self, name: str, value: str) -> Path:
        path = self.etc / name
        path.write_text(value + "\n")
        os.chmod(path, 0o600)
        return path

    def agent(self, *args: str) -> tuple[float, subprocess.CompletedProcess]:
        t0 = time.monotonic()
        proc = subprocess.run([PYTHON, "-m", "tracker_backup", "--config", str(self.config), *args],
                              capture_output=True, text=True, env=self.env, timeout=7200)
        if proc.returncode != 0:
            raise RuntimeError(f"tracker-backup {' '.join(args)}: {proc.stdout}\n{proc.stderr}")
        return time.monotonic() - t0, proc

    def restore_at(self, at: str, database: str | None) -> tuple[float, str]:
        code = RESTORE_AT_CHILD.format(agent=str(AGENT), database=database, user=RESTORE_USER,
                                       pwfile=str(self.rpw), config=str(self.config), at=at)
        t0 = time.monotonic()
        proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=self.env,
                              timeout=7200)
        if proc.returncode != 0:
            raise RuntimeError(f"restore --at {at}: {proc.stdout}\n{proc.stderr}")
        return time.monotonic() - t0, proc.stdout

    def start_archiver(self) -> None:
        code = ARCHIVE_CHILD.format(agent=str(AGENT), config=str(self.config))
        log = open(self.wd / "archiver.log", "ab")  # noqa: SIM115 - the child owns it
        self.archiver = subprocess.Popen([PYTHON, "-c", code], env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        status = self.backups / "archive/mysql/status.json"
        while not status.exists():
            if self.archiver.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"archiver did not start: {(self.wd / 'archiver.log').read_text()}")
            time.sleep(0.2)

    def _archiver_tree(self) -> list[psutil.Process]:
        top = psutil.Process(self.archiver.pid)
        return [top, *top.children(recursive=True)]

    def archiver_cpu_s(self) -> float:
        """CPU seconds of the archiver's host-side tree so far (reaped children included)."""
        total = 0.0
        for p in self._archiver_tree():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total

    def pause_archiver(self) -> None:
        """SIGSTOP the archiver and its host-side children (the compose client): it reads
        nothing until resumed; the tool in the container then blocks on its full pipe."""
        for p in self._archiver_tree():
            p.send_signal(signal.SIGSTOP)

    def resume_archiver(self) -> None:
        for p in reversed(self._archiver_tree()):
            p.send_signal(signal.SIGCONT)

    def archive_status(self) -> dict:
        try:
            return json.loads((self.backups / "archive/mysql/status.json").read_text())
        except (OSError, ValueError):
            return {}

    def stop_archiver(self) -> None:
        if self.archiver is not None and self.archiver.poll() is None:
            self.archiver.send_signal(signal.SIGTERM)
            self.archiver.wait(timeout=120)
        self.archiver = None

    def wait_caught_up(self, after: float, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.archive_status()
            # Caught up: nothing of the server's binlog unread, and what is read but not yet
            # published is younger than a publish interval or two (a busy writer never lets
            # `pending` reach 0 exactly).
            if st.get("updated", 0) > after and st.get("bytes_behind") == 0 \
                    and (st.get("lag_seconds") or 0) < 2.0:
                return
            time.sleep(0.5)
        raise RuntimeError(f"archiver did not catch up: {self.archive_status()}")

    def new_torrents(self, database: str) -> set[int]:
        rows = self.dep.sql("SELECT info_hash FROM torrents WHERE id > "
                            f"{self.args.rows}", database)
        return {n for n in (int(r[0], 16) for r in rows) if n >= 10**12}

    def close(self) -> None:
        self.stop_archiver()
        self.dep.remove()
        self.engine.stop()
        shutil.rmtree(self.host_dir, ignore_errors=True)


def window(writer: MysqlWriter, seconds: float) -> dict:
    before = writer.mark()
    time.sleep(seconds)
    after = writer.mark()
    win = after["windows"][-1]
    return {"w_errors": after.get("errors", 0) - before.get("errors", 0),
            "w_p50_ms": round(win["p50_ms"], 3), "w_p99_ms": round(win["p99_ms"], 3), "ops": win["ops"]}


def acks(path: Path) -> list[tuple[int, float, float]]:
    out = []
    for line in path.read_text().splitlines():
        n, b, a = line.split()
        out.append((int(n), float(b), float(a)))
    return out


def exactness(b: Bench, database: str, committed: list, t: int) -> tuple[bool, str]:
    got = b.new_torrents(database)
    must = {n for n, _b, a in committed if a < t + 1 - 0.05}
    never = {n for n, bg, _a in committed if bg >= t + 1 + 0.05}
    missing, extra = must - got, never & got
    return (not missing and not extra,
            f"{len(must)} acked before T+1 all present: {not missing} ({len(missing)} missing); "
            f"{len(never)} begun after T+1 absent: {not extra} ({len(extra)} present)")


def rpo_phase(b: Bench, args, existing: int, wd: Path, extra: dict) -> dict:
    """Disk loss while archiving: restore --at latest must hold every commit acked >= 1 s before."""
    # RPO: disk loss while archiving.
    b.agent("run", "--no-prune")
    rpo_started = time.time()
    b.start_archiver()
    rpo_acks = wd / "acks-rpo.txt"
    writer = MysqlWriter(b.dep, DATABASE, wd / "writer3.json", rate=args.rate, existing=existing,
                         acks=rpo_acks, start_new=3 * 10**12)
    try:
        # Steady state first: the two restores above loaded the whole dump into this
        # server's binlog, which the archiver streams before it reaches the writer again.
        b.wait_caught_up(time.time(), timeout=3600)
        extra["rpo_catch_up_s"] = round(time.time() - rpo_started, 1)
        time.sleep(args.rpo_seconds)
        loss = time.time()
        b.dep.compose("kill", "mysql")
    finally:
        writer.stop()
        time.sleep(1)
        b.stop_archiver()
    shutil.rmtree(b.dep.datadir)
    b.dep.datadir.mkdir()
    shutil.chown(b.dep.datadir, 999, 999)
    b.dep.up("mysql")
    b.dep.create_user(RESTORE_USER, b.rpw.read_text().strip(), ["ALL ON *.*"])
    rpo_s, _ = b.restore_at("latest", None)
    committed = acks(rpo_acks)
    got = b.new_torrents(DATABASE)
    before = {n for n, _b, a in committed if a < loss - 1.0}
    lost_total = {n for n, _b, _a in committed} - got
    lost_last = {n for n, _b, a in committed if a >= loss - 1.0} - got
    return {"phase": "RPO: data dir deleted, restore --at latest", "wall_s": round(rpo_s, 2),
            "ok": before <= got, "transactions": len(committed),
            "note": f"acked >= 1 s before the loss: {len(before)}, missing {len(before - got)}; "
                    f"lost overall {len(lost_total)} (all in the last second: "
                    f"{len(lost_last) == len(lost_total)})"}


def main() -> int:
    ap = bench_parser(__doc__, "mysql_pitr")
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--window", type=float, default=20.0, help="seconds per writer latency window")
    ap.add_argument("--hour", type=float, default=180.0, help="seconds of writes between dump and T")
    ap.add_argument("--rpo-seconds", type=float, default=10.0)
    ap.add_argument("--no-rpo", action="store_true",
                    help="skip the disk-loss phase (its catch-up after two big restores is long)")
    args = ap.parse_args()
    wd, machine = scratch(args, "mysql_pitr")
    rows: list[dict] = []
    b = Bench(args, wd)
    extra: dict = {}
    try:
        t0 = time.monotonic()
        b.dep.up()
        b.dep.setup_accounts(b.pw.read_text().strip(), torrents=args.rows)
        b.dep.create_user(RESTORE_USER, b.rpw.read_text().strip(), ["ALL ON *.*"])
        existing = min(args.rows, 100_000)
        b.dep.sql(f"UPDATE torrents SET info_hash = SHA1(id) WHERE id > {existing}", DATABASE)
        extra["fill_s"] = round(time.monotonic() - t0, 1)
        machine["mariadb"] = b.dep.value("SELECT VERSION()")
        machine["docker"] = b.engine.server_version
        ack_file = wd / "acks.txt"
        writer = MysqlWriter(b.dep, DATABASE, wd / "writer.json", rate=args.rate, existing=existing,
                             acks=ack_file)
        try:
            base1 = window(writer, args.window)
            dump_s, run = b.agent("run", "--no-prune")
            snap = run.stdout.strip().splitlines()[-1]
            manifest = json.loads((b.backups / snap / "MANIFEST.json").read_text())
            coords = manifest["sources"]["mysql"]["binlog"]
            dumped = time.time()
            b.start_archiver()
            b.wait_caught_up(time.time(), timeout=600)
            # The hour: windows with the archiver running and paused (SIGSTOP of its whole
            # process tree; it resumes where it was), alternating, so slow changes in the
            # host's load fall on both sides alike.
            pairs = []
            cpu0, wall0 = b.archiver_cpu_s(), time.monotonic()
            while time.time() + 2 * args.window < dumped + args.hour:
                on = window(writer, args.window)
                b.pause_archiver()
                try:
                    off = window(writer, args.window)
                finally:
                    b.resume_archiver()
                pairs.append((on, off))
            # Busy half of the time (paused the other half): its share of one core while running.
            extra["archiver_core_share"] = round(
                2 * (b.archiver_cpu_s() - cpu0) / max(1.0, time.monotonic() - wall0), 3)
            t = math.floor(dumped + args.hour)
            while time.time() < t + 3:
                time.sleep(0.2)
        finally:
            wstats = writer.stop()
        b.wait_caught_up(time.time())
        b.stop_archiver()
        # Without the archiver again (same data size as at the end).
        writer = MysqlWriter(b.dep, DATABASE, wd / "writer2.json", rate=args.rate, existing=existing,
                             start_new=2 * 10**12)
        try:
            base2 = window(writer, args.window)
        finally:
            writer.stop()
        committed = acks(ack_file)
        ratios = sorted(on["w_p99_ms"] / off["w_p99_ms"] for on, off in pairs if off["w_p99_ms"])
        p99_ratio = statistics.median(ratios) if ratios else None
        extra["p99_pairs"] = [(on["w_p99_ms"], off["w_p99_ms"], on["ops"], off["ops"])
                              for on, off in pairs]
        for name, w in (("writer, before the dump (no archiver)", base1),
                        ("writer, after the hour (no archiver)", base2)):
            rows.append({"phase": name, "wall_s": args.window, "w_errors": w["w_errors"],
                         "w_p50_ms": w["w_p50_ms"], "w_p99_ms": w["w_p99_ms"], "transactions": w["ops"],
                         "x_anchor": 1.0, "ok": w["w_errors"] == 0, "note": "context"})
        for name, side in (("writer, archiver paused (anchor)", 1), ("writer, archiver running", 0)):
            ws = [pair[side] for pair in pairs]
            rows.append({
                "phase": f"{name}: median of {len(ws)} windows", "wall_s": args.window * len(ws),
                "w_errors": sum(w["w_errors"] for w in ws),
                "w_p50_ms": round(statistics.median(w["w_p50_ms"] for w in ws), 3) if ws else None,
                "w_p99_ms": round(statistics.median(w["w_p99_ms"] for w in ws), 3) if ws else None,
                "transactions": sum(w["ops"] for w in ws),
                "x_anchor": 1.0 if side else (round(p99_ratio, 2) if p99_ratio else None),
                "ok": all(w["w_errors"] == 0 for w in ws),
                "note": "anchor: the paused window right after each running one" if side else
                        f"x = median of the {len(ratios)} per-pair p99 ratios "
                        f"(quartiles {ratios[len(ratios) // 4]:.2f}..{ratios[3 * len(ratios) // 4]:.2f})"
                        if ratios else "no pairs"})
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

        # Anchor: the plain tools, same dump, same binlog range, same stop.
        b.dep.sql("CREATE DATABASE pitr_plain")
        dump = b.backups / snap / "mysql" / f"{DATABASE}.sql.zst"
        compose = f"docker compose -f {b.dep.compose_file} exec -T mysql"
        t1 = time.monotonic()
        subprocess.run(["bash", "-o", "pipefail", "-c", f"zstd -dc {dump} | {compose} mariadb pitr_plain"],
                       check=True, env=b.env)
        plain_load = time.monotonic() - t1
        files = sorted(r[0] for r in b.dep.sql("SHOW BINARY LOGS"))
        files = files[files.index(coords["file"]):]
        stop = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t + 1))
        t1 = time.monotonic()
        subprocess.run(["bash", "-o", "pipefail", "-c",
                        f"{compose} sh -c 'cd /var/lib/mysql && TZ=UTC mariadb-binlog "
                        f"--database={DATABASE} --rewrite-db=\"{DATABASE}->pitr_plain\" "
                        f"--start-position={coords['position']} --stop-datetime=\"{stop}\" "
                        f"{' '.join(files)} | mariadb --binary-mode pitr_plain'"],
                       check=True, env=b.env)
        plain_replay = time.monotonic() - t1
        plain = plain_load + plain_replay
        ok_plain, note_plain = exactness(b, "pitr_plain", committed, t)
        rows.append({"phase": "dump load + mariadb-binlog|mariadb (anchor)", "wall_s": round(plain, 2),
                     "x_anchor": 1.0, "ok": ok_plain,
                     "note": f"load {plain_load:.1f} s + replay {plain_replay:.1f} s; {note_plain}"})
        agent_s, out = b.restore_at(at, "pitr_agent")
        ok_agent, note_agent = exactness(b, "pitr_agent", committed, t)
        same = (b.dep.sql("CHECKSUM TABLE torrents, torrent_aggregate_metrics", "pitr_agent")[0][1:]
                == b.dep.sql("CHECKSUM TABLE torrents, torrent_aggregate_metrics", "pitr_plain")[0][1:])
        total, metric = b.dep.invariant("pitr_agent")
        txn = sum(1 for _n, _b, a in committed if a < t + 1)
        rows.append({"phase": f"restore --at T (agent, T = dump + {args.hour:g} s)",
                     "wall_s": round(agent_s, 2), "x_anchor": round(agent_s / plain, 2),
                     "transactions": txn, "ok": ok_agent and same and total == metric,
                     "note": f"{note_agent}; same rows as the anchor: {same}"})
        extra["restore_output"] = out[-3000:]
        b.dep.sql("DROP DATABASE pitr_plain; DROP DATABASE pitr_agent")

        extra.update({"p99_ratio": round(p99_ratio, 2) if p99_ratio else None,
                      "restore_ratio": round(agent_s / plain, 2), "writer_errors": wstats.get("errors"),
                      "T": at, "dump_s": round(dump_s, 2), "rows": args.rows,
                      "writer_tx_per_s": round(txn / max(1.0, t - dumped), 1)})
        if not args.no_rpo:
            rows.append(rpo_phase(b, args, existing, wd, extra))
    finally:
        b.close()
        shutil.rmtree(wd, ignore_errors=True)
    summary = (f"writer p99 with the archiver {extra.get('p99_ratio')}x without (target <= 1.2); "
               f"restore --at T {extra.get('restore_ratio')}x dump load + plain binlog replay "
               f"(target <= 1.5); PITR exact: {all(r['ok'] for r in rows if 'restore' in r['phase'])}; "
               f"RPO: {rows[-1]['note'] if rows and 'RPO' in rows[-1]['phase'] else 'not run'}")
    return finish("mysql_pitr", args, machine, COLUMNS, rows, summary, extra=extra)


if __name__ == "__main__":
    raise SystemExit(main())
