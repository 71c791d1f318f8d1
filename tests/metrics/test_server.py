"""The /metrics endpoint: loopback only, fresh text per scrape, nothing else served."""

from __future__ import annotations

import socket
import subprocess
import urllib.error
import urllib.request

import pytest

from support.net import free_port
from support.prom_text import Exposition
from tracker_backup import metrics
from tracker_backup.config import load_config
from tracker_backup.metrics.server import start_server


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture
def served(mcli, metrics_config):
    """The agent's metrics served on 127.0.0.1 (port picked by the kernel) after one run."""
    mcli("run", check=True)
    exporter = metrics.Exporter(load_config(metrics_config))
    server = start_server(("127.0.0.1", 0), exporter.text)
    yield server, mcli
    server.stop()


def test_metrics_are_served_fresh_on_each_scrape_and_pass_promtool(served, promtool):
    server, mcli = served
    url = f"http://127.0.0.1:{server.port}/metrics"
    code, ctype, body = get(url)
    assert code == 200 and ctype == "text/plain; version=0.0.4; charset=utf-8"
    proc = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert Exposition(body).value("tracker_backup_snapshots", state="good") == 1
    mcli("run", check=True)  # the store changed: the next scrape says so
    assert Exposition(get(url)[2]).value("tracker_backup_snapshots", state="good") == 2


def test_other_paths_are_not_found(served):
    server, _ = served
    code, _, body = get(f"http://127.0.0.1:{server.port}/")
    assert code == 404 and "tracker_backup" not in body


def test_the_server_listens_on_the_loopback_address_only(served):
    server, _ = served
    assert server.server_address[0] == "127.0.0.1"
    others = [a for a in _host_addresses() if not a.startswith("127.")]
    assert others, "this test needs a non-loopback address on the host"
    for address in others:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, server.port), timeout=5).close()


def _host_addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                         check=True).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines()]


def test_serve_uses_the_configured_listen_address(tmp_path, storage, fresh_cli):
    port = free_port()
    conf = tmp_path / "listen.conf"
    conf.write_text(f"[backup]\npath = {tmp_path / 'b'}\n[metrics]\nlisten = localhost:{port}\n"
                    f"[files]\nroot = {storage}\n")
    fresh_cli(conf)("run", check=True)
    server = metrics.serve(load_config(conf))
    try:
        assert server is not None and server.server_address == ("127.0.0.1", port)
        code, _, body = get(f"http://127.0.0.1:{port}/metrics")
        assert code == 200 and "tracker_backup_last_run_success 1" in body
        assert "tracker_backup_archive_lag_seconds" not in body  # no archiver: not made up
    finally:
        server.stop()


def test_serve_without_listen_configured_serves_nothing(metrics_config):
    assert metrics.serve(load_config(metrics_config)) is None


def test_an_ipv6_loopback_address_is_served_when_the_host_has_one():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    try:
        server = start_server(("::1", 0), lambda: "a 1\n")
    except OSError as exc:
        pytest.skip(f"no ::1 here: {exc}")
    try:
        assert get(f"http://[::1]:{server.port}/metrics")[2] == "a 1\n"
    finally:
        server.stop()
