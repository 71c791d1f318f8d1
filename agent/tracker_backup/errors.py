"""Error types and the documented exit codes.

Every failure the operator can cause or fix maps to one exception class, and
every exception class maps to one exit code, so scripts and systemd can tell a
broken config from a failed backup from a run that is already in progress.
"""

EXIT_OK = 0
EXIT_RUN_FAILED = 1  # a backup, verification, prune or restore failed
EXIT_USAGE = 2  # bad command line or bad configuration: nothing was attempted
EXIT_LOCKED = 3  # another run holds the lock on the backup path


class TrackerBackupError(Exception):
    """Base class: an expected failure with an operator-readable message."""

    exit_code = EXIT_RUN_FAILED


class ConfigError(TrackerBackupError):
    """The configuration file is missing, unreadable or invalid."""

    exit_code = EXIT_USAGE


class UsageError(TrackerBackupError):
    """The command line asks for something that cannot be done."""

    exit_code = EXIT_USAGE


class LockHeld(TrackerBackupError):
    """Another tracker-backup process holds the backup path's lock."""

    exit_code = EXIT_LOCKED


class RunFailed(TrackerBackupError):
    """A backup step failed; nothing was published by this run."""


class SourceError(RunFailed):
    """A source could not produce a consistent, verified artifact."""


class VerifyFailed(RunFailed):
    """A stored or staged artifact failed verification."""
