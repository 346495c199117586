"""A DuckDB connection for conditions typed on the command line (--where): no file or network access.

A --where is pasted into SQL, so it can be any SQL: `(SELECT ... FROM read_text('/etc/passwd'))`,
or `1=1); COPY ... TO '...'; SELECT ... (1=1`. With external access off DuckDB refuses every file,
extension and network access, and nothing can turn it back on in that connection.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.store.query import connect_results


def locked_connection(results_dir: Path):
    """connect_results with files and the network off: the tables `trials` and `epochs` only.

    They are in memory (Arrow), so queries on them work; the `examples` view reads Parquet files
    when queried, so a condition that uses it is refused like any other file access.
    """
    connection = connect_results(results_dir)
    connection.execute("SET enable_external_access = false")
    connection.execute("SET lock_configuration = true")  # no other setting changes either
    return connection
