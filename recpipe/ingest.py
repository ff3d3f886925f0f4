"""Load input files (CSV or Parquet) into the warehouse's raw tables, validating the contract.

Files are parsed and checked in an in-memory DuckDB, so the same code serves every warehouse,
and every file of a command is checked before the warehouse is even opened. Guarantees:

- **Exact values.** A value is stored exactly as given, or its row breaks a named rule: the
  rules check the value that will be stored (an integer that fits the column, a number the
  stored double gives back digit for digit, a strict ISO-8601 timestamp with at most
  microseconds and a real offset); a default only fills a value that is absent.
- **One transaction per command.** :func:`load_files` writes every file of a command in one
  warehouse transaction: all of them load or none does. Any bad row fails the command with an
  error naming the file, the rule, how many rows broke it and a few examples — unless
  ``quarantine`` is set: then good rows load and bad rows go to ``raw.rejected_*`` with their
  reason (the users file has no rejects table: it is always all or nothing).
- **Idempotent reloads.** Loading the same file again adds nothing anywhere, rejects included.
- **Event identity.** An event is (user_id, item_id, event_type, event_ts in UTC, session_id):
  rows equal in all seven columns are one event, loaded once. Rows with the same identity but
  a different quantity or price conflict: they break a rule (in one file, or against an event
  already loaded) and are never dropped silently. Catalog and user rows are keyed by their id
  and replace the row with the same id.
"""

from __future__ import annotations

import csv
import re
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from recpipe.settings import load_settings
from recpipe.tables import (
    EVENT_COLUMNS,
    EVENT_TYPES,
    ITEM_COLUMNS,
    RAW,
    USER_COLUMNS,
    ensure_tables,
)
from recpipe.warehouse import WORK, Warehouse

MAX_ID_LENGTH = 256
_EXAMPLES = 3
# raw.events.quantity is a 32-bit integer: a larger value cannot be stored as given.
MAX_QUANTITY = 2**31 - 1


class IngestError(ValueError):
    """A file broke the input contract; nothing of its command was loaded."""


@dataclass(frozen=True)
class LoadResult:
    table: str
    file: str
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    duplicates_skipped: int


@dataclass(frozen=True)
class PreparedFile:
    """One checked file, ready to load: typed good rows, and rejected rows (quarantine)."""

    table: str  # events | items | users
    path: Path
    rows_read: int
    rows_rejected: int
    duplicates_in_file: int
    good: pa.Table
    rejected: pa.Table | None
    quarantine: bool = False


@dataclass(frozen=True)
class _Rule:
    name: str
    failing_sql: str  # a boolean SQL expression over the raw text columns: true = row breaks it


# Unicode control characters (C0, DEL, C1 such as NEL U+0085) and the line and paragraph
# separators U+2028/U+2029: each breaks lines in exports, logs and other warehouses' loaders.
_CONTROL_CHARACTERS = "[\\p{Cc}\\p{Zl}\\p{Zp}]"


def _id_rules(column: str, *, required: bool = True) -> list[_Rule]:
    rules = [_Rule(f"{column} is required and non-empty", f"nullif(trim({column}), '') is null")]
    return [
        *(rules if required else []),
        _Rule(
            f"{column} is at most {MAX_ID_LENGTH} characters",
            f"length({column}) > {MAX_ID_LENGTH}",
        ),
        # Ids are data, any Unicode is fine, but a NUL, NEL or newline inside an id breaks
        # exports, logs and other warehouses' loaders.
        _Rule(
            f"{column} has no control characters (C0, DEL, C1 incl. NEL, U+2028, U+2029)",
            f"regexp_matches({column}, '{_CONTROL_CHARACTERS}')",
        ),
    ]


def _present(column: str) -> str:
    return f"nullif(trim({column}), '') is not null"


def _quantity_rule(column: str) -> _Rule:
    # Checked as the 32-bit integer the column stores; DuckDB casts '2.5' and '1e3' to integers
    # (3, 1000), so integers must also be written as integers.
    return _Rule(
        f"{column} is an integer >= 1 and <= {MAX_QUANTITY} when present",
        f"{_present(column)} and (not regexp_matches(trim({column}), '^[+]?[0-9]+$') "
        f"or try_cast(trim({column}) as integer) is null "
        f"or try_cast(trim({column}) as integer) < 1)",
    )


_NUMBER = "^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?$"


def _price_rules(column: str) -> list[_Rule]:
    value = f"try_cast(trim({column}) as double)"
    return [
        _Rule(
            f"{column} is a number >= 0 when present",
            f"{_present(column)} and (not regexp_matches(trim({column}), '{_NUMBER}') "
            f"or {value} is null or not isfinite({value}) or {value} < 0)",
        ),
        # Prices are stored as doubles: the text must be the number the double gives back
        # (about 15 significant digits; no underflow to 0), or the stored value is not the one
        # given.
        _Rule(
            f"{column} is stored exactly as a double (at most ~15 significant digits)",
            # at most 15 digits and no exponent: always exact (the common case, checked fast)
            f"{_present(column)} and case when not regexp_matches(trim({column}), '[eE]') "
            f"and length(regexp_replace(trim({column}), '[^0-9]', '', 'g')) <= 15 then false "
            f"else _num_key(trim({column})) <> _num_key(cast({value} as varchar)) end",
        ),
    ]


# The text of a decimal number as (sign, significant digits, exponent): equal keys mean equal
# numbers, whatever the notation ('1.50e2' = '150' = '150.0').
_MACROS = r"""
create or replace temp macro _num_parts(t) as
    regexp_extract(t, '^([+-]?)([0-9]*)(?:[.]([0-9]*))?(?:[eE]([+-]?[0-9]+))?$',
                   ['s', 'i', 'f', 'e']);
create or replace temp macro _num_key_of(p, digits) as
    case when digits = '' then '0' else
        (case when p.s = '-' then '-' else '' end) || rtrim(digits, '0') || 'e' ||
        cast(coalesce(try_cast(nullif(p.e, '') as bigint), 0) - length(p.f)
             + length(digits) - length(rtrim(digits, '0')) as varchar)
    end;
create or replace temp macro _num_key(t) as
    _num_key_of(_num_parts(t), ltrim(_num_parts(t).i || _num_parts(t).f, '0'));
"""

# Strict ISO-8601 / RFC 3339: a four-digit year, real months, days, hours (00-23), minutes and
# seconds, at most microseconds (trailing zeros allowed), and an offset of at most 14 hours.
# DuckDB alone also takes 'epoch', '-infinity', two-digit years and '+25:00'.
_ISO_TIMESTAMP = (
    "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    "([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.][0-9]{1,6}0*)?)?"
    "(Z|[+-](0[0-9]|1[0-4])(:?[0-5][0-9])?)?)?$"
)
_TS = "try_cast(trim({col}) as timestamptz)"


def _timestamp_failing(column: str) -> str:
    return (
        f"not regexp_matches(trim({column}), '{_ISO_TIMESTAMP}') "
        f"or {_TS.format(col=column)} is null"
    )


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
        _Rule(
            "event_ts is an ISO-8601 timestamp (YYYY-MM-DD[Thh:mm[:ss[.ffffff]]][Z|+hh:mm])",
            f"event_ts is null or {_timestamp_failing('event_ts')}",
        ),
        _Rule("event_ts is not in the future of the load", f"{ts} > {loaded_at_sql}"),
        *_id_rules("session_id", required=False),
        _quantity_rule("quantity"),
        *_price_rules("price"),
    ]


_BOOLEANS = ("true", "false", "t", "f", "1", "0", "yes", "no", "y", "n")
_BOOL = "try_cast(coalesce(nullif(trim(lower(is_available)), ''), 'true') as boolean)"

_ITEM_RULES = [
    *_id_rules("item_id"),
    _Rule("item_id is unique in the file", "count(*) over (partition by trim(item_id)) > 1"),
    *_price_rules("price"),
    _Rule(
        f"is_available is a boolean ({'/'.join(_BOOLEANS)}) when present",
        f"{_present('is_available')} and trim(lower(is_available)) not in "
        f"({', '.join(repr(b) for b in _BOOLEANS)})",
    ),
]

_USER_RULES = [
    *_id_rules("user_id"),
    _Rule("user_id is unique in the file", "count(*) over (partition by trim(user_id)) > 1"),
    _Rule(
        "signup_ts is an ISO-8601 timestamp when present",
        f"{_present('signup_ts')} and ({_timestamp_failing('signup_ts')})",
    ),
]


def _connect() -> duckdb.DuckDBPyConnection:
    """The in-memory DuckDB that checks one file: within recpipe's DuckDB memory limit (a 10M
    event file took 8 GB under DuckDB's default of 80 % of RAM), spilling to the temp folder."""
    con = duckdb.connect()
    con.execute(f"set memory_limit = '{load_settings().duckdb_memory_limit}'")
    con.execute(f"set temp_directory = '{Path(tempfile.gettempdir()) / 'recpipe-ingest-spill'}'")
    con.execute("set timezone = 'UTC'")
    con.execute(_MACROS)
    return con


def _csv_header(path: Path) -> list[str]:
    """The header's column names, read by Python's csv module (RFC 4180, UTF-8, BOM allowed)."""
    if path.stat().st_size == 0:
        raise IngestError(f"{path}: the file is empty (0 bytes; expected a header line)")
    with open(path, "rb") as handle:
        first = handle.readline(1 << 20)
    try:
        header = next(csv.reader([first.decode("utf-8-sig")]), None)
    except UnicodeDecodeError as err:
        raise IngestError(
            f"{path}: line 1: not UTF-8 (byte 0x{err.object[err.start]:02x}); "
            "save the file as UTF-8"
        ) from None
    except csv.Error as err:
        raise IngestError(f"{path}: line 1: the header cannot be read as CSV: {err}") from None
    names = [name.strip().lower() for name in header or []]
    if not any(names):
        raise IngestError(f"{path}: line 1: the header is empty")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise IngestError(f"{path}: line 1: column(s) named twice in the header: {repeated}")
    return list(header)


_CSV_LINE = re.compile(r"CSV Error on Line: (\d+)")


def _csv_error(path: Path, err: Exception) -> str:
    """One line from DuckDB's CSV error: the file, the line and the cause, no row quoted."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    found = _CSV_LINE.search(str(err))
    causes = [
        line
        for line in lines
        if not line.startswith(("Original Line", "Invalid Input Error", "Possible"))
        and "=" not in line
    ]
    cause = causes[0] if causes else (lines[0] if lines else type(err).__name__)
    if "not utf-8" in cause.lower():
        cause = "not UTF-8 (save the file as UTF-8)"
    elif "Maximum line size" in cause:
        cause = f"the line is too long: {cause}"
    elif "Expected Number of Columns" in cause:
        cause = _ragged(path, int(found.group(1))) if found else f"ragged row: {cause}"
    where = f"line {found.group(1)}: " if found else ""
    return f"{path}: {where}{cause}"[:500]


def _ragged(path: Path, line: int) -> str:
    """The field counts of the header and of the record on ``line`` (Python's csv module)."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        for record in reader:
            if reader.line_num >= line:
                return f"ragged row: {len(record)} field(s) where the header has {len(header)}"
    return f"ragged row: not the {len(header)} field(s) of the header"


def _read_as_text(
    con: duckdb.DuckDBPyConnection, path: Path, required: Sequence[str], optional: Sequence[str]
) -> None:
    """Read ``path`` into the temp table ``batch`` with every contract column as text."""
    if not path.exists():
        raise IngestError(f"{path}: file not found")
    if path.is_dir():
        raise IngestError(f"{path}: is a directory, not a file")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise IngestError(f"{path}: unsupported file type {suffix!r} (use .csv or .parquet)")
    try:
        if suffix == ".csv":
            # The dialect and the columns are fixed (RFC 4180, the header's names, all text),
            # not sniffed: a sniffer that guesses wrong on a ragged or empty file reports a
            # confusing "missing columns" instead of the real problem.
            header = _csv_header(path)
            relation = con.read_csv(
                str(path),
                header=True,
                auto_detect=False,
                columns={name: "VARCHAR" for name in header},
                sep=",",
                quotechar='"',
                escapechar='"',
                comment="",
            )
        else:
            relation = con.read_parquet(str(path))
        present = [c.strip().lower() for c in relation.columns]
    except duckdb.Error as err:
        raise IngestError(_unreadable(path, err)) from err
    missing = [c for c in required if c not in present]
    if missing:
        raise IngestError(
            f"{path}: missing required column(s) {', '.join(missing)} "
            f"(found: {', '.join(present) or 'none'})"
        )
    con.register("source_rel", relation)
    lookup = {c.strip().lower(): c for c in relation.columns}
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
    """One line: the file, the line when known, and the cause."""
    if "CSV Error on Line" in str(err) or path.suffix.lower() == ".csv":
        return _csv_error(path, err)
    lines = [line.strip() for line in str(err).splitlines() if line.strip()][:2]
    return f"{path}: cannot be read as {path.suffix.lower()[1:]}: {' '.join(lines)}"[:500]


def _tag(con: duckdb.DuckDBPyConnection, rules: Sequence[_Rule]) -> None:
    """The temp table ``checked``: ``batch`` with the first rule each row breaks (or null)."""
    reason = "case " + " ".join(f"when {r.failing_sql} then '{r.name}'" for r in rules) + " end"
    con.execute(f"create or replace temp table checked as select *, {reason} as reason from batch")


def _report(con: duckdb.DuckDBPyConnection, path: Path, quarantine: bool) -> int:
    """Raise naming every broken rule unless quarantining. Returns the number of bad rows."""
    broken = con.execute(
        "select reason, count(*) as n, "
        f"list(row_number order by row_number)[1:{_EXAMPLES}] as examples "
        "from checked where reason is not null group by reason order by n desc, reason"
    ).fetchall()
    if broken and not quarantine:
        raise IngestError(_bad_rows_message(path, broken))
    return sum(n for _, n, _ in broken)


def _bad_rows_message(path: Path, broken: Sequence[tuple[str, int, list[int]]]) -> str:
    details = "; ".join(
        f"{name}: {n} row(s), e.g. data row(s) {', '.join(map(str, examples))}"
        + _lines(path, examples)
        for name, n, examples in broken
    )
    return f"{path}: {sum(n for _, n, _ in broken)} bad row(s), nothing loaded — {details}"


def _lines(path: Path, rows: Sequence[int]) -> str:
    """' (line(s) …)': where data rows start in a CSV file (quoted fields may span lines)."""
    if path.suffix.lower() != ".csv" or not rows:
        return ""
    wanted, found = set(rows), {}
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        start = reader.line_num + 1
        for number, _ in enumerate(reader, 1):
            if number in wanted:
                found[number] = start
                if len(found) == len(wanted):
                    break
            start = reader.line_num + 1
    return f" (line(s) {', '.join(str(found[r]) for r in rows if r in found)})" if found else ""


def _loaded_at_literal(loaded_at: datetime) -> str:
    return f"timestamptz '{loaded_at.isoformat()}'"


# What makes two events the same event (see the module docstring), over the typed columns.
_EVENT_IDENTITY = (
    "md5(concat_ws(chr(31), user_id, item_id, event_type, "
    "strftime(event_ts, '%Y-%m-%dT%H:%M:%S.%f'), coalesce(session_id, '')))"
)
_EVENT_TYPED = """
    select row_number, trim(user_id) as user_id, trim(item_id) as item_id, event_type,
           timezone('UTC', {ts}) as event_ts, nullif(trim(session_id), '') as session_id,
           coalesce(cast(nullif(trim(quantity), '') as integer), 1) as quantity,
           cast(nullif(trim(price), '') as double) as price,
           event_ts as raw_event_ts, quantity as raw_quantity, price as raw_price
    from checked where reason is null
""".format(ts=_TS.format(col="event_ts"))
_CONFLICT = (
    "another row is the same event (user_id, item_id, event_type, event_ts, session_id) "
    "with a different quantity or price"
)
_CONFLICT_WITH_LOADED = (
    "the same event (user_id, item_id, event_type, event_ts, session_id) is already loaded "
    "with a different quantity or price"
)


def prepare_events(
    path: Path, *, quarantine: bool = False, loaded_at: datetime | None = None
) -> PreparedFile:
    """Read and check an events file (nothing is written anywhere)."""
    loaded_at = loaded_at or datetime.now(UTC)
    con = _connect()
    _read_as_text(con, path, EVENT_COLUMNS[:4], EVENT_COLUMNS[4:])
    rows_read = con.execute("select count(*) from batch").fetchone()[0]
    _tag(con, _event_rules(_loaded_at_literal(loaded_at)))
    con.execute(
        f"create or replace temp table typed as "
        f"select {_EVENT_IDENTITY} as event_id, * from ({_EVENT_TYPED})"
    )
    # Same identity, different quantity or price: every row of such a group is reported; which
    # one is right cannot be told.
    con.execute(
        """
        create or replace temp table conflicting as
        select event_id from typed group by event_id
        having count(*) > 1 and (min(quantity) <> max(quantity) or min(price) <> max(price)
                                 or count(price) not in (0, count(*)))
        """
    )
    con.execute(
        f"update checked set reason = '{_CONFLICT}' where row_number in "
        "(select row_number from typed join conflicting using (event_id))"
    )
    con.execute("delete from typed where event_id in (select event_id from conflicting)")
    bad = _report(con, path, quarantine)
    good = con.sql(
        f"""
        select event_id, user_id, item_id, event_type, event_ts, session_id, quantity, price,
               {_loaded_at_literal(loaded_at)}::timestamp as loaded_at,
               $file as source_file, row_number, raw_event_ts, raw_quantity, raw_price
        from typed
        qualify row_number() over (partition by event_id order by row_number) = 1
        order by row_number
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
    return PreparedFile(
        "events",
        path,
        rows_read,
        bad,
        (rows_read - bad) - good.num_rows,
        good,
        rejected,
        quarantine,
    )


def prepare_items(
    path: Path, *, quarantine: bool = False, loaded_at: datetime | None = None
) -> PreparedFile:
    """Read and check a catalog file (nothing is written anywhere)."""
    loaded_at = loaded_at or datetime.now(UTC)
    con = _connect()
    _read_as_text(con, path, ITEM_COLUMNS[:1], ITEM_COLUMNS[1:])
    rows_read = con.execute("select count(*) from batch").fetchone()[0]
    _tag(con, _ITEM_RULES)
    bad = _report(con, path, quarantine)
    good = con.sql(
        f"""
        select trim(item_id) as item_id, nullif(trim(category), '') as category,
               nullif(trim(brand), '') as brand,
               cast(nullif(trim(price), '') as double) as price,
               {_BOOL} as is_available, {_loaded_at_literal(loaded_at)}::timestamp as loaded_at
        from checked where reason is null order by row_number
        """
    ).to_arrow_table()
    rejected = (
        _rejected(con, path, "item_id, category, brand, price, is_available", loaded_at)
        if bad
        else None
    )
    return PreparedFile("items", path, rows_read, bad, 0, good, rejected, quarantine)


def prepare_users(
    path: Path, *, quarantine: bool = False, loaded_at: datetime | None = None
) -> PreparedFile:
    """Read and check a users file. There is no rejects table for users (not in the
    contract): a bad row fails the file even with ``quarantine``."""
    loaded_at = loaded_at or datetime.now(UTC)
    con = _connect()
    _read_as_text(con, path, USER_COLUMNS[:1], USER_COLUMNS[1:])
    rows_read = con.execute("select count(*) from batch").fetchone()[0]
    _tag(con, _USER_RULES)
    _report(con, path, quarantine=False)
    good = con.sql(
        f"""
        select trim(user_id) as user_id,
               timezone('UTC', {_TS.format(col="signup_ts")}) as signup_ts,
               nullif(trim(segment), '') as segment,
               {_loaded_at_literal(loaded_at)}::timestamp as loaded_at
        from checked order by row_number
        """
    ).to_arrow_table()
    return PreparedFile("users", path, rows_read, 0, 0, good, None)


def _rejected(
    con: duckdb.DuckDBPyConnection, path: Path, columns: str, loaded_at: datetime
) -> pa.Table:
    return con.sql(
        f"select $file as source_file, row_number, reason, {columns}, "
        f"{_loaded_at_literal(loaded_at)}::timestamp as rejected_at "
        "from checked where reason is not null order by row_number",
        params={"file": path.name},
    ).to_arrow_table()


_PREPARE = {"events": prepare_events, "items": prepare_items, "users": prepare_users}


def ingest_files(
    wh_factory,
    *,
    events: Path | None = None,
    items: Path | None = None,
    users: Path | None = None,
    quarantine: bool = False,
    loaded_at: datetime | None = None,
) -> list[LoadResult]:
    """Check every file, then load them all in one transaction (``recpipe ingest``).

    ``wh_factory`` is a context manager factory opening the warehouse (e.g.
    ``lambda: session(settings)``): it is called only once every file passed its checks, so a
    missing or bad file creates nothing, not even the warehouse file.
    """
    loaded_at = loaded_at or datetime.now(UTC)
    prepared = [
        _PREPARE[name](Path(path), quarantine=quarantine, loaded_at=loaded_at)
        for name, path in (("items", items), ("users", users), ("events", events))
        if path is not None
    ]
    with wh_factory() as wh:
        return load_files(wh, prepared)


def load_files(wh: Warehouse, prepared: Sequence[PreparedFile]) -> list[LoadResult]:
    """Write checked files to the raw tables in ONE transaction: all of them or nothing.

    Staging tables (load jobs on BigQuery, which cannot join a transaction) are written first
    and dropped afterwards; the transaction holds only the DML on the raw tables.
    """
    ensure_tables(wh)
    staged: list[str] = []
    try:
        plans = []
        for file in prepared:
            suffix = uuid.uuid4().hex[:12]
            good = f"ingest_{file.table}_{suffix}"
            wh.write_df(file.good, WORK, good)
            staged.append(good)
            rejected = None
            if file.rejected is not None:
                rejected = f"ingest_rejected_{file.table}_{suffix}"
                wh.write_df(file.rejected, WORK, rejected)
                staged.append(rejected)
            plans.append((file, wh.table(WORK, good), rejected and wh.table(WORK, rejected)))
        with wh.transaction():
            return [
                _load_events(wh, *plan) if plan[0].table == "events" else _upsert(wh, *plan)
                for plan in plans
            ]
    finally:
        for name in staged:
            wh.execute(f"drop table if exists {wh.table(WORK, name)}")


def _insert_rejected(wh: Warehouse, name: str, staged: str) -> None:
    """Add rejected rows not already there (same file name, row number and values)."""
    target = wh.table(RAW, f"rejected_{name}")
    columns = [c for c in wh.columns(RAW, f"rejected_{name}") if c not in ("reason", "rejected_at")]
    same = " and ".join(_same(c) for c in columns)
    wh.execute(
        f"insert into {target} select * from {staged} s "
        f"where not exists (select 1 from {target} t where {same})"
    )


def _scalar(wh: Warehouse, sql: str) -> int:
    return int(wh.query_df(sql)["n"].iloc[0])


def _load_events(
    wh: Warehouse, file: PreparedFile, staged: str, rejected: str | None
) -> LoadResult:
    target = wh.table(RAW, "events")
    columns = ", ".join(
        ("event_id", "user_id", "item_id", "event_type", "event_ts", "session_id")
        + ("quantity", "price", "loaded_at", "source_file")
    )
    differs = (
        f"from {staged} s join {target} e on e.event_id = s.event_id "
        "where s.quantity is distinct from e.quantity or s.price is distinct from e.price"
    )
    conflicts = wh.query_df(
        f"select s.row_number {differs} order by s.row_number limit {_EXAMPLES}"
    )
    n_conflicts = _scalar(wh, f"select count(*) as n {differs}") if len(conflicts) else 0
    quarantined = 0
    if n_conflicts:
        if not file.quarantine:
            raise IngestError(
                _bad_rows_message(
                    file.path,
                    [(_CONFLICT_WITH_LOADED, n_conflicts, conflicts["row_number"].tolist())],
                )
            )
        conflicting = f"select s.row_number {differs}"
        wh.execute(
            f"insert into {wh.table(RAW, 'rejected_events')} "
            f"select s.source_file, s.row_number, '{_CONFLICT_WITH_LOADED}', s.user_id, "
            "s.item_id, s.event_type, s.raw_event_ts, s.session_id, s.raw_quantity, "
            f"s.raw_price, s.loaded_at from {staged} s where s.row_number in ({conflicting}) "
            f"and not exists (select 1 from {wh.table(RAW, 'rejected_events')} t "
            "where t.source_file = s.source_file and t.row_number = s.row_number "
            f"and t.reason = '{_CONFLICT_WITH_LOADED}')"
        )
        quarantined = n_conflicts
    new = (
        f"from {staged} s where not exists (select 1 from {target} e where e.event_id = s.event_id)"
    )
    loaded = _scalar(wh, f"select count(*) as n {new}")
    wh.execute(f"insert into {target} ({columns}) select {columns} {new}")
    if rejected is not None:
        _insert_rejected(wh, "events", rejected)
    present = file.good.num_rows - loaded - quarantined
    return LoadResult(
        "raw.events",
        str(file.path),
        file.rows_read,
        loaded,
        file.rows_rejected + quarantined,
        file.duplicates_in_file + present,
    )


def _upsert(wh: Warehouse, file: PreparedFile, staged: str, rejected: str | None) -> LoadResult:
    """Replace the rows whose key is in the file and whose content changed; rows identical to
    what is loaded are left alone (a reload changes nothing, not even ``loaded_at``)."""
    key = {"items": "item_id", "users": "user_id"}[file.table]
    target = wh.table(RAW, file.table)
    same = " and ".join(_same(c) for c in file.good.column_names if c not in (key, "loaded_at"))
    changed = (
        f"select s.{key} from {staged} s where not exists "
        f"(select 1 from {target} t where t.{key} = s.{key} and {same})"
    )
    loaded = _scalar(wh, f"select count(*) as n from ({changed})")
    wh.execute(f"delete from {target} where {key} in ({changed})")
    wh.execute(
        f"insert into {target} select * from {staged} where {key} not in "
        f"(select {key} from {target})"
    )
    if rejected is not None:
        _insert_rejected(wh, file.table, rejected)
    return LoadResult(
        f"raw.{file.table}",
        str(file.path),
        file.rows_read,
        loaded,
        file.rows_rejected,
        file.good.num_rows - loaded,
    )


def _same(column: str) -> str:
    return f"s.{column} is not distinct from t.{column}"


def ingest_events(
    wh: Warehouse, path: Path, *, quarantine: bool = False, loaded_at: datetime | None = None
) -> LoadResult:
    """Check and load one events file in its own transaction; see the module docstring."""
    return load_files(wh, [prepare_events(path, quarantine=quarantine, loaded_at=loaded_at)])[0]


def ingest_items(
    wh: Warehouse, path: Path, *, quarantine: bool = False, loaded_at: datetime | None = None
) -> LoadResult:
    """Check and load a catalog file; rows replace the catalog rows with the same item_id."""
    return load_files(wh, [prepare_items(path, quarantine=quarantine, loaded_at=loaded_at)])[0]


def ingest_users(
    wh: Warehouse, path: Path, *, quarantine: bool = False, loaded_at: datetime | None = None
) -> LoadResult:
    """Check and load a users file; rows replace the user rows with the same user_id."""
    return load_files(wh, [prepare_users(path, quarantine=quarantine, loaded_at=loaded_at)])[0]
