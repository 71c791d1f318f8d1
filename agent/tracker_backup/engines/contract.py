"""The contract every engine meets, and the small typed values that cross it.

An engine is everything about one kind of thing to back up (sqlite, mysql,
files): its config section, its backup into staging, the check of its stored
artifacts, its restore and drill, what its sandbox needs, and any commands of
its own. The rest of the agent never branches on the kind: it asks the
registry (engines/__init__.py) for the engines and calls them through this
contract.

An engine knows nothing of the store's layout beyond "write your artifacts in
this directory" (RunContext.staging), and never talks to systemd directly: it
reports progress through RunContext.progress.
"""

from __future__ import annotations

import argparse
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tracker_backup.artifacts import Artifact
from tracker_backup.config import BackupConfig
from tracker_backup.errors import RunFailed, UsageError
from tracker_backup.manifest import SourceEntry, source_entry
from tracker_backup.preflight import Findings
from tracker_backup.throttle import RateLimiter

if TYPE_CHECKING:
    from tracker_backup.archive.protocol import Archiver
    from tracker_backup.config import Config, Section
    from tracker_backup.store import Snapshot


@dataclass
class RunContext:
    """What an engine may use during one backup run."""

    staging: Path  # write artifacts here (relative paths become manifest paths)
    backup: BackupConfig
    limiter: RateLimiter
    progress: Callable[[str], None] = lambda text: None
    # Durable note of a stopped tracker (see window.py); None when not kept.
    window_journal: Path | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("tracker_backup"))


@dataclass
class SourceResult:
    """What one engine's backup made: artifacts plus facts for its manifest entry."""

    name: str
    kind: str
    origin: str
    method: str
    artifacts: list[Artifact]
    details: dict = field(default_factory=dict)

    def to_json(self) -> SourceEntry:
        """The manifest entry (MANIFEST.json "sources"; see docs/format.md)."""
        return source_entry({**self.details, "artifacts": [a.path for a in self.artifacts]},
                            name=self.name, kind=self.kind, origin=self.origin,
                            method=self.method)


@dataclass
class Part:
    """One source of a stored snapshot: its manifest entry and its artifacts."""

    name: str
    kind: str
    source: SourceEntry  # the manifest entry, as stored
    artifacts: list[Artifact]


@dataclass
class RestoreAction:
    """What restoring one part will do, for the operator to read first."""

    kind: str
    target: str
    replaces: list[str] = field(default_factory=list)  # existing things changed or moved aside
    notes: list[str] = field(default_factory=list)
    # Why the restore would be refused as things stand (e.g. a process has the database
    # open): printed as BLOCKED, and a dry run with any exits 1.
    blocked: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable description, one line per fact."""
        out = [f"{self.kind}: restore into {self.target}"]
        out += [f"  will replace: {r}" for r in self.replaces]
        out += [f"  {n}" for n in self.notes]
        out += [f"  BLOCKED: {b}" for b in self.blocked]
        if not self.replaces:
            out.append("  replaces nothing (target is new or identical)")
        return out


@dataclass
class RestoreResult:
    """What restoring one part did (engines subclass it with their own facts)."""

    kind: str
    target: str
    bytes: int
    seconds: float

    def describe(self) -> str:
        """One clause of the restore's summary line."""
        return f"{self.kind} -> {self.target} ({self.bytes} bytes)"


@dataclass
class RestoreContext:
    """What a restore step is given when it runs."""

    stamp: str  # UTC time of the restore, for names of moved-aside files
    # The store's maintenance-window note (window.py); None when the store is read-only.
    window_journal: Path | None = None


@dataclass
class RestoreStep:
    """One part's plan and the call that carries it out."""

    part: Part
    action: RestoreAction
    run: Callable[[RestoreContext], RestoreResult]
    # Set when the step changes existing data that only --force may replace: the error text.
    needs_force: str | None = None


@dataclass
class DrillResult:
    """One part restored into scratch space and checked, for .state/checks.json."""

    summary: str
    facts: dict[str, Any] = field(default_factory=dict)  # bytes, row_counts, members ...
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"seconds": self.seconds, **self.facts, "summary": self.summary}


@dataclass
class Collected:
    """What an engine's store-side garbage collection did (or, dry, would do)."""

    what: str  # e.g. "page store"
    deleted: int  # objects deleted (or that would be)
    freed_bytes: int
    kept: int  # objects still referenced
    problem: str | None = None  # why nothing was deleted

    def line(self, dry_run: bool) -> str:
        """One line for prune's output."""
        if self.problem:
            return f"{self.what}: {self.problem}"
        verb = "would delete" if dry_run else "deleted"
        return (f"{self.what}: {verb} {self.deleted} unreferenced objects "
                f"({self.freed_bytes} bytes), {self.kept} still referenced")


class SnapshotDamaged(RunFailed):
    """The snapshot's own bytes are bad (not the environment): a drill marks it failed."""


# What the units' ProtectHome= hides (SandboxNeeds.home_read opens paths in them).
HOME_DIRS = ("/home", "/root", "/run/user")


@dataclass
class SandboxNeeds:
    """What the systemd generator must open up in the unit's sandbox for one engine."""

    read_write: list[Path] = field(default_factory=list)  # written by the backup run
    read: list[Path] = field(default_factory=list)  # only read (decides ProtectHome=)
    credentials: dict[str, Path] = field(default_factory=dict)  # LoadCredential= name → file
    network_hosts: list[str] = field(default_factory=list)  # TCP peers; none = PrivateNetwork
    # Only read, inside /home, /root or /run/user: bound read-only into ProtectHome=tmpfs
    # (the rest of the home directories stays hidden).
    home_read: list[Path] = field(default_factory=list)


Register = Callable[[Any], None]  # register(subparsers): adds one command's parser


class Engine(ABC):
    """One kind of thing to back up. Subclasses live in engines/<kind>/engine.py.

    Methods take the whole Config and read their own section with
    `config.section(self.kind)`; a method that may run without that section
    (restore to an explicit target, verify, drill) says so.
    """

    kind: ClassVar[str]  # the config section, the manifest entry's "kind", the --kind value

    # -- configuration -----------------------------------------------------
    @abstractmethod
    def parse_section(self, section: Section) -> Any:
        """The typed, validated section (a frozen dataclass); ConfigError on bad input."""

    def preflight(self, config: Config) -> Findings:
        """check-config: problems that would make a backup fail (each with its fix),
        warnings, and notes on what was looked at (lines without the "[kind] " prefix)."""
        del config
        return Findings()

    # -- backup --------------------------------------------------------------
    @abstractmethod
    def backup(self, config: Config, ctx: RunContext) -> SourceResult:
        """Make a consistent, checked copy into ctx.staging; raise SourceError on failure."""

    def owned_paths(self, config: Config) -> dict[str, str]:
        """Live paths this engine copies itself (path → why), which no other may copy raw."""
        del config
        return {}

    def raw_copy_hazard(self, path: Path, is_dir: bool) -> str | None:
        """Why a raw file copy of `path` would be useless or torn (e.g. a live database)."""
        del path, is_dir
        return None

    # -- stored snapshots --------------------------------------------------------
    @abstractmethod
    def verify_stored(self, snapshot_dir: Path, entry: dict, artifacts: list[Artifact],
                      level: str, scratch: Path) -> list[str]:
        """Problems with stored artifacts beyond their hashes (no config needed; empty = good)."""

    def restore_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add this engine's own `restore` options (e.g. mysql --database)."""
        del parser

    def check_restore_args(self, args: argparse.Namespace, selected: bool) -> None:
        """Refuse options that do not fit (UsageError), before anything is read."""
        del args, selected

    @abstractmethod
    def plan_restore(self, config: Config, snap: Snapshot, part: Part,
                     args: argparse.Namespace) -> RestoreStep:
        """Resolve the target (args.to, the configured one), plan it; reads only."""

    def plan_restore_at(self, config: Config, at: str, to: Path | None,
                        args: argparse.Namespace | None = None) -> RestoreStep:
        """`restore --at TIME|latest`: a step rebuilding this kind from its continuous archive.

        `args` carries the engine's own restore options (restore_arguments), e.g. mysql's
        --database and --mysql-user.
        """
        del config, at, to, args
        raise UsageError(f"--at: there is no continuous archive for {self.kind}")

    @abstractmethod
    def drill(self, config: Config, snap: Snapshot, part: Part, scratch: Path) -> DrillResult:
        """Restore into scratch space and check it; SnapshotDamaged if the bytes are bad."""

    # -- systemd ---------------------------------------------------------------
    @abstractmethod
    def sandbox(self, config: Config) -> SandboxNeeds:
        """What the backup unit's sandbox must allow for this (configured) engine."""

    # -- extensions --------------------------------------------------------------
    def commands(self) -> Sequence[Register]:
        """Engine-only commands, each a register(subparsers) (e.g. sqlite-wal)."""
        return ()

    def export(self, snap: Snapshot, part: Part, target: Path) -> int:
        """Write the stored database of `part` to new file `target`, checked; its size."""
        del snap, part, target
        raise UsageError(f"export: {self.kind} snapshots cannot be exported as one file")

    # -- storage beside the snapshots --------------------------------------------
    def space_needed(self, config: Config) -> tuple[int, str] | None:
        """Free bytes a backup run of this engine needs on the backup path, and why (None:
        cannot say). Said by check-config and by run before anything is written."""
        del config
        return None

    def stored_bytes(self, backup_path: Path) -> int:
        """Bytes this engine keeps in the backup path outside snapshot directories."""
        del backup_path
        return 0

    def collect_garbage(self, backup_path: Path, *, dry_run: bool,
                        deleting: Sequence[str] = ()) -> Collected | None:
        """After retention, under the store's lock: delete (dry_run: count) what no kept
        snapshot needs any more; `deleting` = snapshots a dry run would delete. None:
        nothing of this engine's lives outside snapshots."""
        del backup_path, dry_run, deleting
        return None

    def archive_report(self, config: Config, snapshots: list[Snapshot]) -> dict | None:
        """The continuous archive's range, lag and warnings for list/status (None: no archive)."""
        del config, snapshots
        return None

    def archive_drill(self, config: Config, scratch: Path) -> dict | None:
        """Restore the continuous archive to a random second into scratch and check it."""
        del config, scratch
        return None

    def archive_prune(self, config: Config, kept: list[Snapshot], dry_run: bool) -> list[str]:
        """Retention of the continuous archive, given the snapshots kept; lines of what went."""
        del config, kept, dry_run
        return []

    def archiver(self, config: Config) -> Archiver | None:
        """The engine's continuous archiver (archive/protocol.py), if it offers one and the
        config enables it; archive/runner.py drives it engine-neutrally. Default: none.
        """
        del config
        return None
