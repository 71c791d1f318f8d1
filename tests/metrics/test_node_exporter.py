"""node_exporter's textfile collector reads what the agent writes (Debian's prometheus-node-exporter)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from support.prom_text import Exposition

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"


@pytest.fixture
def node_exporter(textfile):
    """node_exporter on a free loopback port, reading only the textfile's directory."""
    if not shutil.which(NODE_EXPORTER):
        pytest.fail("prometheus-node-exporter is not installed: run ./scripts/setup-test-env")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}",
                             "--collector.disable-defaults", "--collector.textfile",
                             f"--collector.textfile.directory={textfile.parent}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            break
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError(f"node_exporter did not start: {proc.communicate()[1]}") from None
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def scrape(url: str) -> Exposition:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return Exposition(resp.read().decode())


def test_node_exporter_serves_the_textfile_after_a_run_and_a_failure(mcli, textfile, node_exporter,
                                                                   storage):
    mcli("run", check=True)
    ours = Exposition(textfile.read_text())
    seen = scrape(node_exporter)
    assert seen.value("node_textfile_scrape_error") == 0
    for key, value in ours.samples.items():
        assert seen.samples.get(key) == value, key
    assert seen.types["tracker_backup_run_failures_total"] == "counter"
    db = storage / "tracker/lib/database/tracker.db"
    db.rename(db.with_suffix(".gone"))
    assert mcli("run").returncode != 0
    after = scrape(node_exporter)
    assert after.value("node_textfile_scrape_error") == 0
    assert after.value("tracker_backup_last_run_success") == 0
    assert after.value("tracker_backup_run_failures_total") == 1
