#!/usr/bin/env python3
"""Runs the SQLite archiver in the foreground until SIGTERM (tests and benchmarks).

Usage: run_archiver.py DB BACKUP_PATH [--wal-reset-pages N] [--publish-interval S]
Same Runner and SqliteArchiver as `tracker-backup archive`, without a config file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "agent"))

from tracker_backup.archive.runner import Runner  # noqa: E402
from tracker_backup.engines.sqlite.archive.archiver import SqliteArchiver  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("db")
    ap.add_argument("backup")
    ap.add_argument("--wal-reset-pages", type=int, default=16000)
    ap.add_argument("--publish-interval", type=float, default=0.5)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="archiver: %(levelname)s: %(message)s")
    Path(args.backup).mkdir(mode=0o700, exist_ok=True)
    arch = SqliteArchiver(Path(args.db), Path(args.backup), wal_reset_pages=args.wal_reset_pages)
    runner = Runner([arch], publish_interval=args.publish_interval)
    runner.install_signal_handlers()
    runner.run()
    st = arch.status()
    print(f"archiver: stopped at seq {st.last_seq}, max lock {st.extra['max_lock_ms']} ms, "
          f"wal resets {st.extra['wal_resets']}, lock p50 {st.extra['lock_ms_p50']} ms "
          f"p99 {st.extra['lock_ms_p99']} ms of {st.extra['locks']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
