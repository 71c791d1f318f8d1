"""`run` prints the snapshot id for scripts, but no bare id line into the journal (item 12)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import agent_env


def test_run_prints_the_bare_id_on_a_terminal_or_pipe(cli, tmp_path):
    proc = cli("run", check=True)
    snap_id = proc.stdout.strip()
    assert (tmp_path / "backups" / snap_id / "MANIFEST.json").is_file()


def test_run_under_the_journal_writes_no_bare_snapshot_id_line(config_file, tmp_path):
    out = tmp_path / "journal-stream.txt"
    with open(out, "w") as fh:
        st = os.fstat(fh.fileno())
        env = agent_env(JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        proc = subprocess.run([sys.executable, "-m", "tracker_backup", "--config",
                               str(config_file), "run"], stdout=fh, stderr=fh, env=env,
                              timeout=120)
    assert proc.returncode == 0
    snaps = [p.name for p in (tmp_path / "backups").iterdir() if not p.name.startswith(".")]
    assert len(snaps) == 1
    lines = out.read_text().splitlines()
    assert snaps[0] not in lines, lines  # no line that is only the id
    assert any(snaps[0] in line for line in lines), lines  # the id is still logged, with words
