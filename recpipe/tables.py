"""Names and DDL of the tables recpipe owns (raw inputs, work tables, published outputs)."""

from __future__ import annotations

from recpipe.warehouse import WORK, Warehouse

RAW = "raw"
PUBLISHED = "recpipe"
CANDIDATES = "candidates"

EVENT_TYPES = ("view", "add_to_cart", "purchase")
# How much each event type says about a user's interest: the Python sources' interaction
# weights and the personal top-frequency baseline (dbt's macros/shop.sql has the same weights;
# tests/unit/test_shared_settings.py keeps them equal).
EVENT_WEIGHTS = {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}

# Column order of the input contract (README "Input files").
EVENT_COLUMNS = ("user_id", "item_id", "event_type", "event_ts", "session_id", "quantity", "price")
ITEM_COLUMNS = ("item_id", "category", "brand", "price", "is_available")
USER_COLUMNS = ("user_id", "signup_ts", "segment")

# recpipe.candidate_recall's `source` of the union of every candidate source.
UNION_SOURCE = "union"

RECOMMENDATION_COLUMNS = (
    "run_date",
    "user_id",
    "rank",
    "item_id",
    "score",
    "model_version",
    "sources",
)

_DDL = {
    (RAW, "events"): """
        event_id varchar not null, user_id varchar not null, item_id varchar not null,
        event_type varchar not null, event_ts timestamp not null, session_id varchar,
        quantity integer not null, price double, loaded_at timestamp, source_file varchar""",
    (RAW, "items"): """
        item_id varchar not null, category varchar, brand varchar, price double,
        is_available boolean not null, loaded_at timestamp""",
    (RAW, "users"): """
        user_id varchar not null, signup_ts timestamp, segment varchar, loaded_at timestamp""",
    (RAW, "rejected_events"): """
        source_file varchar, row_number bigint, reason varchar, user_id varchar, item_id varchar,
        event_type varchar, event_ts varchar, session_id varchar, quantity varchar,
        price varchar, rejected_at timestamp""",
    (RAW, "rejected_items"): """
        source_file varchar, row_number bigint, reason varchar, item_id varchar,
        category varchar, brand varchar, price varchar, is_available varchar,
        rejected_at timestamp""",
    (PUBLISHED, "recommendations"): """
        run_date date not null, user_id varchar not null, rank integer not null,
        item_id varchar not null, score double not null, model_version varchar not null,
        sources varchar not null""",
    (PUBLISHED, "pipeline_runs"): """
        run_date date not null, run_id varchar not null, status varchar not null,
        started_at timestamp, finished_at timestamp, model_version varchar, users bigint,
        rows bigint, params varchar, error varchar""",
    (PUBLISHED, "dq_results"): """
        run_date date not null, run_id varchar not null, stage varchar not null,
        check_name varchar not null, status varchar not null, observed double,
        threshold double, details varchar, checked_at timestamp""",
    (PUBLISHED, "model_registry"): """
        model_version varchar not null, trained_at timestamp, as_of_date date,
        train_cutoff date, train_label_end date, valid_cutoff date, valid_label_end date,
        params varchar, features varchar, feature_importance varchar,
        validation_metrics varchar, baseline_metrics varchar, status varchar not null,
        artifact_path varchar""",
    (PUBLISHED, "feature_profiles"): """
        run_date date not null, run_id varchar not null, table_name varchar not null,
        column_name varchar not null, row_count bigint, mean double, stddev double,
        null_share double, out_of_range bigint, profiled_at timestamp""",
    (PUBLISHED, "candidate_recall"): """
        run_date date not null, run_id varchar not null, cutoff date not null,
        source varchar not null, depth integer not null, recall double, users bigint,
        computed_at timestamp""",
}

# The Python candidate sources' tables (the SQL sources are dbt models): like dbt's per-cutoff
# tables, one partition per cutoff, and a run replaces only its own cutoffs.
PYTHON_CANDIDATE_COLUMNS = """
    as_of_date date not null, user_id varchar not null, item_id varchar not null,
    score double not null, rank bigint not null"""
PYTHON_CANDIDATE_LAYOUT = {"partition_by": "as_of_date", "cluster_by": ("user_id",)}

# BigQuery partitioning and clustering (DuckDB ignores it): the big tables are read and replaced
# one date at a time, and looked up per user.
_LAYOUT = {
    (RAW, "events"): ("date(event_ts)", ("user_id", "item_id")),
    (PUBLISHED, "recommendations"): ("run_date", ("user_id",)),
    (PUBLISHED, "dq_results"): ("run_date", ("run_id",)),
    (PUBLISHED, "candidate_recall"): ("run_date", ("run_id",)),
    (PUBLISHED, "feature_profiles"): ("run_date", ("run_id",)),
}


def ensure_tables(wh: Warehouse) -> None:
    """Create recpipe's own schemas, tables and the ``recommendations_latest`` view if missing."""
    for schema in (RAW, WORK, PUBLISHED):
        wh.execute(f"create schema if not exists {schema}")
    for (schema, name), columns in _DDL.items():
        partition_by, cluster_by = _LAYOUT.get((schema, name), (None, ()))
        wh.create_table(schema, name, columns, partition_by=partition_by, cluster_by=cluster_by)
    recs = wh.table(PUBLISHED, "recommendations")
    # `if not exists`, not `or replace`: every stage calls this, and on BigQuery replacing the
    # view each time is a metadata update that concurrent runs would race for (rate-limited).
    wh.execute(
        f"create view if not exists {wh.table(PUBLISHED, 'recommendations_latest')} as "
        f"select * from {recs} where run_date = (select max(run_date) from {recs})"
    )
