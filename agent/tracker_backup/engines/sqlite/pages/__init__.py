"""Page store for SQLite snapshots (layout = pages); docs/format.md, "Page store".

objects.py    content-addressed page-group objects (write, read, check)
index.py      a snapshot's page index: runs of (object, slot) covering every page
walindex.py   the WAL and wal-index (-shm) parsing behind consistent page reads
live.py       reading one consistent page set from a live database
writer.py     building and writing the next snapshot from changed pages
reassemble.py reassembling a snapshot into a plain SQLite file, verifying objects
gc.py         mark and sweep of objects no kept snapshot references
"""
