"""Load input files (CSV or Parquet) into the warehouse's raw tables, validating the contract.

Files are parsed and checked in an in-memory DuckDB, so the same code serves every warehouse.
A batch is all or nothing: any bad row fails the whole file with an error naming the file, the
rule, how many rows broke it and a few examples — unless ``quarantine`` is set, in which case
good rows load and bad rows go to ``raw.rejected_*`` with their reason. Loads are idempotent:
events are keyed by a hash of their content, catalog and user rows by their id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from recpipe.tables import (
    EVENT_COLUMNS,
    EVENT_TYPES,
    ITEM_COLUMNS,
    RAW,
    USER_COLUMNS,
    ensure_tables,
)
from recpipe.warehouse import Warehouse

MAX_ID_LENGTH = 256
_EXAMPLES = 3


class IngestError(ValueError):
    """A file broke the input contract; nothing of it was loaded."""


@dataclass(frozen=True)
class LoadResult:
    table: str
    file: str
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    duplicates_skipped: int


@dataclass(frozen=True)
class _Rule:
    name: str
    failing_sql: str  # a boolean SQL expression over the raw text columns: true = row breaks it


_CONTROL_CHARACTERS = "[\\x00-\\x1f\\x7f]"


def _id_rules(column: str) -> list[_Rule]:
    return [
        _Rule(f"{column} is required and non-empty", f"nullif(trim({column}), '') is null"),
        _Rule(
            f"{column} is at most {MAX_ID_LENGTH} characters",
            f"length({column}) > {MAX_ID_LENGTH}",
        ),
        # Ids are data, any Unicode is fine, but a NUL or newline inside an id breaks exports,
        # logs and other warehouses' loaders.
        _Rule(
            f"{column} has no control characters",
            f"regexp_matches({column}, '{_CONTROL_CHARACTERS}')",
        ),
    ]


def _optional_number_rule(column: str, cast: str, minimum: int) -> _Rule:
    value = f"try_cast(trim({column}) as {cast})"
    # DuckDB casts '2.5' and '1e3' to integers (3, 1000): integers must be written as integers.
    pattern = "^[+]?[0-9]+$" if cast in ("bigint", "integer") else ".*"
    kind = "an integer" if cast in ("bigint", "integer") else "a number"
    return _Rule(
        f"{column} is {kind} >= {minimum} when present",
        f"nullif(trim({column}), '') is not null "
        f"and ({value} is null or not isfinite({value}::double) or {value} < {minimum} "
        f"or not regexp_matches(trim({column}), '{pattern}'))",
    )


_TS = "try_cast(trim({col}) as timestamptz)"


def _event_rules(loaded_at_sql: str) -> list[_Rule]:
    event_types = ", ".join(f"'{t}'" for t in EVENT_TYPES)
    ts = _TS.format(col="event_ts")
    return [
        *_id_rules("user_id"),
        *_id_rules("item_id"),
        _Rule(
            f"event_type is one of {', '.join(EVENT_TYPES)}",
            f"event_type is null or event_type not in ({event_types})",
        ),
        _Rule("event_ts is an ISO-8601 timestamp", f"{ts} is null"),
        _Rule("event_ts is not in the future of the load", f"{ts} > {loaded_at_sql}"),
        _Rule(
            f"session_id is at most {MAX_ID_LENGTH} characters",
            f"length(session_id) > {MAX_ID_LENGTH}",
        ),
        _optional_number_rule("quantity", "bigint", 1),
        _optional_number_rule("price", "decimal(18, 4)", 0),
    ]


_BOOL = "try_cast(coalesce(nullif(trim(lower(is_available)), ''), 'true') as boolean)"

_ITEM_RULES = [
    *_id_rules("item_id"),
    _Rule("item_id is unique in the file", "count(*) over (partition by item_id) > 1"),
    _optional_number_rule("price", "decimal(18, 4)", 0),
    _Rule("is_available is a boolean when present", f"{_BOOL} is null"),
]

_USER_RULES = [
    *_id_rules("user_id"),
    _Rule("user_id is unique in the file", "count(*) over (partition by user_id) > 1"),
    _Rule(
        "signup_ts is an ISO-8601 timestamp when present",
        f"nullif(trim(signup_ts), '') is not null and {_TS.format(col='signup_ts')} is null",
    ),
]


def _read_as_text(
    con: duckdb.DuckDBPyConnection, path: Path, required: Sequence[str], optional: Sequence[str]
) -> None:
    """Read ``path`` into the temp table ``batch`` with every contract column as text."""
    if not path.exists():
        raise IngestError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise IngestError(f"{path}: unsupported file type {suffix!r} (use .csv or .parquet)")
    try:
        if suffix == ".csv":
            # The dialect is fixed (RFC 4180) rather than sniffed: a sniffer that guesses wrong on
            # a ragged file reports confusing "missing columns" instead of the real problem.
            relation = con.read_csv(
                str(path),
                header=True,
                all_varchar=True,
                sep=",",
                quotechar='"',
                escapechar='"',
                comment="",
            )
        else:
            relation = con.read_parquet(str(path))
        present = [c.lower() for c in relation.columns]
    except duckdb.Error as err:
        raise IngestError(_unreadable(path, err)) from err
    missing = [c for c in required if c not in present]
    if missing:
        raise IngestError(
            f"{path}: missing required column(s) {', '.join(missing)} "
            f"(found: {', '.join(present) or 'none'})"
        )
    con.register("source_rel", relation)
    lookup = {c.lower(): c for c in relation.columns}
    select = ", ".join(
        f'cast("{lookup[c]}" as varchar) as {c}' if c in lookup else f"cast(null as varchar) as {c}"
        for c in (*required, *optional)
    )
    try:
        con.execute(
            f"create or replace temp table batch as "
            f"select row_number() over () as row_number, {select} from source_rel"
        )
    except duckdb.Error as err:  # reading is lazy: a malformed row surfaces here
        raise IngestError(_unreadable(path, err)) from err
    con.unregister("source_rel")
    if con.execute("select count(*) from batch").fetchone()[0] == 0:
        raise IngestError(f"{path}: the file has no data rows")


def _unreadable(path: Path, err: Exception) -> str:
    """One line: the file, and DuckDB's first two lines of explanation."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()][:2]
    return f"{path}: cannot be read as {path.suffix.lower()[1:]}: {' '.join(lines)}"[:500]


def _check(
    con: duckdb.DuckDBPyConnection, path: Path, rules: Sequence[_Rule], quarantine: bool
) -> int:
    """Tag every row with the first rule it breaks; raise unless quarantining. Returns bad rows."""
    reason = "case " + " ".join(f"when {r.failing_sql} then '{r.name}'" for r in rules) + " end"
    con.execute(f"create or replace temp table checked as select *, {reason} as reason from batch")
    broken = con.execute(
        "select reason, count(*) as n, list(row_number order by row_number)[1:3] as examples "
        "from checked where reason is not null group by reason order by n desc, reason"
    ).fetchall()
    if broken and not quarantine:
        details = "; ".join(
            f"{name}: {n} row(s), e.g. data row(s) {', '.join(map(str, examples))}"
            for name, n, examples in broken
        )
        raise IngestError(
            f"{path}: {sum(n for _, n, _ in broken)} bad row(s), nothing loaded — {details}"
        )
    return sum(n for _, n, _ in broken)


def _loaded_at_literal(loaded_at: datetime) -> str:
    return f"timestamptz '{loaded_at.isoformat()}'"


def ingest_events(
    wh: Warehouse, path: Path, *, quarantine: bool = False, loaded_at: datetime | None = None
) -> LoadResult:
    """Validate and load an events file into ``raw.events``; see the module docstring."""
    loaded_at = loaded_at or datetime.now(UTC)
    con = duckdb.connect()
    con.execute("set timezone = 'UTC'")
    _read_as_text(con, path, EVENT_COLUMNS[:4], EVENT_COLUMNS[4:])
    rows_read = con.execute("select count(*) from batch").fetchone()[0]
    bad = _check(con, path, _event_rules(_loaded_at_literal(loaded_at)), quarantine)
    ts = "timezone('UTC', " + _TS.format(col="event_ts") + ")"
    good = con.sql(
        f"""
        with typed as (
            select trim(user_id) as user_id, trim(item_id) as item_id, event_type,
                   {ts} as event_ts, nullif(trim(session_id), '') as session_id,
                   coalesce(try_cast(nullif(trim(quantity), '') as integer), 1) as quantity,
                   try_cast(nullif(trim(price), '') as double) as price
            from checked where reason is null
        )
        select md5(concat_ws(chr(31), user_id, item_id, event_type,
                             strftime(event_ts, '%Y-%m-%dT%H:%M:%S.%f'),
                             coalesce(session_id, ''))) as event_id,
               *, {_loaded_at_literal(loaded_at)}::timestamp as loaded_at,
               $file as source_file
        from typed
        qualify row_number() over (partition by event_id order by event_ts) = 1
        """,
        params={"file": path.name},
    ).to_arrow_table()
    rejected = (
        _rejected(
            con,
            path,
            "user_id, item_id, event_type, event_ts, session_id, quantity, price",
            loaded_at,
        )
        if bad
        else None
    )
    in_batch_duplicates = (rows_read - bad) - good.num_rows
    before = _count(wh, "events")
    with wh.transaction():
        ensure_tables(wh)
        _stage(wh, good, "ingest_events")
        wh.execute(
            f"insert into {wh.table(RAW, 'events')} select s.* from work.ingest_events s "
            f"where not exists (select 1 from {wh.table(RAW, 'events')} e "
            "where e.event_id = s.event_id)"
        )
        if rejected is not None:
            _stage(wh, rejected, "ingest_rejected")
            wh.execute(
                f"insert into {wh.table(RAW, 'rejected_events')} select * from work.ingest_rejected"
            )
    loaded = _count(wh, "events") - before
    return LoadResult(
        "raw.events",
        str(path),
        rows_read,
        loaded,
        bad,
        in_batch_duplicates + (good.num_rows - loaded),
    )


def ingest_items(
    wh: Warehouse, path: Path, *, quarantine: bool = False, loaded_at: datetime | None = None
) -> LoadResult:
    """Validate and load a catalog file; rows replace the catalog rows with the same item_id."""
    loaded_at = loaded_at or datetime.now(UTC)
    con = duckdb.connect()
    _read_as_text(con, path, ITEM_COLUMNS[:1], ITEM_COLUMNS[1:])
    rows_read = con.execute("select count(*) from batch").fetchone()[0]
    bad = _check(con, path, _ITEM_RULES, quarantine)
    good = con.sql(
        f"""
        select trim(item_id) as item_id, nullif(trim(category), '') as category,
               nullif(trim(brand), '') as brand,
               try_cast(nullif(trim(price), '') as double) as price,
               {_BOOL} as is_available, {_loaded_at_literal(loaded_at)}::timestamp as loaded_at
        from checked where reason is null
        """
    ).to_arrow_table()
    rejected = (
        _rejected(con, path, "item_id, category, brand, price, is_available", loaded_at)
        if bad
        else None
    )
    return _upsert(wh, "items", "item_id", good, rejected, str(path), rows_read, bad)


def ingest_users(
    wh: Warehouse, path: Path, *, quarantine: bool = False, loaded_at: datetime | None = None
) -> LoadResult:
    """Validate and load a users file; rows replace the user rows with the same user_id."""
    loaded_at = loaded_at or datetime.now(UTC)
    con = duckdb.connect()
    con.execute("set timezone = 'UTC'")
    _read_as_text(con, path, USER_COLUMNS[:1], USER_COLUMNS[1:])
    rows_read = con.execute("select count(*) from batch").fetchone()[0]
    bad = _check(con, path, _USER_RULES, quarantine)
    if bad:  # there is no rejected_users table in the contract: users are all or nothing
        raise IngestError(f"{path}: {bad} bad row(s) in the users file, nothing loaded")
    good = con.sql(
        f"""
        select trim(user_id) as user_id,
               timezone('UTC', {_TS.format(col="signup_ts")}) as signup_ts,
               nullif(trim(segment), '') as segment,
               {_loaded_at_literal(loaded_at)}::timestamp as loaded_at
        from checked
        """
    ).to_arrow_table()
    return _upsert(wh, "users", "user_id", good, None, str(path), rows_read, 0)


def _rejected(
    con: duckdb.DuckDBPyConnection, path: Path, columns: str, loaded_at: datetime
) -> pa.Table:
    table = con.sql(
        f"select $file as source_file, row_number, reason, {columns}, "
        f"{_loaded_at_literal(loaded_at)}::timestamp as rejected_at "
        "from checked where reason is not null order by row_number",
        params={"file": path.name},
    ).to_arrow_table()
    return table


def _stage(wh: Warehouse, table: pa.Table, name: str) -> None:
    wh.write_df(table, "work", name)


def _count(wh: Warehouse, name: str) -> int:
    if not wh.table_exists(RAW, name):
        return 0
    return int(wh.query_df(f"select count(*) as n from {wh.table(RAW, name)}")["n"].iloc[0])


def _upsert(
    wh: Warehouse,
    name: str,
    key: str,
    good: pa.Table,
    rejected: pa.Table | None,
    file: str,
    rows_read: int,
    bad: int,
) -> LoadResult:
    target = wh.table(RAW, name)
    with wh.transaction():
        ensure_tables(wh)
        _stage(wh, good, f"ingest_{name}")
        # Rows identical to what is loaded already change nothing (idempotent reload).
        same = " and ".join(_same(c) for c in good.column_names if c not in (key, "loaded_at"))
        unchanged = wh.query_df(
            f"select count(*) as n from work.ingest_{name} s join {target} t using ({key}) "
            f"where {same}"
        )["n"].iloc[0]
        wh.execute(f"delete from {target} where {key} in (select {key} from work.ingest_{name})")
        wh.execute(f"insert into {target} select * from work.ingest_{name}")
        if rejected is not None:
            _stage(wh, rejected, "ingest_rejected")
            wh.execute(
                f"insert into {wh.table(RAW, 'rejected_' + name)} "
                "select * from work.ingest_rejected"
            )
    return LoadResult(target, file, rows_read, good.num_rows - int(unchanged), bad, int(unchanged))


def _same(column: str) -> str:
    return f"s.{column} is not distinct from t.{column}"
