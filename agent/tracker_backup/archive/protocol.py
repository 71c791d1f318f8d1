"""The contract between the archive runner and an engine's archiver.

An engine (SQLite today, MySQL's binlog next) provides one object meeting
`Archiver` per configured source. The runner (runner.py) drives it:

    archiver.open()                       attach to the source; continue or start a generation
    loop until SIGTERM:
        archiver.observe()                every ~10 ms, also while stalled: note when commits appear
        archiver.poll()                   every ~10 ms: append newly committed changes to its Shipper
        archiver.publish()                every publish_interval (0.5 s): make them durable
            (on OSError nothing was published: archiver.rewind(), backoff, retry)
        archiver.maintain()               every ~1 s: housekeeping (read-transaction cycle,
                                          checkpoints, replaced-source detection, new bases,
                                          compaction); may raise OSError like publish()
        archiver.status()                 for sd_notify STATUS= and the journal
    archiver.close()                      publish what is pending, let go of the source

How an engine uses the generic parts (store.py):

    arch = SourceArchive(backup_path, "mysql")          # <path>/archive/mysql/
    with arch.lock(): ...                               # one archiver per source
    gen = arch.current() or arch.new_generation(engine="mysql", reason="first start",
                                                identity={...}, origin="...")
    gen.publish_base(src_file, kind="sql", position={...}, seq=0, time=t)
    shipper = Shipper(gen)                               # resumes after the last published entry
    shipper.append(t, meta, data)                        # one committed change (an entry)
    shipper.publish()                                    # a level-0 segment; returns last seq
    shipper.rewind()                                     # after a failed publish
    shipper.last_published_meta                          # where to resume reading the source

Entries are the unit of restore: one whole commit each, never part of one.
`meta` must be a JSON object (the keys "seq" and "t" are reserved); `data`
is the engine's bytes. An engine documents both in docs/format.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass
class ArchiverStatus:
    """What an archiver reports: for STATUS=, journal fields and `status`."""

    source: str
    generation: str | None = None
    last_seq: int = 0                # last published entry
    last_time: float | None = None   # when that entry was seen (POSIX seconds)
    pending: int = 0                 # entries appended but not yet published
    lag_seconds: float = 0.0         # age of the oldest unpublished change (0 when none)
    stalled: str | None = None       # why shipping is stopped (backup path full, ...), or None
    extra: dict = field(default_factory=dict)

    def line(self) -> str:
        """One short line for STATUS=."""
        if self.stalled:
            return f"{self.source}: STALLED ({self.stalled}), {self.pending} entries waiting"
        return (f"{self.source}: seq {self.last_seq}, lag {self.lag_seconds:.1f}s, "
                f"pending {self.pending}")


@runtime_checkable
class Archiver(Protocol):
    """One source's continuous archiver (see the module docstring for the call order)."""

    source: str

    def open(self) -> None:
        """Attach to the source and the archive; may start a generation and take a base."""

    def observe(self) -> None:
        """Note the time new commits are seen, without reading or writing their data.

        Called every poll_interval even while shipping is stalled, so entries keep
        the time they were committed at; may do nothing.
        """

    def poll(self) -> int:
        """Append every change committed since the last poll; returns how many entries."""

    def publish(self) -> int:
        """Make appended entries durable as a segment; returns how many were published.

        Raises OSError when the backup path fails; then nothing was published.
        """

    def rewind(self) -> None:
        """Forget unpublished entries; the next poll() re-reads them from the source."""

    def maintain(self) -> None:
        """Periodic bounded housekeeping (about once a second)."""

    def status(self) -> ArchiverStatus:
        """Current progress and lag."""

    def close(self) -> None:
        """Publish what is pending (best effort) and release the source."""
