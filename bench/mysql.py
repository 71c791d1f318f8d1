#!/usr/bin/python3
"""MySQL/MariaDB: the agent versus `mysqldump --single-transaction --quick | gzip` (and mydumper).

    /usr/bin/python3 bench/mysql.py --rows 2000000 --rate 500

A private MariaDB server (tests/support/mariadb.py: own datadir, unix socket
only, binlog on) with the tracker's schema and --rows torrents; all but the
first 100,000 (which the writer updates) get SHA-1 info-hashes like real ones. One tracker-
style writer (tests/support/mysql_writer.py) runs through the whole benchmark;
each method gets its own latency window (SIGUSR1), and an idle window comes
first as the baseline. Methods, same data, same run:
  mysqldump | gzip   the anchor: `mysqldump --single-transaction --quick DB | gzip -6`;
  mysqldump | zstd   the same dump through `zstd -T0`;
  mydumper           `mydumper --trx-consistency-only --compress` if installed;
  agent zstd / none  `python3 -m tracker_backup run` with a [mysql] source (verify = dump).
For each: wall time, ratio to the anchor, bytes stored, writer errors and p50/p99/max.
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
    ROOT,
    bench_parser,
    finish,
    latest_snapshot,
    run_agent,
    scratch,
    tree_bytes,
)

sys.path.insert(0, str(ROOT / "tests"))
from support.mariadb import MariaDB  # noqa: E402

DB = "torrust_tracker"
COLUMNS = ["method", "wall_s", "x_anchor", "stored_mb", "ok", "maxrss_mb", "w_errors", "w_p50_ms",
           "w_p99_ms", "w_max_ms", "p99_x_idle", "w_ops"]


def shell_pipeline(cmd: str, wd: Path) -> tuple[float, bool, str]:
    t0 = time.monotonic()
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True,
                          cwd=wd)
    return time.monotonic() - t0, proc.returncode == 0, proc.stderr.strip()[-300:]


def window(writer, method: str, fn) -> dict:
    """Run fn() in a fresh writer latency window; merge the window's stats into its row."""
    before = writer.mark()
    row = fn()
    after = writer.mark()
    win = after["windows"][-1] if after.get("windows") else {}
    errors = after.get("errors", 0) - before.get("errors", 0)
    row.update({"method": method, "w_errors": errors, "w_ops": win.get("ops"),
                "w_p50_ms": round(win.get("p50_ms", 0), 3),
                "w_p99_ms": round(win.get("p99_ms", 0), 3),
                "w_max_ms": round(win.get("max_ms", 0), 1)})
    return row


def main() -> int:
    ap = bench_parser(__doc__, "mysql")
    ap.add_argument("--rows", type=int, default=2_000_000, help="torrents rows")
    ap.add_argument("--rate", type=float, default=500.0, help="writer transactions per second")
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    ap.add_argument("--sequential-hashes", dest="random_hashes", action="store_false",
                    help="keep create_tracker_db's sequential info-hashes (default: SHA-1 like)")
    args = ap.parse_args()
    wd, machine = scratch(args, "mysql")
    server = MariaDB.start()
    rows: list[dict] = []
    try:
        t0 = time.monotonic()
        server.create_tracker_db(DB, rows=args.rows)
        existing = min(args.rows, 100_000)  # the writer's upserts hit these (sequential hashes)
        if args.random_hashes:
            # Real info-hashes are SHA-1s: scattered in the index and barely compressible,
            # unlike the sequential ones, which compress ~9x and flatter every tool.
            server.sql(f"UPDATE torrents SET info_hash = SHA1(id) WHERE id > {existing}", DB)
        server.sql("ANALYZE TABLE torrents", DB)
        fill_s = time.monotonic() - t0
        data_mb = float(server.value(
            "SELECT SUM(data_length + index_length) / 1e6 FROM information_schema.tables "
            f"WHERE table_schema = '{DB}'"))
        machine["mariadb"] = server.value("SELECT VERSION()")
        sock = server.socket
        writer = server.start_writer(DB, wd / "writer.json", rate=args.rate, existing=existing)

        def idle() -> dict:
            time.sleep(args.idle_seconds)
            return {}

        def pipeline(cmd: str, out: Path):
            def fn() -> dict:
                secs, ok, err = shell_pipeline(cmd, wd)
                stored = tree_bytes(out) if out.is_dir() else out.stat().st_size
                row = {"wall_s": round(secs, 3), "ok": ok, "stored_bytes": stored,
                       "stored_mb": round(stored / MB, 2)}
                if not ok:
                    row["error"] = err
                return row
            return fn

        def agent(compression: str):
            def fn() -> dict:
                backups = wd / f"backups-{compression}"
                config = wd / f"agent-{compression}.conf"
                config.write_text(f"[backup]\npath = {backups}\ncompression = {compression}\n"
                                  f"[retention]\nkeep_days = 0\nkeep_last = 1\n"
                                  f"[mysql]\ndatabase = {DB}\nsocket = {sock}\n")
                res = run_agent(config)
                row = {"wall_s": res["wall_s"], "ok": res["rc"] == 0, "maxrss_mb": res["maxrss_mb"],
                       "tree_pss_mb": res["tree_pss_mb"]}
                snap = latest_snapshot(backups) if backups.exists() else None
                if res["rc"] == 0 and snap:
                    snap_dir, manifest = snap
                    art = next(a for a in manifest["artifacts"] if a["source"] == "mysql")
                    row["stored_bytes"] = art["bytes"]
                    row["stored_mb"] = round(art["bytes"] / MB, 2)
                    row["dump_mb"] = round(art["raw_bytes"] / MB, 2)
                    row["rows_in_dump"] = manifest["sources"]["mysql"]["row_counts"].get("torrents")
                else:
                    row["error"] = res["stderr"][-500:]
                shutil.rmtree(backups, ignore_errors=True)
                return row
            return fn

        dump = f"mysqldump --no-defaults --socket={sock} --single-transaction --quick {DB}"
        rows.append(window(writer, "idle writer", idle))
        rows.append(window(writer, "mysqldump | gzip -6",
                           pipeline(f"{dump} | gzip -6 > dump.sql.gz", wd / "dump.sql.gz")))
        rows.append(window(writer, "mysqldump | zstd -T0",
                           pipeline(f"{dump} | zstd -q -T0 -3 > dump.sql.zst", wd / "dump.sql.zst")))
        if shutil.which("mydumper"):
            rows.append(window(writer, "mydumper -t 2 -c", pipeline(
                f"mydumper --socket={sock} --user=root --database={DB} --outputdir=mydumper "
                "--threads=2 --compress --trx-consistency-only --rows=500000", wd / "mydumper")))
        rows.append(window(writer, "agent zstd", agent("zstd")))
        rows.append(window(writer, "agent none", agent("none")))
        final = writer.stop()
    finally:
        server.stop()
        shutil.rmtree(wd, ignore_errors=True)
    anchor = rows[1]["wall_s"]
    idle_p99 = rows[0]["w_p99_ms"]
    for r in rows[1:]:
        r["x_anchor"] = round(r["wall_s"] / anchor, 2)
        r["p99_x_idle"] = round(r["w_p99_ms"] / idle_p99, 2) if idle_p99 else None
    by = {r["method"]: r for r in rows}
    gz_bytes = by["mysqldump | gzip -6"]["stored_bytes"]
    bits = [f"{args.rows:,} rows ({data_mb:.1f} MB InnoDB data+index)"]
    for m in ("agent zstd", "agent none", "mysqldump | zstd -T0", "mydumper -t 2 -c"):
        if m in by:
            bits.append(f"{m} {by[m]['x_anchor']:.2f}x mysqldump|gzip time, "
                        f"{by[m].get('stored_bytes', 0) / gz_bytes:.2f}x size")
    bits.append(f"writer errors {sum(r['w_errors'] for r in rows)}, worst p99 "
                f"{max(r.get('p99_x_idle') or 0 for r in rows[1:]):.2f}x idle")
    summary = "; ".join(bits)
    writer_final = {k: final.get(k) for k in ("ops", "errors", "last_error")}
    return finish("mysql", args, machine, COLUMNS, rows, summary,
                  extra={"data_mb": data_mb, "fill_seconds": round(fill_s, 1),
                         "writer_final": writer_final})


if __name__ == "__main__":
    raise SystemExit(main())
