"""Read a Torrust deployment as it is on disk, and render a tracker-backup config for it.

`tracker-backup init` uses this. The deployer's layout (torrust-tracker-deployer):

    /opt/torrust/docker-compose.yml   services tracker, mysql (optional), caddy, ...
    /opt/torrust/.env                 TORRUST_TRACKER_CONFIG_OVERRIDE_* and MYSQL_* values
    /opt/torrust/storage/             tracker/{etc/tracker.toml,lib/database/<db>,log},
                                      mysql/data, caddy/{etc,data}, prometheus/etc, ...

The tracker reads `[core.database] driver` and `path` from tracker.toml; environment
variables TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__{DRIVER,PATH} (set in .env)
override them. A SQLite path is the path inside the container: it is mapped to the host
through the tracker service's bind mounts in the compose file (the deployer mounts
`./storage/tracker/lib` at `/var/lib/torrust/tracker`). A MySQL URL
`mysql://user:password@host:port/database` names the compose service as its host.

Nothing here writes anything; the password read from the URL is kept out of every repr
and out of the rendered config (it goes to a 0600 file named by `[mysql] password_file`).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from tracker_backup.errors import ConfigError

DEFAULT_STORAGE = Path("/opt/torrust/storage")
COMPOSE_NAMES = ("docker-compose.yml", "docker-compose.yaml", "compose.yaml", "compose.yml")
ENV_PREFIX = "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__"
# Where the tracker image keeps its data when the compose file cannot tell us.
CONTAINER_LIB = PurePosixPath("/var/lib/torrust/tracker")
HOST_LIB = Path("tracker/lib")
# Storage subdirectories worth backing up as files, in the order they are listed.
FILE_CANDIDATES = (
    ("tracker/etc", "the tracker's configuration (tracker.toml)"),
    ("caddy/etc", "Caddy's configuration (Caddyfile)"),
    ("caddy/data", "Caddy's TLS certificates and ACME account keys"),
    ("prometheus/etc", "Prometheus configuration"),
    ("grafana/provisioning", "Grafana provisioning (dashboards, data sources)"),
)


@dataclass(frozen=True)
class MysqlTarget:
    """The tracker's MySQL database, as its URL and the compose file describe it."""

    database: str
    user: str
    password: str = field(repr=False)
    host: str = "mysql"
    port: int = 3306
    service: str | None = None  # compose service running the server (host == service name)


@dataclass(frozen=True)
class Deployment:
    """What `init` found: where things are, which database, and what to tell the operator."""

    storage: Path
    tracker_toml: Path
    compose_file: Path | None
    env_file: Path | None
    driver: str  # "sqlite3" | "mysql"
    database_source: str  # where driver/path came from, for the comments
    sqlite_path: Path | None = None  # host path of the SQLite database
    sqlite_container_path: str | None = None
    mysql: MysqlTarget | None = None
    tracker_service: str | None = None
    file_dirs: tuple[str, ...] = ()  # storage subdirectories that exist, from FILE_CANDIDATES
    notes: tuple[str, ...] = ()  # facts the operator should read (rendered as comments)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a docker compose `.env` file: KEY=VALUE lines, '...' or "..." quoting, # comments.

    Single-quoted values are literal; double-quoted ones know \\n, \\t, \\\\ and \\";
    unquoted values end at ` #`. `export KEY=...` is accepted. Interpolation (${VAR}) is
    not performed: the values init needs are literal in the deployer's template.
    """
    values: dict[str, str] = {}
    text = path.read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        stripped = stripped.removeprefix("export ").lstrip()
        key, sep, value = stripped.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
            raise ConfigError(f"{path}: line {number}: expected KEY=VALUE")
        value = value.strip()
        if value[:1] in ("'", '"'):
            quote = value[0]
            end = value.find(quote, 1)
            while quote == '"' and end > 0 and value[end - 1] == "\\":
                end = value.find(quote, end + 1)
            if end < 0:
                raise ConfigError(f"{path}: line {number}: {key}: unterminated {quote} quote")
            value = value[1:end]
            if quote == '"':
                value = (value.replace("\\n", "\n").replace("\\t", "\t")
                         .replace('\\"', '"').replace("\\\\", "\\"))
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].strip()
        values[key] = value
    return values


def read_tracker_database(toml_path: Path) -> tuple[str | None, str | None]:
    """(driver, path) of `[core.database]` in tracker.toml (None where a key is absent)."""
    try:
        with open(toml_path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{toml_path}: not found: expected the tracker's configuration "
                          "(storage/tracker/etc/tracker.toml); pass --storage DIR") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{toml_path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{toml_path}: cannot read: {exc.strerror}") from None
    database = (data.get("core") or {}).get("database") or {}
    if not isinstance(database, dict):
        raise ConfigError(f"{toml_path}: [core.database] is not a table")
    driver, path = database.get("driver"), database.get("path")
    for key, value in (("driver", driver), ("path", path)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{toml_path}: [core.database] {key} = {value!r}: expected a string")
    return driver, path


def read_compose(path: Path) -> dict:
    """The compose file as data (python3-yaml: anchors and merge keys included)."""
    try:
        import yaml
    except ImportError:  # a Depends of the package; only `init` needs it
        raise ConfigError(f"{path}: reading it needs python3-yaml (apt install python3-yaml)") \
            from None
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise ConfigError(f"{path}: no 'services:' mapping: expected a docker compose file")
    return data


def bind_mounts(service: dict, project_dir: Path) -> list[tuple[PurePosixPath, Path]]:
    """(container path, host path) of a service's bind mounts; named volumes are left out."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            parts = volume.split(":")
            if len(parts) < 2:
                continue
            source, target = parts[0], parts[1]
        elif isinstance(volume, dict):
            if volume.get("type", "bind") != "bind":
                continue
            source, target = str(volume.get("source", "")), str(volume.get("target", ""))
        else:
            continue
        if not (source.startswith(("/", "./", "../", "~")) or source in (".", "..")):
            continue  # a named volume: lives under /var/lib/docker/volumes
        host = Path(source).expanduser()
        host = host if host.is_absolute() else project_dir / host
        mounts.append((PurePosixPath(target), Path(_normpath(host))))
    return mounts


def _normpath(path: Path) -> str:
    import os

    return os.path.normpath(str(path))


def container_to_host(container_path: str, mounts: list[tuple[PurePosixPath, Path]],
                      storage: Path) -> Path:
    """Map a path inside the tracker container to the host, through the longest bind mount.

    Without a matching mount the image's default (/var/lib/torrust/tracker =
    storage/tracker/lib) is used.
    """
    inside = PurePosixPath(container_path)
    best: tuple[PurePosixPath, Path] | None = None
    for target, host in mounts:
        covers = inside == target or target in inside.parents
        if covers and (best is None or len(target.parts) > len(best[0].parts)):
            best = (target, host)
    if best is None:
        best = (CONTAINER_LIB, storage / HOST_LIB)
        if not (inside == CONTAINER_LIB or CONTAINER_LIB in inside.parents):
            raise ConfigError(
                f"database path {container_path!r} is outside the tracker's data directory "
                f"{CONTAINER_LIB} and no bind mount of the tracker service covers it")
    return best[1].joinpath(*inside.relative_to(best[0]).parts)


def parse_mysql_url(url: str, where: str) -> MysqlTarget:
    """Split `mysql://user:password@host:port/database` (percent-escapes decoded)."""
    parts = urlsplit(url)
    database = unquote(parts.path.lstrip("/"))
    try:
        port = parts.port or 3306
    except ValueError:
        raise ConfigError(f"{where}: MySQL URL has a bad port: expected "
                          "mysql://user:password@host:port/database") from None
    if parts.scheme != "mysql" or not parts.hostname or not database or not parts.username:
        raise ConfigError(f"{where}: {_redact(url)!r}: expected "
                          "mysql://user:password@host:port/database")
    return MysqlTarget(database=database, user=unquote(parts.username),
                       password=unquote(parts.password or ""), host=parts.hostname, port=port)


def _redact(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _find_compose(project_dir: Path) -> Path | None:
    for name in COMPOSE_NAMES:
        if (project_dir / name).is_file():
            return project_dir / name
    return None


def _tracker_service(services: dict) -> str | None:
    """The compose service that runs the tracker: by image, by config mount, else by name."""
    for name, svc in services.items():
        if isinstance(svc, dict) and "torrust/tracker" in str(svc.get("image", "")):
            return name
    for name, svc in services.items():
        volumes = svc.get("volumes") if isinstance(svc, dict) else None
        if any("/etc/torrust/tracker" in str(v) for v in volumes or []):
            return name
    return "tracker" if "tracker" in services else None


def read_deployment(storage: Path = DEFAULT_STORAGE) -> Deployment:
    """Read tracker.toml, .env and the compose file of the deployment around `storage`."""
    storage = Path(_normpath(storage.absolute()))
    project_dir = storage.parent
    toml_path = storage / "tracker/etc/tracker.toml"
    driver, db_path = read_tracker_database(toml_path)
    driver_from = source = f"{toml_path} [core.database]"
    env_file = project_dir / ".env"
    env = read_env_file(env_file) if env_file.is_file() else {}
    if env.get(ENV_PREFIX + "DRIVER"):
        driver = env[ENV_PREFIX + "DRIVER"]
        driver_from = f"{env_file} {ENV_PREFIX}DRIVER"
    if env.get(ENV_PREFIX + "PATH"):
        db_path = env[ENV_PREFIX + "PATH"]
        source = f"{env_file} {ENV_PREFIX}PATH"
    where = source
    if driver is None:
        driver = "sqlite3"  # the tracker's own default
    if driver not in ("sqlite3", "mysql"):
        raise ConfigError(f"{driver_from}: driver = {driver!r}: expected sqlite3 or mysql")
    if db_path is None:
        raise ConfigError(f"{toml_path}: [core.database] path is missing: expected the "
                          "database file (sqlite3) or mysql://user:password@host:port/db")

    compose_file = _find_compose(project_dir)
    services: dict = {}
    if compose_file is not None:
        services = read_compose(compose_file)["services"]
    tracker_service = _tracker_service(services)
    notes: list[str] = []
    sqlite_path = mysql = None
    if driver == "sqlite3":
        if db_path.startswith(("mysql://", "sqlite://")):
            raise ConfigError(f"{where}: driver sqlite3 with path {_redact(db_path)!r}: "
                              "expected a file path")
        svc = services.get(tracker_service) if tracker_service else None
        mounts = bind_mounts(svc, project_dir) if isinstance(svc, dict) else []
        sqlite_path = container_to_host(db_path, mounts, storage)
        if not sqlite_path.exists():
            notes.append(f"{sqlite_path} does not exist (yet): check-config will say so")
        others = sorted(p.name for p in sqlite_path.parent.glob("*.db") if p != sqlite_path) \
            if sqlite_path.parent.is_dir() else []
        if others:
            notes.append(f"the tracker uses {sqlite_path.name} ({where}); also in "
                         f"{sqlite_path.parent}: {', '.join(others)} (not backed up as a database)")
    else:
        target = parse_mysql_url(db_path, where)
        service = target.host if target.host in services else None
        mysql = MysqlTarget(database=target.database, user=target.user, password=target.password,
                            host=target.host, port=target.port, service=service)
        if not target.password:
            notes.append("the MySQL URL has no password: set one in the password file by hand")

    file_dirs = tuple(d for d, _ in FILE_CANDIDATES if (storage / d).is_dir())
    caddy = services.get("caddy") if isinstance(services.get("caddy"), dict) else None
    if caddy is not None and "caddy/data" not in file_dirs:
        named = [str(v) for v in caddy.get("volumes") or [] if ":/data" in str(v)]
        if named:
            notes.append(f"Caddy keeps its TLS certificates in a Docker volume ({named[0]}), "
                         "not under the storage directory: they are not in [files]")
    return Deployment(storage=storage, tracker_toml=toml_path, compose_file=compose_file,
                      env_file=env_file if env_file.is_file() else None, driver=driver,
                      database_source=source, sqlite_path=sqlite_path,
                      sqlite_container_path=db_path if driver == "sqlite3" else None,
                      mysql=mysql, tracker_service=tracker_service, file_dirs=file_dirs,
                      notes=tuple(notes))


def compose_command(dep: Deployment) -> str:
    """`docker compose -f FILE` for this deployment (the default path if none was found)."""
    file = dep.compose_file or dep.storage.parent / "docker-compose.yml"
    return f"docker compose -f {_quote(str(file))}"


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def render_config(dep: Deployment, *, backup_path: Path, password_file: Path | None) -> str:
    """A commented tracker-backup.conf for `dep` (the password itself is never in it)."""
    lines = [
        "; tracker-backup configuration written by `tracker-backup init`",
        f"; from {dep.tracker_toml}"
        + (f", {dep.env_file}" if dep.env_file else "")
        + (f", {dep.compose_file}" if dep.compose_file else ""),
        "; Every key: docs/configuration.md, tracker-backup(8). Check it with:",
        ";   tracker-backup check-config",
        "; After editing, apply it (schedule, timer, writable paths): systemctl daemon-reload",
    ]
    lines += [f"; NOTE: {note}" for note in dep.notes]
    lines += [
        "",
        "[backup]",
        "; Where snapshots go (a local disk, a mounted volume, NFS). Created if missing.",
        f"path = {backup_path}",
        ";require_mountpoint = no           ; yes: refuse to run unless path is a mount point",
        "",
        "[retention]",
        "keep_days = 7                      ; good snapshots younger than this are kept",
        "keep_last = 3                      ; and always the newest 3",
        "",
        "[schedule]",
        "enabled = yes",
        "on_calendar = daily                ; any systemd OnCalendar= expression",
        "randomized_delay = 10m",
    ]
    compose = compose_command(dep)
    service = dep.tracker_service or "tracker"
    if dep.sqlite_path is not None:
        lines += [
            "",
            "[sqlite]",
            f"; The tracker's database: {dep.sqlite_container_path} in the container",
            f"; ({dep.database_source}). Its name differs between deployments:",
            "; tracker.db in the deployer's template, sqlite3.db in the tracker's own default.",
            f"database = {dep.sqlite_path}",
            "max_lock = 2s                      ; longest write block for a rollback-journal DB",
            "; A rollback-journal database too large to copy within max_lock needs either",
            "; `tracker-backup sqlite-wal` once, or a maintenance window:",
            f";stop_command = {compose} stop {service}",
            f";start_command = {compose} start {service}",
        ]
    if dep.mysql is not None:
        m = dep.mysql
        lines += ["", "[mysql]", f"; The tracker's MySQL database ({dep.database_source}).",
                  f"database = {m.database}", f"user = {m.user}"]
        if m.service is not None:
            lines += [
                f"; The server runs in the compose service `{m.service}`: the client tools of",
                "; its container are used, so nothing MySQL needs to be installed on the host.",
                f"exec_prefix = {compose} exec -T {m.service}",
            ]
        else:
            lines += [f"host = {m.host}", f"port = {m.port}"]
        if password_file is not None:
            lines += ["; The password is in this file (mode 0600), never in this config.",
                      f"password_file = {password_file}"]
        lines += ["verify = dump                      ; restore = also load it into a scratch DB"]
    lines += [
        "",
        "[files]",
        "; Chosen files of the storage directory. Database files are always left out",
        "; (the live SQLite database and MySQL's data directory are backed up above).",
        f"root = {dep.storage}",
    ]
    for d, what in FILE_CANDIDATES:
        mark = "" if d in dep.file_dirs else " (not present now)"
        lines.append(f";   {d}/**: {what}{mark}")
    includes = [f"{d}/**" for d in dep.file_dirs] or ["tracker/etc/**"]
    lines += [f"include = {' '.join(includes)}", "exclude = tracker/log/**"]
    return "\n".join(lines) + "\n"
