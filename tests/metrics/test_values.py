"""The textfile after real runs of the agent: valid for promtool, the same values as `status --json`."""

from __future__ import annotations

import json
import os
import socket
import subprocess

from conftest import Cli
from support.prom_text import Exposition
from tracker_backup import __version__, metrics
from tracker_backup.config import load_config
from tracker_backup.errors import EXIT_RUN_FAILED
from tracker_backup.store import parse_iso

P = metrics.PREFIX
FREE_SPACE_SLACK = 256 * 2**20  # other processes on the machine write while the test reads


def scrape(cli: Cli) -> tuple[str, Exposition]:
    """The textfile the last command wrote (node_exporter's view)."""
    text = load_config(cli.config).metrics.textfile.read_text()
    return text, Exposition(text)


def promtool_check(promtool: str, text: str) -> None:
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def ts(text: str) -> float:
    return parse_iso(text).timestamp()


def status(cli: Cli, *, last_run_failed: bool = False) -> dict:
    """`status --json`; it exits 1 when the last run failed (documented), 0 otherwise."""
    proc = cli("status", "--json")
    assert proc.returncode == (EXIT_RUN_FAILED if last_run_failed else 0), proc.stderr
    return json.loads(proc.stdout)


def test_metrics_after_a_success_pass_promtool_and_match_status(mcli, promtool, tmp_path):
    mcli("run", check=True)
    snap_id = mcli("run", check=True).stdout.strip()
    text, m = scrape(mcli)
    promtool_check(promtool, text)
    st = status(mcli)
    rows = json.loads(mcli("list", "--json", check=True).stdout)
    assert m.value(P + "last_success_timestamp_seconds") == ts(st["last_success"]["finished"])
    assert m.value(P + "last_run_timestamp_seconds") == ts(st["last_run"]["finished"])
    assert m.value(P + "last_run_success") == 1
    assert m.value(P + "run_duration_seconds") == st["last_run"]["duration_sec"]
    assert m.value(P + "run_failures_total") == 0 == st["run_failures_total"]
    assert m.value(P + "snapshots", state="good") == st["good_snapshots"] == 2
    assert m.value(P + "snapshots", state="damaged") == st["snapshots"] - st["good_snapshots"]
    assert m.value(P + "stored_bytes") == st["total_bytes"]
    fs = os.statvfs(tmp_path / "backups")
    assert m.value(P + "backup_path_size_bytes") == fs.f_blocks * fs.f_frsize
    # Free space: the same file system's figure, read a moment apart while other processes
    # on this shared machine write and delete (benchmarks create GB-sized files).
    slack = max(FREE_SPACE_SLACK, 0.02 * fs.f_blocks * fs.f_frsize)
    assert abs(m.value(P + "backup_path_free_bytes") - st["free_bytes"]) < slack
    per_source = m.by_label(P + "snapshot_bytes", "source")
    assert set(per_source) == {"sqlite", "files"} == set(rows[0]["sources"])
    assert sum(per_source.values()) == rows[0]["bytes"] and rows[0]["id"] == snap_id
    assert m.value(P + "restorable_newest_timestamp_seconds") == ts(rows[0]["time"])
    assert m.value(P + "restorable_oldest_timestamp_seconds") == ts(rows[-1]["time"])
    assert m.value(P + "schedule_interval_seconds") == st["schedule_interval_sec"] == 86400
    assert m.value(P + "drill_last_success_timestamp_seconds") == 0  # never drilled
    assert m.get(P + "drill_last_run_success") is None
    assert m.value(P + "build_info", version=__version__) == 1


def test_a_failed_run_counts_and_keeps_the_last_success(mcli, promtool, storage, tmp_path):
    mcli("run", check=True)
    before = status(mcli)
    db = storage / "tracker/lib/database/tracker.db"
    db.rename(db.with_suffix(".gone"))
    for _ in range(2):
        assert mcli("run").returncode == EXIT_RUN_FAILED
    text, m = scrape(mcli)
    promtool_check(promtool, text)
    st = status(mcli, last_run_failed=True)
    assert st["last_run"]["result"] == "failed"
    assert m.value(P + "last_run_success") == 0
    assert m.value(P + "run_failures_total") == 2 == st["run_failures_total"]
    assert m.value(P + "run_duration_seconds") == st["last_run"]["duration_sec"]
    assert m.value(P + "last_run_timestamp_seconds") == ts(st["last_run"]["finished"])
    assert m.value(P + "last_success_timestamp_seconds") == ts(before["last_success"]["finished"])
    db.with_suffix(".gone").rename(db)
    mcli("run", check=True)
    _, m = scrape(mcli)
    assert m.value(P + "last_run_success") == 1
    assert m.value(P + "run_failures_total") == 2  # a counter: never goes back


def test_a_drill_shows_its_time_result_and_rto(mcli, promtool):
    mcli("run", check=True)
    drill = json.loads(mcli("drill", "--json", check=True).stdout)
    text, m = scrape(mcli)
    promtool_check(promtool, text)
    st = status(mcli)
    assert st["last_proven_restorable"]["at"] == drill["at"]
    assert m.value(P + "drill_last_success_timestamp_seconds") == ts(drill["at"])
    assert m.value(P + "drill_last_run_timestamp_seconds") == ts(st["last_restore_drill"]["at"])
    assert m.value(P + "drill_last_run_success") == 1
    assert m.value(P + "drill_rto_seconds") == st["last_restore_drill"]["rto_sec"] == drill["rto_sec"]


def test_a_damaged_snapshot_is_counted_and_no_label_carries_a_path_or_host(mcli, tmp_path, storage):
    first = mcli("run", check=True).stdout.strip()
    mcli("run", check=True)
    (tmp_path / "backups" / first / "MANIFEST.json").write_text("{")
    text = mcli("metrics", check=True).stdout  # read now: no command rewrote the textfile
    m = Exposition(text)
    assert m.value(P + "snapshots", state="damaged") == 1
    assert m.value(P + "snapshots", state="good") == 1
    labels = [v for (_, lbls) in m.samples for _, v in lbls]
    for value in labels:
        assert "/" not in value and socket.gethostname() not in value, value
    assert str(tmp_path) not in text and str(storage) not in text


def test_prune_and_verify_rewrite_the_textfile(mcli, tmp_path, metrics_config):
    ids = [mcli("run", "--no-prune", check=True).stdout.strip() for _ in range(4)]
    assert scrape(mcli)[1].value(P + "snapshots", state="good") == 4
    mcli("prune", check=True)  # keep_last = 3 and keep_days = 7 by default: all kept
    assert scrape(mcli)[1].value(P + "snapshots", state="good") == 4
    art = tmp_path / "backups" / ids[-1] / "files.tar.zst"
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0x01
    art.write_bytes(bytes(data))
    assert mcli("verify", ids[-1]).returncode == EXIT_RUN_FAILED
    _, m = scrape(mcli)
    assert m.value(P + "snapshots", state="damaged") == 1
    assert m.value(P + "snapshots", state="good") == 3
    # the newest good snapshot is now the one before
    rows = {r["id"]: r for r in json.loads(mcli("list", "--json", check=True).stdout)}
    assert sum(m.by_label(P + "snapshot_bytes", "source").values()) == rows[ids[-2]]["bytes"]


def test_the_metrics_command_prints_what_the_textfile_holds(mcli):
    mcli("run", check=True)
    printed = mcli("metrics", check=True).stdout
    written, _ = scrape(mcli)
    def stable(text):  # free space moves with every other process writing to this disk
        return [ln for ln in text.splitlines() if "free_bytes " not in ln]
    assert stable(printed) == stable(written)
    assert "tracker_backup_last_run_success 1" in printed
