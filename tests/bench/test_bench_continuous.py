"""bench/continuous.py end to end on a tiny database (the agent's phases; Litestream when given)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_continuous_bench_measures_rpo_pitr_bytes_and_latency_against_idle(tmp_path):
    out = tmp_path / "results"
    env = dict(os.environ, TB_BENCH_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "continuous.py"), "--size", "2M",
                           "--seconds", "4", "--rate", "200", "--phases", "idle,agent",
                           "--workdir", str(tmp_path), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((out / "continuous.json").read_text())
    idle, agent = data["rows"]
    assert idle["phase"] == "idle" and idle["p99_x_idle"] == 1.0
    assert agent["w_errors"] == 0 and agent["restore_ok"] and agent["lost_acked_1s"] == 0
    assert agent["pitr_exact"] is True and agent["stored_mb"] > 0 and agent["peak_rss_mb"] > 5
    assert "summary: " + data["summary"] in proc.stdout
    assert {p.name for p in tmp_path.iterdir()} <= {"cache", "results"}
