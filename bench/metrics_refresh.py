#!/usr/bin/python3
"""Cost of one metrics refresh (collect, render, atomic textfile write) as the store grows.

    /usr/bin/python3 bench/metrics_refresh.py --snapshots 10,100,1000

The continuous archiver refreshes the textfile every few seconds, and every run,
prune, verify and drill once: this shows what that costs. A real agent run makes
the first snapshot of a small tracker database; its directory is then copied
under new ids (manifest id and sequence rewritten) to reach each count. The
anchor, measured in the same run on the same store, is `Store.snapshots()`:
the listing every `list` and `status` does. Each figure is the median of
--repeat calls.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    AGENT,
    bench_parser,
    finish,
    fresh_copy,
    parse_list,
    run_agent,
    scratch,
    write_agent_config,
)
from dbgen import parse_size  # noqa: E402

sys.path.insert(0, str(AGENT))

from tracker_backup import metrics  # noqa: E402
from tracker_backup.config import load_config  # noqa: E402
from tracker_backup.store import Store  # noqa: E402

COLUMNS = ["snapshots", "listing_ms", "render_ms", "refresh_ms", "x_listing", "textfile_bytes"]


def grow(backups: Path, count: int) -> None:
    """Copy the newest snapshot under older ids (n hours before it) until there are `count`."""
    snaps = [p for p in backups.iterdir() if p.is_dir() and not p.name.startswith(".")]
    model = max(snaps, key=lambda p: json.loads((p / "MANIFEST.json").read_text())["sequence"])
    manifest = json.loads((model / "MANIFEST.json").read_text())
    sequence = manifest["sequence"]
    newest = datetime.strptime(manifest["started"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    for n in range(len(snaps), count):
        when = newest - timedelta(hours=n)
        snap_id = when.strftime("%Y%m%dT%H%M%SZ")
        shutil.copytree(model, backups / snap_id)
        manifest.update(id=snap_id, sequence=sequence - n,
                        started=when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        (backups / snap_id / "MANIFEST.json").write_text(json.dumps(manifest))


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1000, 2)


def main() -> int:
    ap = bench_parser(__doc__, "metrics_refresh")
    ap.add_argument("--snapshots", default="10,100,1000")
    ap.add_argument("--size", default="2M", help="size of the tracker database")
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    wd, machine = scratch(args, "metrics")
    rows = []
    try:
        db = fresh_copy(parse_size(args.size), wd / "tracker.db")
        backups, textfile = wd / "backups", wd / "node-exporter" / "tracker-backup.prom"
        textfile.parent.mkdir()
        conf = write_agent_config(wd / "tb.conf", backups, db, keep_last=100000,
                                  extra=f"[metrics]\ntextfile = {textfile}\n")
        result = run_agent(conf)
        if result["rc"] != 0:
            raise SystemExit(f"agent run failed: {result['stderr']}")
        config = load_config(conf)
        exporter = metrics.Exporter(config)
        store = Store(backups)
        for count in parse_list(args.snapshots, int):
            grow(backups, count)
            assert len(store.snapshots()) == count
            listing = median_ms(store.snapshots, args.repeat)
            render = median_ms(exporter.text, args.repeat)
            refresh = median_ms(lambda: metrics.refresh(config, exporter=exporter), args.repeat)
            rows.append({"snapshots": count, "listing_ms": listing, "render_ms": render,
                         "refresh_ms": refresh, "x_listing": round(refresh / listing, 2),
                         "textfile_bytes": textfile.stat().st_size})
    finally:
        shutil.rmtree(wd, ignore_errors=True)
    summary = "; ".join(f"{r['snapshots']} snapshots: refresh {r['refresh_ms']:.1f} ms "
                        f"({r['x_listing']:.2f}x a listing, {r['render_ms']:.1f} ms without the write)"
                        for r in rows)
    return finish("metrics_refresh", args, machine, COLUMNS, rows, summary)


if __name__ == "__main__":
    raise SystemExit(main())
