"""The MySQL engine's binlog: streamed into the continuous archive, replayed for PITR."""
