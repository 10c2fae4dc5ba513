"""Throughput of the consume path next to pgbench running the same SQL on the same server."""
