"""The one place where DuckDB and BigQuery differ for the Python stages.

Every other module talks to a :class:`Warehouse`: run SQL with named parameters (``@name``,
BigQuery's style; values are always bound, never formatted into SQL), read results as pandas,
write a DataFrame to a table, and run several statements as one transaction.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import pandas as pd

from recpipe.settings import Settings

_PARAM = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class WarehouseBusyError(RuntimeError):
    """The warehouse file is held by another writer for longer than we were willing to wait."""


def identifier(name: str) -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise: identifiers are never data."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


class Warehouse(Protocol):
    kind: str

    def table(self, schema: str, name: str) -> str: ...

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...

    def query_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame: ...

    def write_df(self, df: pd.DataFrame, schema: str, name: str) -> None: ...

    def columns(self, schema: str, name: str) -> list[str]: ...

    def table_exists(self, schema: str, name: str) -> bool: ...

    def transaction(self) -> contextlib.AbstractContextManager[None]: ...

    def close(self) -> None: ...


class DuckDBWarehouse:
    """A read-write connection to the embedded DuckDB file.

    DuckDB allows one writer process: when another process holds the file we wait, retrying,
    up to ``lock_timeout_s`` and then fail with a message naming the file.
    """

    kind = "duckdb"

    def __init__(self, path: str, *, lock_timeout_s: float = 120.0) -> None:
        import duckdb

        self.path = path
        deadline = time.monotonic() + lock_timeout_s
        warned = False
        while True:
            try:
                self._con = duckdb.connect(path)
                break
            except duckdb.IOException as err:
                if "lock" not in str(err).lower():
                    raise
                if time.monotonic() >= deadline:
                    raise WarehouseBusyError(
                        f"warehouse {path} is locked by another process for more than "
                        f"{lock_timeout_s:.0f}s; is another recpipe run or dbt still writing?"
                    ) from err
                if not warned:
                    print(f"waiting for the lock on {path} (held by another process)...")
                    warned = True
                time.sleep(1.0)
        self._con.execute("set timezone = 'UTC'")

    def table(self, schema: str, name: str) -> str:
        return f"{identifier(schema)}.{identifier(name)}"

    @staticmethod
    def _bind(sql: str, params: Mapping[str, Any] | None) -> tuple[str, dict | None]:
        """Rewrite ``@name`` to DuckDB's ``$name`` and pass only the parameters used."""
        used = set(_PARAM.findall(sql))
        missing = used - set(params or {})
        if missing:
            raise KeyError(f"SQL parameter(s) without a value: {', '.join(sorted(missing))}")
        bound = {k: v for k, v in (params or {}).items() if k in used}
        return _PARAM.sub(r"$\1", sql), bound or None

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._con.execute(*self._bind(sql, params))

    def query_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        return self._con.execute(*self._bind(sql, params)).df()

    def write_df(self, df: pd.DataFrame, schema: str, name: str) -> None:
        """Create or replace ``schema.name`` with the rows of ``df``."""
        self._con.execute(f"create schema if not exists {identifier(schema)}")
        self._con.register("_recpipe_frame", df)
        try:
            self._con.execute(
                f"create or replace table {self.table(schema, name)} as "
                "select * from _recpipe_frame"
            )
        finally:
            self._con.unregister("_recpipe_frame")

    def columns(self, schema: str, name: str) -> list[str]:
        rows = self._con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            [schema, name],
        ).fetchall()
        return [r[0] for r in rows]

    def table_exists(self, schema: str, name: str) -> bool:
        return bool(self.columns(schema, name))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self._con.execute("begin transaction")
        try:
            yield
        except BaseException:
            self._con.execute("rollback")
            raise
        self._con.execute("commit")

    def close(self) -> None:
        self._con.close()


def connect(settings: Settings) -> Warehouse:
    """Open the warehouse chosen by ``settings.warehouse``."""
    if settings.warehouse == "duckdb":
        settings.home.mkdir(parents=True, exist_ok=True)
        return DuckDBWarehouse(str(settings.duckdb_path))
    raise NotImplementedError(
        "RECPIPE_WAREHOUSE=bigquery: the Python stages on BigQuery are not built yet (issue 6); "
        "the dbt project's bigquery target parses."
    )


@contextlib.contextmanager
def session(settings: Settings) -> Iterator[Warehouse]:
    """Open the warehouse for one unit of work and always close it (releases DuckDB's lock)."""
    wh = connect(settings)
    try:
        yield wh
    finally:
        wh.close()
