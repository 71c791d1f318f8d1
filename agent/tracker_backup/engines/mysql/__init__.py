"""Everything about MySQL/MariaDB: client, dump, verify, restore, drill.

client.py     finds the tools, passes credentials on stdin, runs queries
server.py     what the server holds and what the account may do
dump_scan.py  scans a dump as it streams (tables, rows, binlog position, trailer)
backup.py     the hot mysqldump --single-transaction, streamed into the artifact
load.py       the one way a dump is loaded through the client (restore, drill, check)
scratch.py    scratch databases for `verify = restore` and the drill
preflight.py  check-config: missing privileges with the GRANT that fixes them
verify.py     `verify` of a stored dump
restore.py    restore into a named database; the drill
config.py     [mysql] and its parser; engine.py: the contract over all of these

Will live here (next issue): binlog/ — the binlog archiver (run by tracker_backup/archive/).
"""
