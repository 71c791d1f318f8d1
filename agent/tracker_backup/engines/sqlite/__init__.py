"""Everything about SQLite: config section, copy, check, verify, restore, drill, WAL mode.

header.py      what a database file is (magic, journal mode, side files)
side_files.py  -wal/-shm/-journal keep the database's owner and mode
copy.py        one consistent copy through the online-backup API
check.py       integrity check, tables, row counts of a copy
backup.py      the backup: copy (locked, WAL or in a maintenance window), check, store
verify.py      `verify` of a stored copy
holders.py     which processes have the database open
restore.py     restore to a path or in place; the drill uses it too
wal.py         the `sqlite-wal` command
config.py      [sqlite] and its parser; engine.py: the contract over all of these

archive/       the continuous WAL archiver and point-in-time restore (run by
               tracker_backup/archive/runner.py; offered through Engine.archiver)
Will live here (next issue): pages/ — the incremental page store.
"""
