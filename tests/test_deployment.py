"""Reading the deployer's layout (tracker.toml, .env, compose file) and rendering a config."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.deployer_layout import make_layout
from tracker_backup import deployment
from tracker_backup.config import load_config
from tracker_backup.errors import ConfigError

PASSWORD = "s3cret!pw"


def rendered_config(tmp_path: Path, dep, password_file: Path | None = None):
    text = deployment.render_config(dep, backup_path=tmp_path / "backups",
                                    password_file=password_file)
    path = tmp_path / "tracker-backup.conf"
    path.write_text(text)
    return text, load_config(path)


@pytest.mark.parametrize("db_name", ["tracker.db", "sqlite3.db"])
def test_sqlite_layout_maps_the_container_path_to_the_host_database_tracker_toml_names(
        tmp_path, db_name):
    layout = make_layout(tmp_path / "opt", db_name=db_name)
    dep = deployment.read_deployment(layout.storage)
    assert dep.driver == "sqlite3"
    assert dep.sqlite_container_path == f"/var/lib/torrust/tracker/database/{db_name}"
    assert dep.sqlite_path == layout.storage / "tracker/lib/database" / db_name
    assert dep.compose_file == layout.compose and dep.tracker_service == "tracker"
    text, config = rendered_config(tmp_path, dep)
    assert config.section("sqlite").database == layout.database
    assert config.section("mysql") is None and config.section("files").root == layout.storage
    # Caddy's certificates and keys (caddy/data) are backed up with its config.
    assert set(config.section("files").include) == {"tracker/etc/**", "caddy/etc/**", "caddy/data/**",
                                         "prometheus/etc/**"}
    assert "tracker.db in the deployer's template, sqlite3.db in the tracker's own default" in text
    assert f"stop_command = docker compose -f {layout.compose} stop tracker" in text


def test_a_second_database_file_beside_the_configured_one_is_pointed_out(tmp_path):
    layout = make_layout(tmp_path / "opt", db_name="sqlite3.db")
    (layout.storage / "tracker/lib/database/tracker.db").write_bytes(b"")
    dep = deployment.read_deployment(layout.storage)
    assert dep.sqlite_path.name == "sqlite3.db"
    assert any("also in" in n and "tracker.db" in n for n in dep.notes), dep.notes


def test_a_bind_mount_elsewhere_is_followed_to_the_host_path(tmp_path):
    layout = make_layout(tmp_path / "opt")
    elsewhere = tmp_path / "data/tracker-lib"
    (elsewhere / "database").mkdir(parents=True)
    layout.compose.write_text(layout.compose.read_text().replace(
        "./storage/tracker/lib:/var/lib/torrust/tracker:Z", f"{elsewhere}:/var/lib/torrust/tracker"))
    dep = deployment.read_deployment(layout.storage)
    assert dep.sqlite_path == elsewhere / "database/tracker.db"
    assert any("does not exist" in n for n in dep.notes)


def test_without_a_compose_file_the_images_default_mount_is_assumed(tmp_path):
    layout = make_layout(tmp_path / "opt")
    layout.compose.unlink()
    dep = deployment.read_deployment(layout.storage)
    assert dep.compose_file is None
    assert dep.sqlite_path == layout.database


@pytest.mark.parametrize("url_in_env", [True, False], ids=["url-in-env", "url-in-tracker-toml"])
def test_mysql_layout_uses_the_compose_service_and_keeps_the_password_out_of_the_config(
        tmp_path, url_in_env):
    layout = make_layout(tmp_path / "opt", driver="mysql", env_overrides_path=url_in_env)
    dep = deployment.read_deployment(layout.storage)
    assert dep.driver == "mysql" and dep.sqlite_path is None
    m = dep.mysql
    assert (m.database, m.user, m.password, m.host, m.service) == (
        "torrust_tracker", "torrust", PASSWORD, "mysql", "mysql")
    assert PASSWORD not in repr(dep)
    pw_file = tmp_path / "etc/mysql.password"
    text, config = rendered_config(tmp_path, dep, password_file=pw_file)
    assert PASSWORD not in text and "s3cret" not in text
    assert config.section("mysql").database == "torrust_tracker" and config.section("mysql").user == "torrust"
    assert config.section("mysql").exec_prefix == ("docker", "compose", "-f", str(layout.compose),
                                        "exec", "-T", "mysql")
    assert config.section("mysql").password_file == pw_file and config.section("mysql").host is None
    assert config.section("sqlite") is None
    assert "mysql/data/**" not in config.section("files").include


def test_mysql_on_a_host_that_is_no_compose_service_is_reached_over_tcp(tmp_path):
    layout = make_layout(tmp_path / "opt", driver="mysql",
                         mysql_url="mysql://backup:pw@db.example.org:3307/tracker")
    _, config = rendered_config(tmp_path, deployment.read_deployment(layout.storage))
    assert (config.section("mysql").host, config.section("mysql").port, config.section("mysql").exec_prefix) == (
        "db.example.org", 3307, ())


def test_caddy_certificates_in_a_named_volume_are_reported_not_silently_missed(tmp_path):
    layout = make_layout(tmp_path / "opt")
    import shutil

    shutil.rmtree(layout.storage / "caddy/data")
    layout.compose.write_text(layout.compose.read_text().replace(
        "./storage/caddy/data:/data", "caddy_data:/data"))
    dep = deployment.read_deployment(layout.storage)
    assert "caddy/data" not in dep.file_dirs
    assert any("Docker volume (caddy_data:/data)" in n for n in dep.notes), dep.notes


def test_env_file_quoting_comments_and_export(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# comment\n\nA='lit $x \"q\"'\nexport B=\"two\\nlines\"\nC=plain # note\n"
                   "D=\nE='a#b'\n")
    assert deployment.read_env_file(env) == {
        "A": 'lit $x "q"', "B": "two\nlines", "C": "plain", "D": "", "E": "a#b"}
    env.write_text("OK=1\nnot a line\n")
    with pytest.raises(ConfigError, match=r"\.env: line 2: expected KEY=VALUE"):
        deployment.read_env_file(env)


def test_missing_tracker_toml_names_the_file_and_the_option(tmp_path):
    with pytest.raises(ConfigError, match=r"tracker/etc/tracker.toml: not found.*--storage"):
        deployment.read_deployment(tmp_path / "nowhere/storage")


def test_unknown_driver_and_bad_url_are_named_with_where_they_came_from(tmp_path):
    layout = make_layout(tmp_path / "opt", driver="mysql",
                         mysql_url="postgres://u:topsecret@h/db")
    with pytest.raises(ConfigError) as exc:
        deployment.read_deployment(layout.storage)
    assert ".env TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PATH" in str(exc.value)
    assert "topsecret" not in str(exc.value) and "expected mysql://" in str(exc.value)
    layout.env.write_text("TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER=postgresql\n")
    with pytest.raises(ConfigError, match=r"driver = 'postgresql': expected sqlite3 or mysql"):
        deployment.read_deployment(layout.storage)


def test_the_sample_storages_tracker_toml_names_the_database_it_writes(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    subprocess.run([sys.executable, str(ROOT / "scripts/make-sample-storage.py"), str(tmp_path),
                    "--rows", "100"], check=True, capture_output=True, timeout=120)
    dep = deployment.read_deployment(tmp_path / "storage")
    assert dep.sqlite_path == tmp_path / "storage/tracker/lib/database/tracker.db"
    assert dep.sqlite_path.is_file() and not dep.notes, dep.notes
