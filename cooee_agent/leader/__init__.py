"""The reference Leader: ingest pipeline and the persistent registry of hosts and agents."""
