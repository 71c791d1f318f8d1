"""The benchmark scripts run end to end on tiny databases and produce their table and JSON.

Real runs (real SQLite, real writer, the real agent CLI), tiny sizes: these
tests prove the scripts work and their results are self-consistent, never how
fast anything is (performance lives in docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def run_bench(tmp_path: Path, script: str, *args: str, timeout: float = 240) -> tuple[str, dict]:
    """Run bench/SCRIPT with scratch, cache and results under tmp_path; return (stdout, JSON)."""
    out = tmp_path / "results"
    env = dict(os.environ, TB_BENCH_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, str(BENCH / script), *args, "--workdir", str(tmp_path),
                           "--out", str(out)], capture_output=True, text=True, timeout=timeout,
                          env=env)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    results = list(out.glob("*.json"))
    assert len(results) == 1, results
    data = json.loads(results[0].read_text())
    assert f"results: {results[0]}" in proc.stdout
    assert "summary: " + data["summary"] in proc.stdout
    assert data["machine"]["nproc"] >= 1 and data["machine"]["sqlite_lib"]
    # the printed table has the declared columns as its header
    assert "| " + data["columns"][0] in proc.stdout
    # scratch directories are removed, only results/ and the DB cache stay
    assert {p.name for p in tmp_path.iterdir()} <= {"cache", "results"}
    return proc.stdout, data


def test_sqlite_live_measures_every_method_with_consistent_copies_and_no_writer_errors(tmp_path):
    _, data = run_bench(tmp_path, "sqlite_live.py", "--sizes", "3M", "--rates", "200",
                        "--backup-limit", "5", "--idle-seconds", "0.5", "--rate-limit", "50")
    rows = {r["method"]: r for r in data["rows"]}
    assert set(rows) == {"idle writer", "cp (offline)", "cp+sync live (load only)",
                         ".backup (sqlite3)", "VACUUM INTO",
                         "agent none", "agent none rl", "agent zstd", "agent zstd rl",
                         "agent none quick"}
    assert rows["cp (offline)"]["x_cp"] == 1.0
    for method, row in rows.items():
        if method in ("idle writer", "cp+sync live (load only)"):
            continue  # the live cp is a load generator, and may well be torn
        assert row["wall_s"] > 0 and row["x_cp"] > 0, row
        if method == ".backup (sqlite3)" and not row["finished"]:
            assert 0 <= row["fraction"] < 1 and row["ok"] is None
            continue
        assert row["ok"] is True and row["integrity"] == "ok" and row["invariant"] is True, row
    for method, row in rows.items():
        if method.startswith("agent"):
            assert row["rc"] == 0 and row["w_errors"] == 0, row
            assert 0 < row["maxrss_mb"] < 500 and row["copy_s"] is not None
    # zstd artifacts are smaller than the raw copy; the staging copy is counted as written
    assert rows["agent zstd"]["artifact_mb"] < rows["agent none"]["artifact_mb"]
    assert rows["agent zstd"]["written_mb"] > rows["agent none"]["written_mb"]


def test_rollback_stall_reports_locked_copy_within_max_lock_and_refusal_when_too_short(tmp_path):
    _, data = run_bench(tmp_path, "rollback_stall.py", "--sizes", "2M", "--rates", "50",
                        "--max-locks", "3s,1ms", "--idle-seconds", "0.5")
    ok_row, refused = data["rows"]
    assert ok_row["outcome"] == "locked-copy" and ok_row["ok"] is True, ok_row
    assert ok_row["lock_s"] < 3 and ok_row["stall_x_max_lock"] < 1 and ok_row["w_errors"] == 0
    assert refused["outcome"].startswith("failed") and "max_lock" in refused["error"], refused
    assert "longest writer stall" in data["summary"]


def test_memory_reports_peak_rss_per_size_and_compression(tmp_path):
    _, data = run_bench(tmp_path, "memory.py", "--sizes", "1M,3M")
    assert [(r["size"], r["compression"]) for r in data["rows"]] == [
        ("1M", "none"), ("1M", "zstd"), ("3M", "none"), ("3M", "zstd")]
    for r in data["rows"]:
        assert r["rc"] == 0 and 5 < r["maxrss_mb"] < 500 and r["tree_pss_mb"] > 0, r
    assert data["rows"][0]["x_smallest"] == 1.0


def test_compression_compares_python_zstd_with_the_cli_tools_on_the_same_bytes(tmp_path):
    _, data = run_bench(tmp_path, "compression.py", "--size", "2M", "--levels", "1,3",
                        "--threads", "0,2")
    methods = [r["method"] for r in data["rows"]]
    assert methods[:2] == ["zstd CLI", "gzip CLI"] and "python zstd (agent)" in methods
    for r in data["rows"]:
        assert r["ratio"] > 1.2 and r["mb_per_s"] > 0, r  # hex info-hashes do compress
    cli = data["rows"][0]
    agent = next(r for r in data["rows"] if r["method"] == "python zstd (agent)")
    assert cli["x_zstd_cli_speed"] == 1.0
    assert all(5 < r["maxrss_mb"] < 500 for r in data["rows"] if r["method"].startswith("python"))
    assert abs(agent["ratio"] - cli["ratio"]) / cli["ratio"] < 0.05  # same format, same level


def test_storage_growth_pages_keep_only_the_changes_while_full_copies_grow_linearly(tmp_path):
    _, data = run_bench(tmp_path, "storage_growth.py", "--size", "4M", "--days", "3", "--no-restic")
    s = data["summaries"][0]
    full = [r["full_total_mb"] for r in data["rows"]]
    assert 2.7 < full[-1] / full[0] < 3.3, full  # whole copies: three days cost three snapshots
    assert 0.2 < s["pages_x_full"] < 0.8, s
    later = [r for r in data["rows"] if r["day"] > 1]
    assert all(0 < r["changed_pct"] < 100 for r in later)
    assert all(0.9 < r["x_floor"] < 1.5 for r in later), later  # near the zstd floor
    assert s["restore_newest_x_full"] > 0 and s["restore_oldest_x_full"] > 0
    assert 0 < s["quiet_changed_pct"] < 15 and s["quiet_x_full"] > 0


def test_verify_cost_times_both_checks_cold_and_warm_against_a_plain_read(tmp_path):
    _, data = run_bench(tmp_path, "verify_cost.py", "--sizes", "2M")
    checks = {(r["check"], r["cache"]): r for r in data["rows"]}
    assert set(checks) == {("read (anchor)", "cold"), ("quick_check", "cold"),
                           ("quick_check", "warm"), ("integrity_check", "cold"),
                           ("integrity_check", "warm")}
    for key, r in checks.items():
        assert r["s_per_gb"] > 0
        if key[0] != "read (anchor)":
            assert r["result"] == "ok"


def test_mysql_compares_the_agent_with_mysqldump_under_a_live_writer(tmp_path):
    _, data = run_bench(tmp_path, "mysql.py", "--rows", "5000", "--rate", "100",
                        "--idle-seconds", "0.5")
    rows = {r["method"]: r for r in data["rows"]}
    assert {"idle writer", "mysqldump | gzip -6", "mysqldump | zstd -T0", "agent zstd",
            "agent none"} <= set(rows)
    assert rows["mysqldump | gzip -6"]["x_anchor"] == 1.0
    for method, r in rows.items():
        assert r["w_errors"] == 0, r
        if method != "idle writer":
            assert r["ok"] is True and r["stored_mb"] > 0 and r["wall_s"] > 0, r
    # the agent's dump holds every pre-filled torrent (the writer adds more while it runs)
    assert rows["agent zstd"]["rows_in_dump"] >= 5000
    assert rows["agent zstd"]["stored_mb"] < rows["agent none"]["stored_mb"]


def test_report_renders_a_result_file_as_markdown_with_its_numbers(tmp_path):
    _, data = run_bench(tmp_path, "verify_cost.py", "--sizes", "1M")
    proc = subprocess.run([sys.executable, str(BENCH / "report.py"), "--results",
                           str(tmp_path / "results")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Machine: ")
    assert "### verify_cost" in proc.stdout and f"Summary: {data['summary']}" in proc.stdout
    first = data["rows"][0]
    assert f"| {first['size']} " in proc.stdout and "| s_per_gb " in proc.stdout


def test_report_fails_clearly_without_results(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "report.py"), "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and f"no results in {tmp_path}" in proc.stderr


def test_sqlite_live_rejects_an_unknown_agent_variant_naming_it_and_the_choices(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "sqlite_live.py"), "--variants", "none,fast",
                           "--workdir", str(tmp_path), "--out", str(tmp_path / "results")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--variants: unknown fast; expected some of none, none-rl, zstd" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_metrics_refresh_measures_each_store_size_against_the_listing(tmp_path):
    _, data = run_bench(tmp_path, "metrics_refresh.py", "--snapshots", "2,6", "--repeat", "2",
                        "--size", "1M")
    assert [r["snapshots"] for r in data["rows"]] == [2, 6]
    for row in data["rows"]:
        assert row["listing_ms"] > 0 and row["refresh_ms"] > 0 and row["textfile_bytes"] > 1000
        assert row["x_listing"] == round(row["refresh_ms"] / row["listing_ms"], 2)


def test_mysql_pitr_measures_rpo_exactness_writer_cost_and_restore_time_on_docker(tmp_path):
    from support.docker_engine import DockerEngine
    reason = DockerEngine.missing()
    if reason:
        import pytest
        pytest.skip(f"no Docker engine can start here: {reason}")
    _, data = run_bench(tmp_path, "mysql_pitr.py", "--rows", "5000", "--rate", "100",
                        "--hour", "20", "--window", "2", "--rpo-seconds", "2", timeout=900)
    rows = {r["phase"].split(" (")[0].split(",")[0]: r for r in data["rows"]}
    assert all(r["ok"] for r in data["rows"]), data["rows"]
    assert rows["restore --at T"]["x_anchor"] > 0 and data["p99_ratio"] > 0
    assert len(data["p99_pairs"]) >= 2 and data["archiver_core_share"] > 0
    assert "RPO: data dir deleted" in data["rows"][-1]["phase"]
