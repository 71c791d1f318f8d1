#!/usr/bin/python3
"""Compression of a tracker database copy: python3-zstandard levels/threads vs gzip and zstd CLIs.

    /usr/bin/python3 bench/compression.py --size 1G --levels 1,3,6,9 --threads 0,2

All methods compress the same file (a copy of the generated tracker database,
read once first so every method reads it from the page cache: this measures
compression, not the disk). Output is counted, not stored. Anchors: `zstd -T0`
(default level 3) and `gzip -6` CLIs. The agent uses level 3 (compression_level)
and threads=2 (artifacts.store_file); that row is marked "agent". Each python
run is its own interpreter, so its peak RSS (maxrss_mb) is the compressor's
memory plus the interpreter's (~10 MB).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import MB, bench_parser, finish, fresh_copy, parse_list, scratch  # noqa: E402
from dbgen import parse_size, size_label  # noqa: E402

COLUMNS = ["method", "level", "threads", "seconds", "mb_per_s", "ratio", "out_mb", "x_zstd_cli_speed",
           "maxrss_mb"]
AGENT_LEVEL, AGENT_THREADS = 3, 2


class _Counter:
    """A write-only sink that only counts bytes."""

    def __init__(self) -> None:
        self.count = 0

    def write(self, data) -> int:
        self.count += len(data)
        return len(data)


def py_zstd(path: Path, level: int, threads: int) -> tuple[float, int]:
    import zstandard

    cctx = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
    sink = _Counter()
    t0 = time.monotonic()
    # stream_writer fed 1 MiB chunks: what artifacts.ArtifactWriter does
    with open(path, "rb") as fh, cctx.stream_writer(sink, closefd=False) as writer:
        while chunk := fh.read(1 << 20):
            writer.write(chunk)
    return time.monotonic() - t0, sink.count


def py_zstd_child(path: Path, level: int, threads: int) -> tuple[float, int, float]:
    """py_zstd in a fresh interpreter: (seconds, bytes out, that process's peak RSS in MB)."""
    proc = subprocess.run([sys.executable, __file__, "--one", str(path), str(level), str(threads)],
                          capture_output=True, text=True, check=True)
    res = json.loads(proc.stdout)
    return res["seconds"], res["out"], res["maxrss_mb"]


def cli(path: Path, argv: list[str]) -> tuple[float, int]:
    t0 = time.monotonic()
    with open(path, "rb") as fh:
        proc = subprocess.Popen(argv, stdin=fh, stdout=subprocess.PIPE)
        count = 0
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            count += len(chunk)
        if proc.wait() != 0:
            raise RuntimeError(f"{argv} exited {proc.returncode}")
    return time.monotonic() - t0, count


def warm(path: Path) -> None:
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--one":  # child mode of py_zstd_child
        secs, out = py_zstd(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"seconds": secs, "out": out, "maxrss_mb": round(maxrss, 1)}))
        return 0
    ap = bench_parser(__doc__, "compression")
    ap.add_argument("--size", default="1G")
    ap.add_argument("--levels", default="1,3,6,9")
    ap.add_argument("--threads", default="0,2", help="python3-zstandard threads (0 = in-thread)")
    args = ap.parse_args()
    size = parse_size(args.size)
    wd, machine = scratch(args, "compression")
    rows = []
    try:
        src = fresh_copy(size, wd / "tracker.db")
        raw = src.stat().st_size
        warm(src)
        runs = [("zstd CLI", 3, os.cpu_count(), ["zstd", "-T0", "-3", "-q", "-c"]),
                ("gzip CLI", 6, 1, ["gzip", "-6", "-c"])]
        for label, level, threads, argv in runs:
            if shutil.which(argv[0]) is None:
                continue
            secs, out = cli(src, argv)
            rows.append({"method": label, "level": level, "threads": threads, "seconds": secs,
                         "out": out})
        for level in parse_list(args.levels, int):
            for threads in parse_list(args.threads, int):
                secs, out, maxrss = py_zstd_child(src, level, threads)
                agent = level == AGENT_LEVEL and threads == AGENT_THREADS
                rows.append({"method": "python zstd" + (" (agent)" if agent else ""),
                             "level": level, "threads": threads, "seconds": secs, "out": out,
                             "maxrss_mb": maxrss})
    finally:
        shutil.rmtree(wd, ignore_errors=True)
    anchor = next((r for r in rows if r["method"] == "zstd CLI"), rows[0])
    for r in rows:
        r["seconds"] = round(r["seconds"], 3)
        r["mb_per_s"] = round(raw / MB / r["seconds"], 1)
        r["ratio"] = round(raw / r["out"], 3)
        r["out_mb"] = round(r["out"] / MB, 1)
        r["x_zstd_cli_speed"] = round(r["mb_per_s"] / (raw / MB / anchor["seconds"]), 2)
    agent = next((r for r in rows if r["method"].endswith("(agent)")), None)
    gz = next((r for r in rows if r["method"] == "gzip CLI"), None)
    summary = f"{size_label(size)} copy: zstd -T0 {anchor['mb_per_s']:.0f} MB/s ratio {anchor['ratio']:.2f}"
    if gz:
        summary += f"; gzip -6 {gz['mb_per_s']:.0f} MB/s ratio {gz['ratio']:.2f}"
    if agent:
        summary += (f"; agent setting (level 3, 2 threads) {agent['mb_per_s']:.0f} MB/s = "
                    f"{agent['x_zstd_cli_speed']:.2f}x zstd CLI speed, ratio {agent['ratio']:.2f}")
        if gz:
            summary += f", {agent['mb_per_s'] / gz['mb_per_s']:.1f}x gzip speed"
    return finish("compression", args, machine, COLUMNS, rows, summary, extra={"raw_bytes": raw})


if __name__ == "__main__":
    raise SystemExit(main())
