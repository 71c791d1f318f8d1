"""What the docker CLI named by `[mysql] exec_prefix` needs from the units' sandbox.

The units run as root with ProtectSystem=strict, ProtectHome=yes, PrivateTmp=yes and,
with no TCP peer, PrivateNetwork=yes. `docker compose -f /opt/torrust/docker-compose.yml
exec -T mysql` works inside that as it is (tests/e2e/test_mysql_archive_e2e.py): the
client and its compose plugin in /usr, the engine's socket /run/docker.sock (a file
system socket: connect() needs no write access to the mount, and no network), the
compose file and its .env outside the home directories. What the sandbox hides, and
this module opens, read-only and nothing else:

- the client's configuration directory, root's ~/.docker (or `docker --config DIR`): a
  compose plugin installed there by hand (~/.docker/cli-plugins), contexts, config.json;
- a compose file, `--env-file` or `--project-directory` in a home directory;
- `-H unix:///run/user/UID/docker.sock` (rootless Docker's socket, under /run/user);
- `-H tcp://HOST:PORT` or `ssh://HOST`: the network to HOST (as `[mysql] host` does).

Paths in home directories are exposed with ProtectHome=tmpfs plus BindReadOnlyPaths=
(the rest of /home, /root and /run/user stays hidden), not ProtectHome=read-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tracker_backup.engines.contract import HOME_DIRS

ROOT_DOCKER_CONFIG = Path("/root/.docker")  # the units run as root: $HOME/.docker
# docker's global options that take a value (`-H X`, `--host X`, `--host=X`).
_DOCKER_VALUE_OPTS = {"-H", "--host", "--config", "-c", "--context", "-l", "--log-level",
                      "--tlscacert", "--tlscert", "--tlskey"}
# compose's options that name a file or directory the client reads.
_COMPOSE_PATH_OPTS = {"-f", "--file", "--env-file", "--project-directory"}


@dataclass
class DockerNeeds:
    """Read-only paths in home directories, and TCP peers, the docker client needs."""

    home_paths: list[Path] = field(default_factory=list)
    network_hosts: list[str] = field(default_factory=list)


def in_home(path: Path) -> bool:
    """True for a path the units' ProtectHome= hides."""
    text = str(path)
    return any(text == d or text.startswith(d + "/") for d in HOME_DIRS)


def _options(argv: list[str]) -> list[tuple[str, str]]:
    """(option, value) pairs of `--opt value`, `--opt=value` and `-o value` forms."""
    out = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word.startswith("--") and "=" in word:
            opt, value = word.split("=", 1)
            out.append((opt, value))
        elif word in _DOCKER_VALUE_OPTS or word in _COMPOSE_PATH_OPTS:
            if i + 1 < len(argv):
                out.append((word, argv[i + 1]))
            i += 1
        i += 1
    return out


def _host_needs(value: str, needs: DockerNeeds) -> None:
    url = urlsplit(value)
    if url.scheme == "unix":
        socket = Path(url.path)
        if in_home(socket):
            needs.home_paths.append(socket)
    elif url.scheme in ("tcp", "ssh", "http", "https") and url.hostname:
        needs.network_hosts.append(url.hostname)


def docker_needs(exec_prefix: tuple[str, ...] | list[str],
                 config_dir: Path | None = None) -> DockerNeeds:
    """What the sandbox must open for `exec_prefix` (nothing unless it runs docker).

    `config_dir` is the client's default configuration directory (root's ~/.docker
    when None);
    it is exposed only if it exists when the generator runs, so a plugin installed
    there later needs a `systemctl daemon-reload` (as any change of the config does).
    """
    needs = DockerNeeds()
    argv = list(exec_prefix)
    env = {}
    if argv and Path(argv[0]).name == "env":  # `env DOCKER_HOST=... docker compose ...`
        argv = argv[1:]
        while argv and "=" in argv[0] and not argv[0].startswith("-"):
            name, value = argv.pop(0).split("=", 1)
            env[name] = value
    if "DOCKER_HOST" in env:
        _host_needs(env["DOCKER_HOST"], needs)
    if not argv or Path(argv[0]).name not in ("docker", "docker-compose"):
        return needs
    if in_home(Path(argv[0])):  # the client itself in a home directory
        needs.home_paths.append(Path(argv[0]))
    explicit_config = Path(env["DOCKER_CONFIG"]) if "DOCKER_CONFIG" in env else None
    for opt, value in _options(argv[1:]):
        if opt in ("-H", "--host"):
            _host_needs(value, needs)
        elif opt == "--config":
            explicit_config = Path(value)
        elif opt in _COMPOSE_PATH_OPTS and value.startswith("/") and in_home(Path(value)):
            needs.home_paths.append(Path(value))
    config = explicit_config or config_dir or ROOT_DOCKER_CONFIG
    if in_home(config) and (explicit_config is not None or config.is_dir()):
        needs.home_paths.append(config)
    return needs
