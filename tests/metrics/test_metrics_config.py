"""[metrics]: off by default, typed values, errors that name file, key, value and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Cli
from tracker_backup.config import load_config
from tracker_backup.errors import EXIT_USAGE, ConfigError


def conf(tmp_path: Path, metrics: str) -> Path:
    path = tmp_path / "tb.conf"
    path.write_text(f"[backup]\npath = {tmp_path / 'b'}\n{metrics}\n[files]\nroot = {tmp_path}\n")
    return path


def test_metrics_are_off_by_default(tmp_path):
    config = load_config(conf(tmp_path, ""))
    assert config.metrics.textfile is None and config.metrics.listen is None
    assert load_config(conf(tmp_path, "[metrics]\ntextfile =\nlisten =")).metrics.textfile is None


@pytest.mark.parametrize("listen,bind", [("127.0.0.1:9817", ("127.0.0.1", 9817)),
                                         ("localhost:9817", ("127.0.0.1", 9817)),
                                         ("[::1]:9100", ("::1", 9100)),
                                         ("127.0.0.53:1", ("127.0.0.53", 1))])
def test_loopback_listen_addresses_are_accepted(tmp_path, listen, bind):
    from tracker_backup.metrics.address import parse_listen

    config = load_config(conf(tmp_path, f"[metrics]\nlisten = {listen}\n"
                                        "textfile = /var/lib/prometheus/node-exporter/tb.prom"))
    assert config.metrics.listen == listen
    assert parse_listen(config.metrics.listen) == bind
    assert config.metrics.textfile == Path("/var/lib/prometheus/node-exporter/tb.prom")


@pytest.mark.parametrize("line,fragment", [
    ("listen = 0.0.0.0:9817", "0.0.0.0 is not a loopback address"),
    ("listen = 192.0.2.7:9817", "192.0.2.7 is not a loopback address"),
    ("listen = [2001:db8::1]:9817", "2001:db8::1 is not a loopback address"),
    ("listen = prometheus.example.org:9817", "neither localhost nor an IP address"),
    ("listen = 127.0.0.1", "no port"),
    ("listen = 127.0.0.1:99999", "not a number from 1 to 65535"),
    ("listen = ::1:9817", "in brackets"),
    ("textfile = relative/tb.prom", "expected an absolute path"),
    ("textfile = /var/lib/prometheus/node-exporter/tb.txt", "ending in .prom"),
    ("port = 9817", "unknown key 'port'"),
])
def test_bad_metrics_values_name_file_key_value_and_expectation(tmp_path, line, fragment):
    path = conf(tmp_path, f"[metrics]\n{line}")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert str(path) in text and "[metrics]" in text and fragment in text, text
    if "unknown" not in fragment:
        assert f"{line.split(' = ')[0]} = '{line.split(' = ')[1]}'" in text and "expected" in text


def test_a_bad_listen_address_exits_2_before_anything_runs(tmp_path):
    path = conf(tmp_path, "[metrics]\nlisten = 0.0.0.0:9817")
    proc = Cli(path)("run")
    assert proc.returncode == EXIT_USAGE and "[metrics] listen" in proc.stderr
    assert not (tmp_path / "b").exists()
