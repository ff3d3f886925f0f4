"""Connection arguments for the local Airflow's metadata database, which
:func:`recpipe.airflow_runner.airflow_environment` names in ``sql_alchemy_connect_args``.

Airflow imports this while it configures its database engine, so it imports nothing of recpipe.
SQLite gives up on a lock after 5 s by default; the api-server then answers 500 or 503 while the
scheduler or a task commits (measured: a write lock held 12 s failed a backfill POST after 5 s).
Here every process waits up to a minute instead. Any other database gets no extra arguments.
"""

from __future__ import annotations

from typing import Any

SQLITE_LOCK_TIMEOUT_S = 60


def __getattr__(name: str) -> Any:
    if name != "CONNECT_ARGS":
        raise AttributeError(name)
    from airflow.configuration import conf

    if conf.get("database", "sql_alchemy_conn").startswith("sqlite"):
        return {"timeout": SQLITE_LOCK_TIMEOUT_S}
    return {}
