#!/usr/bin/python3
"""Verification cost: PRAGMA integrity_check versus quick_check, seconds per GB.

    /usr/bin/python3 bench/verify_cost.py --sizes 256M,1G

On a copy of the tracker database, each check runs twice: cold (the file
evicted from the page cache first) and warm. The anchor is reading the whole
file (cold) in the same run: the checks are shown as multiples of that read.
The agent runs integrity_check for verify = full (the default), quick_check
for verify = quick.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    bench_parser,
    drop_cache,
    finish,
    fresh_copy,
    parse_list,
    scratch,
)
from dbgen import parse_size, size_label  # noqa: E402

COLUMNS = ["size", "check", "cache", "seconds", "s_per_gb", "x_read", "result"]
GB = 1_000_000_000


def read_all(path: Path) -> float:
    t0 = time.monotonic()
    with open(path, "rb", buffering=0) as fh:
        while fh.read(1 << 22):
            pass
    return time.monotonic() - t0


def pragma(path: Path, name: str) -> tuple[float, str]:
    t0 = time.monotonic()
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        rows = [r[0] for r in conn.execute(f"PRAGMA {name}")]
    finally:
        conn.close()
    return time.monotonic() - t0, "ok" if rows == ["ok"] else "; ".join(rows[:3])


def main() -> int:
    ap = bench_parser(__doc__, "verify_cost")
    ap.add_argument("--sizes", default="256M,1G")
    args = ap.parse_args()
    wd, machine = scratch(args, "verify")
    rows = []
    try:
        for size in parse_list(args.sizes, parse_size):
            db = fresh_copy(size, wd / "copy.db")
            nbytes = db.stat().st_size
            drop_cache(db)
            read_s = read_all(db)
            rows.append({"size": size_label(size), "check": "read (anchor)", "cache": "cold",
                         "seconds": read_s, "result": "-"})
            for check in ("quick_check", "integrity_check"):
                for cache in ("cold", "warm"):
                    if cache == "cold":
                        drop_cache(db)
                    secs, result = pragma(db, check)
                    rows.append({"size": size_label(size), "check": check, "cache": cache,
                                 "seconds": secs, "result": result})
            for r in rows:
                if r["size"] == size_label(size):
                    r["seconds"] = round(r["seconds"], 3)
                    r["s_per_gb"] = round(r["seconds"] / (nbytes / GB), 2)
                    r["x_read"] = round(r["seconds"] / read_s, 1) if read_s else None
            db.unlink()
    finally:
        shutil.rmtree(wd, ignore_errors=True)
    parts = []
    for label in dict.fromkeys(r["size"] for r in rows):
        g = {(r["check"], r["cache"]): r for r in rows if r["size"] == label}
        ic, qc = g[("integrity_check", "cold")], g[("quick_check", "cold")]
        parts.append(f"{label}: integrity_check {ic['s_per_gb']:.1f} s/GB, quick_check "
                     f"{qc['s_per_gb']:.1f} s/GB cold ({ic['seconds'] / qc['seconds']:.1f}x; "
                     f"{ic['x_read']:.0f}x / {qc['x_read']:.0f}x a plain read)")
    summary = "; ".join(parts)
    return finish("verify_cost", args, machine, COLUMNS, rows, summary)


if __name__ == "__main__":
    raise SystemExit(main())
