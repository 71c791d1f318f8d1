"""What the docker client of [mysql] exec_prefix needs opened in the units' sandbox."""

from __future__ import annotations

from pathlib import Path

from tracker_backup.engines.mysql.docker_sandbox import docker_needs

COMPOSE = ("docker", "compose", "-f", "/opt/torrust/docker-compose.yml", "exec", "-T", "mysql")


def test_the_deployers_layout_needs_nothing_opened(tmp_path):
    needs = docker_needs(COMPOSE, config_dir=tmp_path / "missing")
    assert needs.home_paths == [] and needs.network_hosts == []


def test_not_docker_needs_nothing_even_with_docker_like_options(tmp_path):
    needs = docker_needs(("podman", "exec", "-i", "-H", "tcp://db:2375", "mysql"), config_dir=tmp_path)
    assert needs.home_paths == [] and needs.network_hosts == []


def test_roots_docker_config_dir_is_opened_only_when_it_exists(tmp_path, monkeypatch):
    import tracker_backup.engines.mysql.docker_sandbox as ds

    # A directory the units would hide: pretend tmp_path is in a home directory.
    monkeypatch.setattr(ds, "HOME_DIRS", (str(tmp_path),))
    config = tmp_path / ".docker"
    assert docker_needs(COMPOSE, config_dir=config).home_paths == []
    config.mkdir()
    assert docker_needs(COMPOSE, config_dir=config).home_paths == [config]


def test_compose_files_and_sockets_in_home_directories_are_opened(tmp_path):
    argv = ("/usr/bin/docker", "-H", "unix:///run/user/1000/docker.sock", "compose",
            "--file=/home/ops/torrust/compose.yaml", "--env-file", "/root/torrust.env",
            "--project-directory", "/srv/torrust", "exec", "-T", "mysql")
    needs = docker_needs(argv, config_dir=tmp_path / "missing")
    assert needs.home_paths == [Path("/run/user/1000/docker.sock"), Path("/home/ops/torrust/compose.yaml"),
                                Path("/root/torrust.env")]
    assert needs.network_hosts == []


def test_an_explicit_config_dir_and_env_prefix_are_followed(tmp_path):
    argv = ("env", "DOCKER_HOST=tcp://10.0.0.5:2376", "DOCKER_CONFIG=/root/.config/docker", "docker",
            "compose", "-f", "/opt/torrust/docker-compose.yml", "exec", "-T", "mysql")
    needs = docker_needs(argv, config_dir=tmp_path / "missing")
    assert needs.home_paths == [Path("/root/.config/docker")]
    assert needs.network_hosts == ["10.0.0.5"]
    needs = docker_needs(("docker", "--config", "/home/ops/.docker", "--host=ssh://ops@db.example",
                          "exec", "-i", "mysql"), config_dir=tmp_path)
    assert needs.home_paths == [Path("/home/ops/.docker")] and needs.network_hosts == ["db.example"]
