"""INI configuration → typed, validated dataclasses.

The file is read with the standard library's configparser; everything the rest
of the agent sees is a frozen dataclass with checked values. Every error names
the file, the section, the key, the bad value and what was expected, and
unknown sections or keys are errors: a typo must never silently disable a
backup.
"""

from __future__ import annotations

import configparser
import dataclasses
import difflib
import math
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracker_backup.errors import ConfigError

if TYPE_CHECKING:
    from tracker_backup.engines.files.config import FilesConfig
    from tracker_backup.engines.mysql.config import MysqlConfig
    from tracker_backup.engines.sqlite.config import SqliteConfig

DEFAULT_CONFIG_PATH = Path("/etc/tracker-backup/tracker-backup.conf")
CONFIG_ENV = "TRACKER_BACKUP_CONFIG"

_REQUIRED = object()
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}
_DURATION_UNITS = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")


@dataclass(frozen=True)
class BackupConfig:
    """[backup]: where snapshots go and how they are made."""

    path: Path = Path("/var/backups/tracker-backup")
    compression: str = "zstd"  # zstd | none
    compression_level: int = 3
    layout: str = "full"  # SQLite snapshots: full (a .db.zst each) | pages (page store)
    verify: str = "full"  # full = integrity_check, quick = quick_check
    rate_limit: float = 0.0  # MB/s (10**6 bytes) read from sources; 0 = unlimited
    require_mountpoint: bool = False

    @property
    def rate_limit_bytes(self) -> float:
        """The read-rate limit in bytes per second (0 = unlimited)."""
        return self.rate_limit * 1_000_000


@dataclass(frozen=True)
class RetentionConfig:
    """[retention]: which good snapshots to keep (union of the rules)."""

    keep_days: int = 7
    keep_last: int = 3
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0


@dataclass(frozen=True)
class ScheduleConfig:
    """[schedule]: drives the systemd timer (through the generator)."""

    enabled: bool = True
    on_calendar: str = "daily"
    randomized_delay: float = 600.0
    drill_on_calendar: str = "weekly"


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]: backup health for Prometheus (both off by default)."""

    textfile: Path | None = None  # node_exporter textfile-collector file, rewritten after each run
    listen: str | None = None  # loopback host:port where the archiver serves /metrics


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    file: Path
    backup: BackupConfig = field(default_factory=BackupConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # Each configured engine's section (engines/<kind>/config.py), in backup order.
    engines: Mapping[str, Any] = field(default_factory=dict)

    def section(self, kind: str) -> Any:
        """The parsed section of one engine, or None when it is not configured."""
        return self.engines.get(kind)

    def with_section(self, kind: str, section: Any) -> Config:
        """A copy with one engine's section replaced (e.g. restore with another account)."""
        return dataclasses.replace(self, engines={**self.engines, kind: section})

    @property
    def source_names(self) -> list[str]:
        """Names of the configured sources, in backup order."""
        return list(self.engines)

    # Typed shortcuts for the built-in engines' sections.
    @property
    def sqlite(self) -> SqliteConfig | None:
        return self.engines.get("sqlite")

    @property
    def mysql(self) -> MysqlConfig | None:
        return self.engines.get("mysql")

    @property
    def files(self) -> FilesConfig | None:
        return self.engines.get("files")


def default_config_path() -> Path:
    """The config path: $TRACKER_BACKUP_CONFIG, else the packaged default."""
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG_PATH


def closest(word: str, choices: list[str], cutoff: float = 0.6) -> str | None:
    """The valid name a misspelled one most likely meant (difflib), or None."""
    matches = difflib.get_close_matches(word.lower(), choices, n=1, cutoff=cutoff)
    return matches[0] if matches else None


class Duration(float):
    """Seconds that print the way the config wrote them (`10m`, `2s`, `500ms`).

    A float for every computation; str() gives the text as written in the file, or for
    a default the shortest exact form (600 → 10m), so check-config shows `max_lock = 2s`.
    """

    text: str

    def __new__(cls, seconds: float, text: str | None = None) -> Duration:
        obj = super().__new__(cls, seconds)
        obj.text = text.strip() if text else format_duration(seconds)
        return obj

    def __str__(self) -> str:
        return self.text

    def __format__(self, spec: str) -> str:
        return self.text if not spec else float(self).__format__(spec)

    def __reduce__(self):
        return (Duration, (float(self), self.text))


def format_duration(seconds: float) -> str:
    """The shortest exact duration text: 600 → 10m, 2 → 2s, 0.5 → 500ms, 0 → 0."""
    if seconds == 0:
        return "0"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    ms = seconds * 1000
    if float(ms).is_integer():
        return f"{int(ms)}ms"
    return f"{seconds:g}s"


def parse_duration(text: str) -> float:
    """Parse `2s`, `10m`, `1.5h`, `500ms` or a plain number of seconds."""
    m = _DURATION_RE.match(text.lower())
    if not m or m.group(2) not in ("", *_DURATION_UNITS):
        raise ValueError(text)
    value = float(m.group(1)) * _DURATION_UNITS.get(m.group(2), 1)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


class Section:
    """Reads one section's keys, tracking which were used, naming every error."""

    def __init__(self, file: Path, parser: configparser.ConfigParser, name: str):
        self.file = file
        self.name = name
        self.items = dict(parser.items(name)) if parser.has_section(name) else {}
        self.used: set[str] = set()

    def error(self, key: str, value: str, expected: str) -> ConfigError:
        return ConfigError(
            f"{self.file}: [{self.name}] {key} = {value!r}: expected {expected}"
        )

    def raw(self, key: str, default: object) -> str | object:
        self.used.add(key)
        if key in self.items:
            return self.items[key].strip()
        if default is _REQUIRED:
            # A misspelling of this very key is the likelier mistake: name it first.
            typo = closest(key, [k for k in self.items if k not in self.used], cutoff=0.75)
            if typo:
                raise ConfigError(f"{self.file}: [{self.name}] unknown key {typo!r}: did you "
                                  f"mean {key!r}? ({key} is required)")
            raise ConfigError(f"{self.file}: [{self.name}] {key} is missing: it is required")
        return default

    def string(self, key: str, default: object = _REQUIRED) -> str | None:
        value = self.raw(key, default)
        if value == "" and default is _REQUIRED:
            raise self.error(key, "", "a non-empty value")
        if value == "" and default is None:
            return None  # `key =` with nothing after it means "not set"
        return value  # type: ignore[return-value]

    def path(self, key: str, default: object = _REQUIRED) -> Path | None:
        value = self.raw(key, default)
        if value is None or isinstance(value, Path):
            return value
        if value == "" and default is None:
            return None
        if not str(value).startswith("/"):
            raise self.error(key, str(value), "an absolute path")
        if any(ord(c) < 32 or ord(c) == 127 for c in str(value)):
            # A NUL cannot reach the kernel at all; other control characters are typos.
            raise self.error(key, str(value), "an absolute path without control characters")
        return Path(os.path.normpath(str(value)))

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if isinstance(value, bool):
            return value
        low = str(value).lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise self.error(key, str(value), "yes or no")

    def integer(self, key: str, default: int, lo: int = 0, hi: int = 1_000_000) -> int:
        value = self.raw(key, default)
        if isinstance(value, int):
            return value
        try:
            number = int(str(value), 10)
        except ValueError:
            raise self.error(key, str(value), f"a whole number from {lo} to {hi}") from None
        if not lo <= number <= hi:
            raise self.error(key, str(value), f"a whole number from {lo} to {hi}")
        return number

    def number(self, key: str, default: float, lo: float = 0.0, hi: float = 1e9) -> float:
        value = self.raw(key, default)
        if isinstance(value, float | int):
            return float(value)
        try:
            number = float(str(value))
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and lo <= number <= hi):
            raise self.error(key, str(value), f"a number from {lo:g} to {hi:g}")
        return number

    def duration(self, key: str, default: float, lo: float = 0.0,
                 hi: float = 86400 * 366) -> Duration:
        value = self.raw(key, default)
        if isinstance(value, float | int):
            return Duration(float(value))
        expected = f"a duration such as 2s, 500ms, 10m or 1h (from {lo:g}s to {hi:g}s)"
        try:
            seconds = parse_duration(str(value))
        except ValueError:
            raise self.error(key, str(value), expected) from None
        if not lo <= seconds <= hi:
            raise self.error(key, str(value), expected)
        return Duration(seconds, str(value))

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = str(self.raw(key, default)).lower()
        if value not in choices:
            raise self.error(key, value, " or ".join(choices))
        return value

    def words(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw(key, default)
        if isinstance(value, tuple):
            return value
        return tuple(str(value).split())

    def command(self, key: str) -> tuple[str, ...]:
        value = self.raw(key, "")
        try:
            argv = tuple(shlex.split(str(value)))
        except ValueError as exc:
            raise self.error(key, str(value), f"a command line ({exc})") from None
        return argv

    def identifier(self, key: str, default: object = _REQUIRED) -> str | None:
        value = self.string(key, default)
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_$]{1,64}", value):
            raise self.error(key, value, "a name of letters, digits, _ or $ (at most 64)")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.items) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            guess = closest(unknown[0], sorted(self.used))
            hint = f"did you mean {guess!r}? " if guess else ""
            raise ConfigError(
                f"{self.file}: [{self.name}] unknown key {unknown[0]!r}: {hint}"
                f"expected one of {known}"
            )


CORE_SECTIONS = ("backup", "retention", "schedule", "metrics")
REQUIRED = _REQUIRED  # marks a key without default, for engines' section parsers


def load_config(path: Path | str | None = None) -> Config:
    """Read and validate the configuration file; raise ConfigError on any problem."""
    file = Path(path) if path is not None else default_config_path()
    parser = configparser.ConfigParser(
        interpolation=None,
        inline_comment_prefixes=(";",),
        comment_prefixes=("#", ";"),
        strict=True,
        empty_lines_in_values=False,
        default_section="\0no-defaults",
    )
    try:
        with open(file, encoding="utf-8") as fh:
            parser.read_file(fh)
    except FileNotFoundError:
        raise ConfigError(f"{file}: configuration file not found") from None
    except PermissionError:
        raise ConfigError(f"{file}: configuration file is not readable (permission denied)") from None
    except IsADirectoryError:
        raise ConfigError(f"{file}: is a directory, expected a configuration file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not valid UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except configparser.Error as exc:
        raise ConfigError(f"{file}: {_describe_parse_error(exc)}") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read configuration: {exc.strerror}") from None

    from tracker_backup import engines  # the engines parse their own sections

    known = (*CORE_SECTIONS, *engines.kinds())
    for name in parser.sections():
        if name not in known:
            guess = closest(name, list(known))
            hint = f"did you mean [{guess}]? " if guess else ""
            raise ConfigError(
                f"{file}: unknown section [{name}]: {hint}expected one of "
                + ", ".join(f"[{s}]" for s in known)
            )

    config = Config(
        file=file,
        backup=_backup(Section(file, parser, "backup")),
        retention=_retention(Section(file, parser, "retention")),
        schedule=_schedule(Section(file, parser, "schedule")),
        metrics=_metrics(Section(file, parser, "metrics")),
        engines={e.kind: e.parse_section(Section(file, parser, e.kind))
                 for e in engines.ENGINES if parser.has_section(e.kind)},
    )
    if not config.source_names:
        raise ConfigError(
            f"{file}: no source configured: expected at least one of "
            + ", ".join(f"[{k}]" for k in engines.kinds())
        )
    return config


def _describe_parse_error(exc: configparser.Error) -> str:
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"line {exc.lineno}: a key before any [section] header: expected [backup] or similar"
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"line {exc.lineno}: section [{exc.section}] appears twice"
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"line {exc.lineno}: [{exc.section}] {exc.option} is set twice"
    if isinstance(exc, configparser.ParsingError):
        lines = ", ".join(str(n) for n, _ in exc.errors[:3])
        return f"line {lines}: not of the form 'key = value'"
    return str(exc).splitlines()[0]


def _backup(s: Section) -> BackupConfig:
    d = BackupConfig()
    cfg = BackupConfig(
        path=s.path("path", d.path),
        compression=s.choice("compression", d.compression, ("zstd", "none")),
        compression_level=s.integer("compression_level", d.compression_level, 1, 19),
        layout=s.choice("layout", d.layout, ("full", "pages")),
        verify=s.choice("verify", d.verify, ("full", "quick")),
        rate_limit=s.number("rate_limit", d.rate_limit, 0.0, 100_000.0),
        require_mountpoint=s.boolean("require_mountpoint", d.require_mountpoint),
    )
    if cfg.path == Path("/"):
        raise s.error("path", "/", "a dedicated directory, not the root directory")
    s.finish()
    return cfg


def _retention(s: Section) -> RetentionConfig:
    d = RetentionConfig()
    cfg = RetentionConfig(
        keep_days=s.integer("keep_days", d.keep_days, 0, 100_000),
        keep_last=s.integer("keep_last", d.keep_last, 1, 100_000),
        keep_daily=s.integer("keep_daily", d.keep_daily, 0, 100_000),
        keep_weekly=s.integer("keep_weekly", d.keep_weekly, 0, 100_000),
        keep_monthly=s.integer("keep_monthly", d.keep_monthly, 0, 100_000),
    )
    s.finish()
    return cfg


def validate_calendar(expr: str) -> str | None:
    """Return an error text if systemd rejects `expr` as OnCalendar=, else None.

    Uses `systemd-analyze calendar` when it is installed (the authority on the
    syntax); without it only emptiness and control characters are checked.
    """
    if not expr or any(ord(c) < 32 for c in expr):
        return "an OnCalendar= expression such as daily or *-*-* 03:00:00"
    from tracker_backup import systemd  # systemd-analyze, run through procs

    answer = systemd.analyze_calendar(expr)
    if answer is not None and answer[0] != 0:
        return "an OnCalendar= expression systemd accepts (see systemd.time(7))"
    return None


def _schedule(s: Section) -> ScheduleConfig:
    d = ScheduleConfig()
    cfg = ScheduleConfig(
        enabled=s.boolean("enabled", d.enabled),
        on_calendar=str(s.raw("on_calendar", d.on_calendar)),
        randomized_delay=s.duration("randomized_delay", d.randomized_delay, 0, 86400 * 7),
        drill_on_calendar=str(s.raw("drill_on_calendar", d.drill_on_calendar)),
    )
    for key in ("on_calendar", "drill_on_calendar"):
        problem = validate_calendar(getattr(cfg, key))
        if problem:
            raise s.error(key, getattr(cfg, key), problem)
    s.finish()
    return cfg


def _metrics(s: Section) -> MetricsConfig:
    from tracker_backup.metrics.address import EXPECTED, parse_listen

    textfile = s.path("textfile", None)
    if textfile is not None and not textfile.name.endswith(".prom"):
        raise s.error("textfile", str(textfile),
                      "a file name ending in .prom (node_exporter reads only *.prom)")
    listen = s.string("listen", None)
    if listen is not None:
        try:
            parse_listen(listen)
        except ValueError as exc:
            raise s.error("listen", listen, f"{EXPECTED} ({exc})") from None
    cfg = MetricsConfig(textfile=textfile, listen=listen)
    s.finish()
    return cfg


def render_config(config: Config) -> str:
    """The effective configuration as INI text (defaults filled in)."""
    lines = [f"; effective configuration from {config.file}"]
    sections = {"backup": config.backup, "retention": config.retention,
                "schedule": config.schedule, "metrics": config.metrics, **config.engines}
    for name, section in sections.items():
        lines.append(f"\n[{name}]")
        for key, value in vars(section).items():
            if isinstance(value, tuple):
                is_command = key.endswith("command") or key == "exec_prefix"
                text = shlex.join(value) if is_command else " ".join(value)
            elif isinstance(value, bool):
                text = "yes" if value else "no"
            elif value is None:
                text = ""
            else:
                text = str(value)
            lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"
