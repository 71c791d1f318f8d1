"""Fixtures of the metrics tests: promtool, a config with [metrics] textfile."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import Cli, write_config
from support.net import free_port

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of Debian's promtool (package prometheus, in scripts/test-packages.txt)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run ./scripts/setup-test-env (Debian package prometheus)")
    return path


@pytest.fixture
def textfile(tmp_path: Path) -> Path:
    """Where node_exporter's textfile collector would look (a directory of its own)."""
    directory = tmp_path / "node-exporter"
    directory.mkdir()
    return directory / "tracker-backup.prom"


@pytest.fixture
def metrics_config(tmp_path: Path, config_file: Path, textfile: Path) -> Path:
    """The shared test configuration (tests/conftest.py) plus [metrics] textfile."""
    return write_config(tmp_path / "tb-metrics.conf",
                        config_file.read_text() + f"[metrics]\ntextfile = {textfile}\n")


@pytest.fixture
def mcli(metrics_config: Path) -> Cli:
    return Cli(metrics_config)


@pytest.fixture
def node_exporter(textfile):
    """node_exporter on a free loopback port, reading only the textfile's directory."""
    if not shutil.which(NODE_EXPORTER):
        pytest.fail("prometheus-node-exporter is not installed: run ./scripts/setup-test-env")
    port = free_port()
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
