"""Shared pieces of the benchmarks: machine facts, writer, agent runs, checks, output.

Every benchmark measures its anchor in the same run on the same data and
reports ratios: the machines here are shared and noisy, absolute times are not
comparable between runs, ratios mostly are.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "agent"
RESULTS = ROOT / "bench" / "results"
CACHE = Path(os.environ.get("TB_BENCH_CACHE", "/var/tmp/tracker-backup-bench/cache"))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dbgen import make_db, size_label  # noqa: E402

from support.agent_env import agent_env  # noqa: E402, F401 - the benchmarks import it from here
from support.tracker_db import invariant  # noqa: E402
from support.writer_process import WriterProcess  # noqa: E402

MB = 1_000_000


# -- machine -----------------------------------------------------------------
def _first_line(cmd: Sequence[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
        return out.strip().splitlines()[0] if out.strip() else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(path: Path) -> dict:
    """What the numbers were measured on: CPU, memory, disk, kernel, versions."""
    cpu = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    usage = shutil.disk_usage(path)
    src = _first_line(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", str(path)])
    try:
        import zstandard
        zstd_py = zstandard.__version__
    except ImportError:
        zstd_py = None
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "disk": f"{src} ({usage.total / 1e9:.0f} GB, {usage.free / 1e9:.0f} GB free)",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite_lib": sqlite3.sqlite_version,
        "sqlite_cli": _first_line(["sqlite3", "--version"]).split(" ")[0],
        "zstandard": zstd_py,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


# -- command line --------------------------------------------------------------
def bench_parser(doc: str | None, name: str) -> argparse.ArgumentParser:
    """A benchmark's command line, described by its docstring's first paragraph, with the
    options every benchmark has: --workdir, --out and --name (default `name`)."""
    ap = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    ap.add_argument("--workdir", help="scratch parent directory (default /var/tmp)")
    ap.add_argument("--out", help="results directory (default bench/results)")
    ap.add_argument("--name", default=name, help=f"results file name (default {name})")
    return ap


def scratch(args: argparse.Namespace, label: str) -> tuple[Path, dict]:
    """The run's private scratch directory (under --workdir) and the machine facts measured there."""
    wd = workdir(args.workdir, label)
    return wd, machine_info(wd)


# -- files -------------------------------------------------------------------
def drop_cache(path: Path) -> None:
    """Evict one file from the page cache (fsync first: only clean pages go).

    Per file, not `drop_caches`: other engineers' tests share this machine.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def db_files_size(db: Path) -> int:
    """Bytes of a database including its -wal."""
    total = db.stat().st_size
    wal = Path(f"{db}-wal")
    if wal.exists():
        total += wal.stat().st_size
    return total


def cached_db(size: int, *, wal: bool = True) -> Path:
    """A generated tracker database of `size` bytes, made once and reused across runs."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"tracker-{size_label(size)}-{'wal' if wal else 'rollback'}.db"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.tmp")
        if wal:
            make_db(tmp, size, wal=True)
        else:
            shutil.copyfile(cached_db(size, wal=True), tmp)
            conn = sqlite3.connect(tmp, isolation_level=None)
            conn.execute("PRAGMA journal_mode=DELETE")
            conn.close()
        os.replace(tmp, path)
    return path


def fresh_copy(size: int, dest: Path, *, wal: bool = True) -> Path:
    """Copy the cached database of `size` to `dest` (the benchmark's own live DB)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{dest}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(cached_db(size, wal=wal), dest)
    return dest


def workdir(base: str | None, name: str) -> Path:
    """A private scratch directory under /var/tmp (plenty of space there)."""
    root = Path(base or "/var/tmp")
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"tb-bench-{name}-", dir=root))


# -- checks ------------------------------------------------------------------
def check_copy(path: Path, level: str = "integrity_check") -> dict:
    """Consistency of a database copy: PRAGMA check and the tracker invariant."""
    t0 = time.monotonic()
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            rows = [r[0] for r in conn.execute(f"PRAGMA {level}")]
            total, metric = invariant(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return {"ok": False, "integrity": f"unreadable: {exc}", "invariant": False,
                "check_s": round(time.monotonic() - t0, 3)}
    return {"ok": rows == ["ok"] and total == metric,
            "integrity": "ok" if rows == ["ok"] else "; ".join(rows[:3]),
            "invariant": total == metric, "completed_sum": total, "metric": metric,
            "check_s": round(time.monotonic() - t0, 3)}


def decompress(src: Path, dest: Path) -> Path:
    """zstd-decompress an artifact with python3-zstandard (streaming)."""
    import zstandard

    with open(src, "rb") as fin, open(dest, "wb") as fout:
        zstandard.ZstdDecompressor().copy_stream(fin, fout)
    return dest


# -- the writer --------------------------------------------------------------
class Writer(WriterProcess):
    """tests/support/tracker_writer.py at a fixed rate; stats (with the achieved rate) on stop()."""

    def __init__(self, db: Path, stats: Path, rate: float, existing: int = 10_000,
                 busy_timeout: float = 5.0):
        super().__init__(db, stats, rate, existing, python=PYTHON, stop_timeout=30,
                         extra=["--busy-timeout", str(busy_timeout)])

    def stop(self) -> dict:
        """Stop the writer; return its stats plus the achieved rate."""
        st = super().stop()
        elapsed = time.monotonic() - self.started
        st["achieved_rate"] = round(st.get("ops", 0) / elapsed, 1) if elapsed else 0.0
        return st


def writer_fields(st: dict | None) -> dict:
    """The writer columns of a result row."""
    if not st:
        return {"w_errors": None, "w_p50_ms": None, "w_p99_ms": None, "w_max_ms": None,
                "w_rate": None}
    return {"w_errors": st.get("errors"), "w_p50_ms": round(st.get("p50_ms", 0), 3),
            "w_p99_ms": round(st.get("p99_ms", 0), 3), "w_max_ms": round(st.get("max_ms", 0), 1),
            "w_rate": st.get("achieved_rate")}


# -- the agent ---------------------------------------------------------------
def write_agent_config(path: Path, backups: Path, db: Path, *, compression: str = "none",
                       rate_limit: float = 0, verify: str = "full", max_lock: str = "2s",
                       keep_last: int = 3, extra: str = "") -> Path:
    """A config backing up only the SQLite database (prune keeps keep_last)."""
    path.write_text(f"""[backup]
path = {backups}
compression = {compression}
verify = {verify}
rate_limit = {rate_limit:g}
[retention]
keep_days = 0
keep_last = {keep_last}
[sqlite]
database = {db}
max_lock = {max_lock}
{extra}""")
    return path


def run_agent(config: Path, *args: str, poll: float = 0.05, timeout: float = 3600) -> dict:
    """`python3 -m tracker_backup run`: wall time, exit code, peak RSS of the process tree.

    Memory: the kernel's ru_maxrss of the agent (exact high-water mark of its
    RSS; covers its waited-for children too, as a max, not a sum), and the peak
    of the PSS summed over the agent and all its children, sampled every
    `poll` seconds.
    """
    import psutil

    cmd = [PYTHON, "-m", "tracker_backup", "--config", str(config), "run", *args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=agent_env())
        ps = psutil.Process(proc.pid)
        peak = 0
        while True:
            # wait4, not poll(): it also returns the child's own ru_maxrss
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            # PSS, not RSS: a child just forked shares the agent's pages, and
            # summing RSS would count them twice.
            total = 0
            with contextlib.suppress(psutil.Error):
                for p in [ps, *ps.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_full_info().pss
            peak = max(peak, total)
            if time.monotonic() - t0 > timeout:
                proc.kill()
            time.sleep(poll)
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    return {"rc": proc.returncode, "wall_s": round(wall, 3), "tree_pss_mb": round(peak / MB, 1),
            "maxrss_mb": round(usage.ru_maxrss * 1024 / MB, 1),
            "stdout": stdout.decode(errors="replace"),
            "stderr": stderr.decode(errors="replace")[-2000:]}


def latest_snapshot(backups: Path) -> tuple[Path, dict] | None:
    """(dir, manifest) of the newest published snapshot, or None."""
    snaps = sorted(p for p in backups.iterdir() if p.is_dir() and p.name[:1].isdigit())
    if not snaps:
        return None
    return snaps[-1], json.loads((snaps[-1] / "MANIFEST.json").read_text())


def tree_bytes(path: Path) -> int:
    """Bytes allocated on disk under `path` (du semantics: blocks, not apparent size)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


# -- output ------------------------------------------------------------------
def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def table(rows: list[dict], columns: list[str]) -> str:
    """A plain-text table (also valid Markdown) of `columns` of `rows`."""
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
              for i, c in enumerate(columns)]
    line = "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |"
            for row in cells]
    return "\n".join([line, sep, *body])


def save(name: str, data: dict, out_dir: str | None) -> Path:
    """Write bench/results/NAME.json (or OUT_DIR/NAME.json); return its path."""
    out = Path(out_dir) if out_dir else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    data.setdefault("machine", {})["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    path = out / f"{name}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def finish(benchmark: str, args, machine: dict, columns: list[str], rows: list[dict],
           summary: str, *, extra: dict | None = None, blank_line: bool = False) -> int:
    """Save bench/results/NAME.json, print the table, the summary line and the file's path."""
    data = {"benchmark": benchmark, "args": vars(args), "machine": machine, **(extra or {}),
            "columns": columns, "rows": rows, "summary": summary}
    path = save(args.name, data, args.out)
    if blank_line:
        print()
    print(table(rows, columns))
    print(f"summary: {summary}")
    print(f"results: {path}")
    return 0


def parse_list(text: str, conv=str) -> list:
    """'a,b,c' → [conv(a), conv(b), conv(c)]."""
    return [conv(x) for x in text.split(",") if x.strip()]
