"""Continuous archiving of a live SQLite database in WAL mode.

- wal.py       read the -wal and -shm files directly (stdlib, read-only)
- archiver.py  the SQLite `Archiver`: follows committed WAL frames into the archive
- restore.py   point-in-time restore (base + entries up to a time) and `changed_pages`
- position.py  the WAL position of a read transaction (ties a run's snapshot to the archive)
"""
