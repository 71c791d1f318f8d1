#!/usr/bin/python3
"""Render the latest results (bench/results/*.json) as Markdown for docs/benchmarks.md.

    /usr/bin/python3 bench/report.py [--results DIR] [NAME ...]

Prints, per result file: the machine line, the table and the summary, exactly
as measured, so the document's numbers are copied from real runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, table  # noqa: E402

# Extra tables some benchmarks keep beside their rows: (key, columns).
EXTRA = {"storage_growth": ("summaries", ["compression", "days", "one_mb", "total_mb", "x_one",
                                          "dedup_4k_x_one", "dedup_64k_x_one"])}


def render(path: Path) -> str:
    """One result file as Markdown."""
    data = json.loads(path.read_text())
    m = data["machine"]
    out = [f"### {path.stem}", "",
           f"Run {m['date']}, load average {m.get('loadavg_start')} → {m.get('loadavg_end')}; "
           f"arguments: `{' '.join(f'--{k.replace(chr(95), chr(45))} {v}' for k, v in data['args'].items() if v is not None and k not in ('out', 'workdir'))}`",  # noqa: E501
           "", table(data["rows"], data["columns"]), ""]
    name = data["benchmark"]
    if name in EXTRA and EXTRA[name][0] in data:
        key, cols = EXTRA[name]
        out += [table(data[key], cols), ""]
    out += [f"Summary: {data['summary']}", ""]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("names", nargs="*", help="result names (default: all)")
    args = ap.parse_args()
    files = ([args.results / f"{n}.json" for n in args.names] if args.names
             else sorted(args.results.glob("*.json")))
    if not files:
        print(f"report: no results in {args.results}", file=sys.stderr)
        return 1
    m = json.loads(files[0].read_text())["machine"]
    print(f"Machine: {m['nproc']} vCPU {m['cpu']}, {m['memory_gb']} GB RAM, disk {m['disk']}, "
          f"kernel {m['kernel']}, Python {m['python']}, SQLite {m['sqlite_lib']} "
          f"(CLI {m['sqlite_cli']}), python3-zstandard {m['zstandard']}\n")
    for f in files:
        print(render(f))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
