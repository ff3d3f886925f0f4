"""The one place where DuckDB and BigQuery differ for the Python stages.

Every other module talks to a :class:`Warehouse`: run SQL with named parameters (``@name``,
BigQuery's style; values are always bound, never formatted into SQL), read results as pandas,
write a DataFrame to a table, and run several statements as one transaction.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from recpipe.settings import Settings

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

WORK = "work"
# BigQuery: tables of the work dataset (publish staging, batches) expire after this long, so a
# run killed before it dropped its scratch tables leaves nothing behind for good.
WORK_TABLE_EXPIRATION_MS = 2 * 24 * 3600 * 1000
_PARAM = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOLDER = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")
# Settings.lock_timeout_s's default: a run with the file held fails after one such wait.
DEFAULT_LOCK_TIMEOUT_S = 30.0
# Bookkeeping after a task failed (the failure recorder, the alert, the CLI's lookup of the
# reason) only checks the lock this long: a lock still held then is another process's, the task
# waited for it already, and a whole timeout per step would multiply the run's one wait.
BRIEF_LOCK_TIMEOUT_S = 5.0
log = logging.getLogger(__name__)


class WarehouseBusyError(RuntimeError):
    """The warehouse file is held by another writer for longer than we were willing to wait.

    ``path`` is the file, ``holder`` who holds it as DuckDB tells (``PID n, program``; empty
    when it does not), ``waited_s`` how long we waited."""

    def __init__(self, path: str, holder: str, waited_s: float) -> None:
        self.path, self.holder, self.waited_s = path, holder, waited_s
        super().__init__(busy_message(path, holder, waited_s))

    def __reduce__(self):  # picklable like any exception (its args are not __init__'s)
        return type(self), (self.path, self.holder, self.waited_s)


def busy_message(path: str, holder: str, waited_s: float) -> str:
    """One line: the warehouse is locked, its file, who holds it, how long was waited and the
    setting that changes it."""
    by = f" ({holder})" if holder else ""
    return (
        f"warehouse {path} is locked by another process{by} for more than {waited_s:.0f}s "
        "(RECPIPE_LOCK_TIMEOUT_S); is another recpipe run, dbt or a DuckDB shell holding it?"
    )


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

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """The result as an Arrow table: for wide results that go on to numeric arrays (integer
        columns with NULLs stay integer-typed; ``to_pandas()`` makes them float with NaN)."""
        ...

    def write_df(
        self, df: pd.DataFrame | pa.Table, schema: str, name: str, *, append: bool = False
    ) -> None:
        """Create or replace ``schema.name`` with the rows of ``df`` (a DataFrame or an Arrow
        table: its schema fixes the column types, even with no rows); with ``append``, add them
        to the existing table instead (same columns), so a large result can be written in
        parts without being held in memory whole."""
        ...

    def create_table(
        self,
        schema: str,
        name: str,
        columns: str,
        *,
        partition_by: str | None = None,
        cluster_by: tuple[str, ...] = (),
    ) -> None: ...

    def columns(self, schema: str, name: str) -> list[str]: ...

    def table_exists(self, schema: str, name: str) -> bool: ...

    def transaction(self) -> contextlib.AbstractContextManager[None]: ...

    def close(self) -> None: ...


class DuckDBWarehouse:
    """A connection to the embedded DuckDB file, read-write unless ``read_only``.

    DuckDB allows one writer process: when another process holds the file we wait, retrying,
    up to ``lock_timeout_s`` and then fail with a message naming the file. A ``read_only``
    connection never takes the writer's lock, never creates anything and refuses writes; DuckDB
    refuses it in a process that also holds a read-write connection to the file.
    """

    kind = "duckdb"

    def __init__(
        self,
        path: str,
        *,
        read_only: bool = False,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
        memory_limit: str | None = None,
    ) -> None:
        import duckdb

        self.path = path
        deadline = time.monotonic() + lock_timeout_s
        warned = False
        while True:
            try:
                self._con = duckdb.connect(path, read_only=read_only)
                break
            except duckdb.IOException as err:
                if "lock" not in str(err).lower():
                    raise
                if time.monotonic() >= deadline:
                    found = _HOLDER.search(str(err))
                    holder = f"PID {found.group(2)}, {found.group(1)}" if found else ""
                    raise WarehouseBusyError(path, holder, lock_timeout_s) from err
                if not warned:
                    # a brief check (a few seconds) is not a wait worth announcing
                    brief = lock_timeout_s <= BRIEF_LOCK_TIMEOUT_S
                    level = logging.DEBUG if brief else logging.WARNING
                    log.log(level, "waiting for the lock on %s (held by another process)", path)
                    warned = True
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        self._con.execute("set timezone = 'UTC'")
        if memory_limit:
            # SET, not connect(config=...): DuckDB refuses a second in-process connection to a
            # file whose configuration differs, and dbt-duckdb SETs its profile's settings too
            self._con.execute(f"set memory_limit = '{memory_limit}'")

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

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        # ~2x faster than .df() on a wide result (no per-column nullable-dtype conversion)
        bound, values = self._bind(sql, params)
        return self._con.sql(bound, params=values).to_arrow_table()

    def write_df(
        self, df: pd.DataFrame | pa.Table, schema: str, name: str, *, append: bool = False
    ) -> None:
        """See :meth:`Warehouse.write_df`."""
        self._con.execute(f"create schema if not exists {identifier(schema)}")
        self._con.register("_recpipe_frame", df)
        into = (
            f"insert into {self.table(schema, name)} by name"
            if append
            else f"create or replace table {self.table(schema, name)} as"
        )
        try:
            self._con.execute(f"{into} select * from _recpipe_frame")
        finally:
            self._con.unregister("_recpipe_frame")

    def create_table(
        self,
        schema: str,
        name: str,
        columns: str,
        *,
        partition_by: str | None = None,
        cluster_by: tuple[str, ...] = (),
    ) -> None:
        """Create ``schema.name`` with ``columns`` (DDL) if missing; DuckDB has no partitions."""
        self._con.execute(f"create table if not exists {self.table(schema, name)} ({columns})")

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


class WarehouseCredentialsError(RuntimeError):
    """BigQuery credentials are missing or rejected. The message is one line and never holds
    a secret: it names where recpipe looked and what to set, not what it found."""


_CREATE_SCHEMA = re.compile(r"^\s*create\s+schema\s+if\s+not\s+exists\s+(\w+)\s*$", re.IGNORECASE)
# DuckDB DDL types of recpipe/tables.py and their BigQuery names.
_BIGQUERY_TYPES = {
    "varchar": "STRING",
    "double": "FLOAT64",
    "integer": "INT64",
    "bigint": "INT64",
    "boolean": "BOOL",
}
_BIGQUERY_TYPE = re.compile(r"\b(" + "|".join(_BIGQUERY_TYPES) + r")\b", re.IGNORECASE)
BIGQUERY_SCOPES = (
    "https://www.googleapis.com/auth/bigquery",
    "https://www.googleapis.com/auth/cloud-platform",
)
AIRFLOW_CONNECTION_ID = "google_cloud_default"


def bigquery_parameter(name: str, value: Any):
    """A typed BigQuery query parameter for a Python value (the value is bound, never inlined).

    bool -> BOOL, int -> INT64, float -> FLOAT64, str -> STRING, datetime -> TIMESTAMP (naive
    values are UTC, as everywhere in recpipe), date -> DATE, Decimal -> NUMERIC. ``None`` is a
    NULL STRING: compare it only with ``is null``.
    """
    import decimal
    from datetime import date, datetime

    import numpy as np
    from google.cloud import bigquery

    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        kind = "STRING"
    elif isinstance(value, bool):
        kind = "BOOL"
    elif isinstance(value, int):
        kind = "INT64"
    elif isinstance(value, float):
        kind = "FLOAT64"
    elif isinstance(value, str):
        kind = "STRING"
    elif isinstance(value, datetime):
        kind = "TIMESTAMP"
        if value.tzinfo is None:
            from datetime import UTC

            value = value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        kind = "DATE"
    elif isinstance(value, decimal.Decimal):
        kind = "NUMERIC"
    else:
        raise TypeError(f"SQL parameter {name}: unsupported type {type(value).__name__}")
    return bigquery.ScalarQueryParameter(name, kind, value)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


def _bigquery_credentials(settings: Settings):
    """Credentials for BigQuery: none for the local emulator, else the Airflow connection
    ``google_cloud_default`` (RECPIPE_BQ_CREDENTIALS=airflow) or Application Default
    Credentials (the default; on Cloud Composer: the environment's service account)."""
    if settings.bq_api_endpoint:
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials(), settings.bq_project
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    if settings.bq_credentials == "airflow":
        return _airflow_connection_credentials(settings)
    try:
        credentials, project = google.auth.default(scopes=list(BIGQUERY_SCOPES))
    except DefaultCredentialsError:
        raise WarehouseCredentialsError(
            "no BigQuery credentials: set GOOGLE_APPLICATION_CREDENTIALS to a service account "
            "key file, run `gcloud auth application-default login`, or run on a GCP worker with "
            "a service account (RECPIPE_BQ_CREDENTIALS=airflow reads google_cloud_default)"
        ) from None
    return credentials, settings.bq_project or project


def _airflow_connection_credentials(settings: Settings):
    """Service-account credentials from the Airflow connection ``google_cloud_default``
    (extra ``keyfile_dict`` or ``key_path``; without either, Application Default Credentials)."""
    import json

    import google.auth
    from google.oauth2 import service_account

    try:
        from airflow.sdk import BaseHook

        connection = BaseHook.get_connection(AIRFLOW_CONNECTION_ID)
    except Exception as err:  # the connection may be missing or the secrets backend down
        raise WarehouseCredentialsError(
            f"RECPIPE_BQ_CREDENTIALS=airflow but the Airflow connection {AIRFLOW_CONNECTION_ID} "
            f"cannot be read ({type(err).__name__})"
        ) from None
    extra = connection.extra_dejson or {}

    def option(key: str):
        return extra.get(key) or extra.get(f"extra__google_cloud_platform__{key}")

    project = settings.bq_project or option("project")
    try:
        if option("keyfile_dict"):
            info = option("keyfile_dict")
            info = json.loads(info) if isinstance(info, str) else info
            credentials = service_account.Credentials.from_service_account_info(
                info, scopes=list(BIGQUERY_SCOPES)
            )
        elif option("key_path"):
            credentials = service_account.Credentials.from_service_account_file(
                option("key_path"), scopes=list(BIGQUERY_SCOPES)
            )
        else:
            credentials, found = google.auth.default(scopes=list(BIGQUERY_SCOPES))
            project = project or found
    except Exception as err:  # noqa: BLE001 - the key's content must never reach the message
        raise WarehouseCredentialsError(
            f"the Airflow connection {AIRFLOW_CONNECTION_ID} holds no usable service account "
            f"key ({type(err).__name__})"
        ) from None
    return credentials, project


class LossyLoadError(ValueError):
    """A value would not reach BigQuery as it is: the load is refused, nothing is written."""


def _bigquery_schema(arrow):
    """BigQuery column types of an Arrow table, and the table adjusted to them: an all-NULL
    column becomes a STRING, a naive timestamp (UTC by recpipe's convention) a TIMESTAMP.

    Every value must reach BigQuery as it is: unsigned integers above INT64's range,
    timestamps finer than BigQuery's microseconds and decimals beyond BIGNUMERIC raise
    :class:`LossyLoadError` instead of being wrapped, truncated or rounded by the load job.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    from google.cloud import bigquery

    fields = []
    for i, field in enumerate(arrow.schema):
        kind = field.type
        column = arrow.column(i)
        if pa.types.is_null(kind):
            arrow = arrow.set_column(i, field.name, column.cast(pa.string()))
            name = "STRING"
        elif pa.types.is_boolean(kind):
            name = "BOOL"
        elif pa.types.is_integer(kind):
            if kind == pa.uint64() and (pc.max(column).as_py() or 0) > 2**63 - 1:
                raise LossyLoadError(f"column {field.name}: a value exceeds BigQuery's INT64")
            name = "INT64"
        elif pa.types.is_floating(kind):
            name = "FLOAT64"
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            name = "STRING"
        elif pa.types.is_date(kind):
            name = "DATE"
        elif pa.types.is_timestamp(kind):
            if kind.unit == "ns":  # BigQuery keeps microseconds: refuse to drop nanoseconds
                try:  # a safe cast raises rather than truncate
                    column = column.cast(pa.timestamp("us", tz=kind.tz), safe=True)
                except pa.ArrowInvalid:
                    raise LossyLoadError(
                        f"column {field.name}: timestamps finer than a microsecond"
                    ) from None
            if not kind.tz:  # naive means UTC in recpipe: load as TIMESTAMP, not DATETIME
                column = column.cast(pa.timestamp(column.type.unit, tz="UTC"))
            arrow = arrow.set_column(i, field.name, column)
            name = "TIMESTAMP"
        elif pa.types.is_decimal(kind):
            if kind.scale <= 9 and kind.precision - kind.scale <= 29:
                name = "NUMERIC"
            elif kind.scale <= 38 and kind.precision - kind.scale <= 38:
                name = "BIGNUMERIC"
            else:
                raise LossyLoadError(
                    f"column {field.name}: decimal({kind.precision}, {kind.scale}) is beyond "
                    "BigQuery's BIGNUMERIC"
                )
        else:
            raise TypeError(f"column {field.name}: no BigQuery type for Arrow type {kind}")
        fields.append(bigquery.SchemaField(field.name, name))
    return arrow, fields


class BigQueryWarehouse:
    """recpipe's schemas as BigQuery datasets (``<prefix><schema>`` in ``project``).

    SQL is BigQuery's dialect; ``schema.table`` references to recpipe's schemas are qualified
    to ``project.<prefix>schema.table``. Reads come back as Arrow (converted to pandas with
    naive UTC timestamps, as DuckDB returns them), writes are load jobs, and
    :meth:`transaction` is a BigQuery multi-statement transaction inside a session: the
    statements executed in it commit together or not at all. Load jobs cannot join a
    transaction, so ``write_df`` inside one writes at once: use it for work tables only.
    """

    kind = "bigquery"

    def __init__(
        self,
        client,
        *,
        dataset_prefix: str = "",
        location: str = "US",
        maximum_bytes_billed: int | None = None,
        use_storage_api: bool = False,
        retry_deadline_s: float | None = None,
    ) -> None:
        from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY, DEFAULT_RETRY

        if dataset_prefix and not _IDENTIFIER.match(dataset_prefix):
            raise ValueError(f"RECPIPE_BQ_DATASET_PREFIX is not a plain name: {dataset_prefix!r}")
        self.client = client
        self.project = client.project
        self.prefix = dataset_prefix
        self.location = location
        self.maximum_bytes_billed = maximum_bytes_billed
        self.use_storage_api = use_storage_api
        self._retry = (
            DEFAULT_RETRY.with_deadline(retry_deadline_s) if retry_deadline_s else DEFAULT_RETRY
        )
        self._job_retry = None if retry_deadline_s else DEFAULT_JOB_RETRY
        self._session_id: str | None = None
        self._datasets: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> BigQueryWarehouse:
        """Connect with the credentials of :func:`_bigquery_credentials` (errors are one line)."""
        from google.api_core.client_options import ClientOptions
        from google.cloud import bigquery

        credentials, project = _bigquery_credentials(settings)
        if not project:
            raise WarehouseCredentialsError(
                "RECPIPE_BQ_PROJECT is not set and the credentials name no project"
            )
        options = (
            ClientOptions(api_endpoint=settings.bq_api_endpoint)
            if settings.bq_api_endpoint
            else None
        )
        client = bigquery.Client(
            project=project,
            credentials=credentials,
            location=settings.bq_location,
            client_options=options,
        )
        try:
            import google.cloud.bigquery_storage  # noqa: F401

            storage = not settings.bq_api_endpoint
        except ImportError:
            storage = False
        return cls(
            client,
            dataset_prefix=settings.bq_dataset_prefix,
            location=settings.bq_location,
            maximum_bytes_billed=settings.bq_maximum_bytes_billed,
            use_storage_api=storage,
            retry_deadline_s=30.0 if settings.bq_api_endpoint else None,
        )

    # names ---------------------------------------------------------------------------------
    def dataset(self, schema: str) -> str:
        return f"{self.prefix}{identifier(schema)}"

    def table(self, schema: str, name: str) -> str:
        return f"`{self.project}.{self.dataset(schema)}.{identifier(name)}`"

    def _table_id(self, schema: str, name: str) -> str:
        return f"{self.project}.{self.dataset(schema)}.{identifier(name)}"

    # errors --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn authentication failures into one-line WarehouseCredentialsErrors."""
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth

        try:
            yield
        except auth.GoogleAuthError as err:
            raise WarehouseCredentialsError(
                f"BigQuery rejected the credentials for project {self.project} "
                f"({type(err).__name__}); check the service account key or ADC login"
            ) from None
        except (api.Unauthorized, api.Forbidden) as err:
            reasons = {str(e.get("reason")) for e in (err.errors or []) if isinstance(e, dict)}
            if isinstance(err, api.Forbidden) and reasons - {"accessDenied", "None"}:
                raise  # quota and rate limits are 403 too, but not a credential problem
            raise WarehouseCredentialsError(
                f"BigQuery denied access in project {self.project}: {_one_line(err)}"
            ) from None

    # jobs ----------------------------------------------------------------------------------
    def _job_config(self, params: Mapping[str, Any] | None, sql: str):
        from google.cloud import bigquery

        used = set(_PARAM.findall(sql))
        missing = used - set(params or {})
        if missing:
            raise KeyError(f"SQL parameter(s) without a value: {', '.join(sorted(missing))}")
        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery_parameter(k, v) for k, v in (params or {}).items() if k in used
            ],
            labels={"app": "recpipe"},
            use_legacy_sql=False,
        )
        if self.maximum_bytes_billed:
            config.maximum_bytes_billed = self.maximum_bytes_billed
        if self._session_id:
            config.connection_properties = [
                bigquery.ConnectionProperty("session_id", self._session_id)
            ]
        return config

    def _query(self, sql: str, params: Mapping[str, Any] | None = None, **config_args):
        config = self._job_config(params, sql)
        for key, value in config_args.items():
            setattr(config, key, value)
        with self._errors():
            job = self.client.query(
                sql,
                job_config=config,
                location=self.location,
                retry=self._retry,
                job_retry=self._job_retry,
            )
            job.result(retry=self._retry)
        return job

    def _ensure_dataset(self, schema: str) -> None:
        from google.cloud import bigquery

        name = self.dataset(schema)
        if name in self._datasets:
            return
        dataset = bigquery.Dataset(f"{self.project}.{name}")
        dataset.location = self.location
        if schema == WORK:
            dataset.default_table_expiration_ms = WORK_TABLE_EXPIRATION_MS
        with self._errors():
            self.client.create_dataset(dataset, exists_ok=True, retry=self._retry)
        self._datasets.add(name)

    # the Warehouse protocol ----------------------------------------------------------------
    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        created = _CREATE_SCHEMA.match(sql)
        if created:
            self._ensure_dataset(created.group(1))
            return
        self._query(sql, params)

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        job = self._query(sql, params)
        with self._errors():
            return job.result(retry=self._retry).to_arrow(
                create_bqstorage_client=self.use_storage_api
            )

    def query_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        import pandas as pd

        frame = self.query_arrow(sql, params).to_pandas()
        for column in frame.columns:
            if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
                frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
        return frame

    def write_df(
        self, df: pd.DataFrame | pa.Table, schema: str, name: str, *, append: bool = False
    ) -> None:
        """See :meth:`Warehouse.write_df`; one load job (WRITE_APPEND with ``append``)."""
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq
        from google.cloud import bigquery

        self._ensure_dataset(schema)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=(
                bigquery.WriteDisposition.WRITE_APPEND
                if append
                else bigquery.WriteDisposition.WRITE_TRUNCATE
            ),
            create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
            labels={"app": "recpipe"},
        )
        # Parquet written here (not by the client's deprecated DataFrame loader): the column
        # types are exactly Arrow's, so DATE stays DATE and UTC timestamps load as TIMESTAMP.
        arrow = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
        arrow, config.schema = _bigquery_schema(arrow)
        buffer = io.BytesIO()
        pq.write_table(arrow, buffer)
        buffer.seek(0)
        with self._errors():
            job = self.client.load_table_from_file(
                buffer,
                self._table_id(schema, name),
                job_config=config,
                location=self.location,
                rewind=True,
            )
            job.result(retry=self._retry)

    def create_table(
        self,
        schema: str,
        name: str,
        columns: str,
        *,
        partition_by: str | None = None,
        cluster_by: tuple[str, ...] = (),
    ) -> None:
        """Create the table if missing, partitioned and clustered as given (BigQuery types)."""
        self._ensure_dataset(schema)
        ddl = _BIGQUERY_TYPE.sub(lambda m: _BIGQUERY_TYPES[m.group(1).lower()], columns)
        sql = f"create table if not exists {self.table(schema, name)} ({ddl})"
        if partition_by:
            sql += f" partition by {partition_by}"
        if cluster_by:
            sql += f" cluster by {', '.join(identifier(c) for c in cluster_by)}"
        self._query(sql)

    def columns(self, schema: str, name: str) -> list[str]:
        from google.api_core.exceptions import NotFound

        try:
            with self._errors():
                table = self.client.get_table(self._table_id(schema, name), retry=self._retry)
        except NotFound:
            return []
        return [field.name for field in table.schema]

    def table_exists(self, schema: str, name: str) -> bool:
        return bool(self.columns(schema, name))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One BigQuery multi-statement transaction (in a session) around the block."""
        if self._session_id:
            raise RuntimeError("BigQuery transactions do not nest")
        begin = self._query("begin transaction", create_session=True)
        self._session_id = begin.session_info.session_id
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                self._query("rollback transaction")
            raise
        else:
            self._query("commit transaction")
        finally:
            with contextlib.suppress(Exception):
                self._query("call BQ.ABORT_SESSION()")
            self._session_id = None

    def close(self) -> None:
        self.client.close()


@contextlib.contextmanager
def batch_table(wh: Warehouse, rows: pd.DataFrame, name: str) -> Iterator[str]:
    """Load ``rows`` into a work table of its own (``work.<name>_<random>``), yield its
    qualified name, and drop it afterwards.

    Every call gets a new table, so runs of different dates at once (BigQuery) never read each
    other's batch. Use it around a transaction, not inside one: BigQuery transactions take DML
    only, and the load job is not part of them anyway.
    """
    scratch = f"{identifier(name)}_{uuid.uuid4().hex[:12]}"
    wh.write_df(rows, WORK, scratch)
    try:
        yield wh.table(WORK, scratch)
    finally:
        wh.execute(f"drop table if exists {wh.table(WORK, scratch)}")


def connect(settings: Settings, *, lock_timeout_s: float | None = None) -> Warehouse:
    """Open the warehouse chosen by ``settings.warehouse``. DuckDB waits for another process's
    lock up to ``lock_timeout_s`` (default ``settings.lock_timeout_s``), then raises
    :class:`WarehouseBusyError`."""
    if settings.warehouse == "duckdb":
        settings.home.mkdir(parents=True, exist_ok=True)
        timeout = settings.lock_timeout_s if lock_timeout_s is None else lock_timeout_s
        return DuckDBWarehouse(
            str(settings.duckdb_path),
            lock_timeout_s=timeout,
            memory_limit=settings.duckdb_memory_limit,
        )
    return BigQueryWarehouse.from_settings(settings)


@contextlib.contextmanager
def session(settings: Settings, *, lock_timeout_s: float | None = None) -> Iterator[Warehouse]:
    """Open the warehouse for one unit of work and always close it (releases DuckDB's lock)."""
    wh = connect(settings, lock_timeout_s=lock_timeout_s)
    try:
        yield wh
    finally:
        wh.close()
