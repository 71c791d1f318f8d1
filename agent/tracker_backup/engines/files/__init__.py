"""The files engine: chosen files of the tracker's storage directory as one tar archive.

select.py   what goes in and what is left out (asking the registry for live paths)
backup.py   the archive, re-reading files that change while read
verify.py   `verify` of a stored archive
restore.py  restore into a directory, refusing anything that could escape it
config.py   [files] and its parser; engine.py: the contract over all of these
"""
