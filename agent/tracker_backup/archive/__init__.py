"""Continuous archiving: ship every committed change of a source into the backup path.

Engine-neutral pieces live here; each engine brings its own `Archiver`
(engines/sqlite/archive/ for SQLite's WAL, later MySQL's binlog):

- protocol.py  the `Archiver` protocol every engine's archiver meets, `ArchiverStatus`
- segment.py   one segment file: entries in one zstd frame, trailer, chain hash; write and read
- store.py     the archive layout in the backup path: generations, bases, segments, the
               `Shipper` an archiver appends entries to (publishing, compaction, rewind)
- runner.py    the long-running loop: SIGTERM, sd_notify READY/WATCHDOG/STATUS, backoff

The on-disk format is documented in docs/format.md, "Continuous archive".
"""
