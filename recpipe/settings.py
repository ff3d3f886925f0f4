"""One typed settings object, built from environment variables.

Nothing else in recpipe reads the environment for configuration: paths, the warehouse choice and
BigQuery coordinates all come from here. Credentials are never held here (BigQuery uses
Application Default Credentials or the Airflow connection), so printing settings is safe.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent


def _shipped(name: str) -> Path:
    """A folder of the checkout (``dbt_project``, ``dags``, ``plugins``) or, installed from a
    wheel, its copy inside the package (pyproject.toml ships them as ``recpipe/<name>``)."""
    inside = PACKAGE_DIR / name
    return inside if inside.is_dir() else REPO_ROOT / name


DBT_PROJECT_DIR = _shipped("dbt_project")
DAGS_DIR = _shipped("dags")
PLUGINS_DIR = _shipped("plugins")

WAREHOUSES = ("duckdb", "bigquery")
# dbt threads on DuckDB (RECPIPE_DBT_THREADS): docs/decisions.md has the measurements.
DEFAULT_DBT_THREADS = 2


def dbt_executable() -> str:
    """The dbt installed beside this Python (the venv need not be on PATH)."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


@dataclass(frozen=True)
class Settings:
    """Run-time configuration of recpipe.

    home: working directory for the DuckDB file, model artifacts and the local Airflow home.
    warehouse: ``duckdb`` (embedded default) or ``bigquery``.
    active_days: users with an event in this many days before the as-of date get recommendations.
    label_days: length of the label window used to train and to validate the ranker.
    train_cutoffs: stacked training cutoffs, one label window apart (1 = a single one).
    max_active_runs: runs of different dates at once on BigQuery (DuckDB: always 1).
    users_per_chunk: users whose candidates are ranked (trained on, scored) in memory at once.
    max_labelled_users: the most users of one cutoff that training and validation read (a
    deterministic sample, the same in every run and warehouse): memory and time stop growing
    with the shop once there are enough labelled baskets; scoring always serves every user.
    duckdb_memory_limit: DuckDB's ``memory_limit`` for dbt and the Python stages alike (beyond it
    DuckDB spills to disk instead of taking more RAM); DuckDB's own default is 80 % of RAM.
    dbt_threads: models and tests dbt runs at once on DuckDB (BigQuery: the profile's own).
    More overlap dbt's per-node work with SQL on a small shop, but share one memory limit.
    user_shards: the Python candidate and scoring stages run as this many mapped tasks, one per
    contiguous slice of the users (each its own task a different worker can take; DuckDB runs
    them one at a time).
    discovery_slots: of each user's K published items, at most this many are reserved for the
    best-scored candidates the user never bought, when the ranker's own top K holds fewer (0 =
    the ranker's top K as is). A trade a shop makes on purpose: docs/decisions.md.
    lock_timeout_s: DuckDB: how long to wait for another process to release the warehouse file.
    dbt_manifest: the manifest cosmos renders the dbt task group from, built by
    ``recpipe manifest`` (recpipe/dbt_manifest.py) before Airflow parses the DAG.
    """

    home: Path
    warehouse: str = "duckdb"
    active_days: int = 90
    label_days: int = 7
    train_cutoffs: int = 1
    candidate_depth: int = 50
    history_days: int = 180
    default_k: int = 20
    seed: int = 42
    max_active_runs: int = 4
    users_per_chunk: int = 2_500
    max_labelled_users: int = 20_000
    duckdb_memory_limit: str = "3GB"
    dbt_threads: int = DEFAULT_DBT_THREADS
    user_shards: int = 1
    discovery_slots: int = 0
    lock_timeout_s: int = 30
    bq_project: str | None = None
    bq_location: str = "US"
    bq_dataset_prefix: str = ""
    bq_api_endpoint: str | None = field(default=None, repr=False)
    bq_credentials: str = "adc"
    bq_maximum_bytes_billed: int | None = None
    dbt_manifest: Path = DBT_PROJECT_DIR / "target" / "manifest.json"

    @property
    def duckdb_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    # What differs between warehouses, asked by callers instead of comparing names.
    @property
    def single_writer(self) -> bool:
        """One process may write at a time (DuckDB's file lock): one run at a time, every task
        in a one-slot pool, readers wait or share; BigQuery takes concurrent jobs."""
        return self.warehouse == "duckdb"

    @property
    def warehouse_file(self) -> Path | None:
        """The file the warehouse lives in (DuckDB), None for a service (BigQuery)."""
        return self.duckdb_path if self.warehouse == "duckdb" else None

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def dbt_target(self) -> str:
        """The dbt target: the warehouse's name, or ``bigquery_emulator`` (a local endpoint)."""
        if self.warehouse == "bigquery" and self.bq_api_endpoint:
            return "bigquery_emulator"
        return self.warehouse

    def dbt_vars(self) -> dict[str, int]:
        """dbt vars the Python stages must agree with (the cutoffs, active users, the sample of
        labelled users, depth); dbt_project.yml holds the same defaults for dbt run by hand."""
        return {
            "label_days": self.label_days,
            "train_cutoffs": self.train_cutoffs,
            "active_days": self.active_days,
            "candidate_depth": self.candidate_depth,
            "history_days": self.history_days,
            "max_labelled_users": self.max_labelled_users,
        }

    def dbt_env(self) -> dict[str, str]:
        """Environment variables read by dbt_project/profiles.yml."""
        env = {
            "RECPIPE_DUCKDB_PATH": str(self.duckdb_path),
            "RECPIPE_DUCKDB_MEMORY_LIMIT": self.duckdb_memory_limit,
            "RECPIPE_DBT_THREADS": str(self.dbt_threads),
            "RECPIPE_DBT_TARGET": self.dbt_target,
        }
        if self.bq_project:
            env["RECPIPE_BQ_PROJECT"] = self.bq_project
        env["RECPIPE_BQ_LOCATION"] = self.bq_location
        env["RECPIPE_BQ_DATASET_PREFIX"] = self.bq_dataset_prefix
        if self.bq_api_endpoint:
            env["RECPIPE_BQ_API_ENDPOINT"] = self.bq_api_endpoint
        if self.bq_maximum_bytes_billed:
            env["RECPIPE_BQ_MAXIMUM_BYTES_BILLED"] = str(self.bq_maximum_bytes_billed)
        return env

    def parse_time_settings(self) -> dict[str, str]:
        """The settings the DAG file bakes into the DAG when it is parsed (dbt target, profile,
        env and vars, the number of user shards), keyed by the environment variable each comes
        from; a worker with other values would run dbt and the Python stages on different
        warehouses or cutoffs, or publish from another number of shards."""
        return {
            "RECPIPE_WAREHOUSE": self.warehouse,
            "RECPIPE_BQ_CREDENTIALS": self.bq_credentials,
            **{f"RECPIPE_{name.upper()}": str(value) for name, value in self.dbt_vars().items()},
            "RECPIPE_USER_SHARDS": str(self.user_shards),
            **self.dbt_env(),
        }


def settings_mismatch(parsed: dict[str, str], current: Settings) -> str | None:
    """One line naming every setting that differs between ``parsed`` (what the DAG was parsed
    with, :meth:`Settings.parse_time_settings`) and ``current`` (this process); None if none."""
    here = current.parse_time_settings()
    differ = [
        f"{key} parsed {parsed.get(key)!r}, here {here.get(key)!r}"
        for key in sorted(set(parsed) | set(here))
        if parsed.get(key) != here.get(key)
    ]
    if not differ:
        return None
    return (
        "the DAG was parsed with other RECPIPE_* settings than this worker has ("
        + "; ".join(differ)
        + "): give the dag-processor, scheduler and workers the same RECPIPE_* environment"
    )


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as err:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from err


def _non_negative_int_env(name: str, default: int) -> int:
    value = _int_env(name, default)
    if value < 0:
        raise ValueError(f"{name} must be 0 or more, got {value}")
    return value


def _positive_int_env(name: str, default: int) -> int:
    value = _int_env(name, default)
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


_MEMORY = re.compile(r"\d+(\.\d+)?\s*(B|[KMGT]i?B)", re.IGNORECASE)


def _memory_env(name: str, default: str) -> str:
    value = (os.environ.get(name) or default).strip()
    if not _MEMORY.fullmatch(value):
        raise ValueError(f"{name} must be an amount of memory such as 3GB or 500MiB, got {value!r}")
    return value


def _choice_env(name: str, choices: tuple[str, ...], default: str) -> str:
    value = (os.environ.get(name) or default).strip().lower()
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def load_settings() -> Settings:
    """Build Settings from the environment (``RECPIPE_*`` variables)."""
    warehouse = os.environ.get("RECPIPE_WAREHOUSE", "duckdb").strip().lower()
    if warehouse not in WAREHOUSES:
        raise ValueError(f"RECPIPE_WAREHOUSE must be one of {WAREHOUSES}, got {warehouse!r}")
    home = Path(os.environ.get("RECPIPE_HOME", ".recpipe")).resolve()
    return Settings(
        home=home,
        warehouse=warehouse,
        active_days=_int_env("RECPIPE_ACTIVE_DAYS", 90),
        label_days=_int_env("RECPIPE_LABEL_DAYS", 7),
        train_cutoffs=_int_env("RECPIPE_TRAIN_CUTOFFS", 1),
        candidate_depth=_int_env("RECPIPE_CANDIDATE_DEPTH", 50),
        history_days=_int_env("RECPIPE_HISTORY_DAYS", 180),
        seed=_int_env("RECPIPE_SEED", 42),
        max_active_runs=_int_env("RECPIPE_MAX_ACTIVE_RUNS", 4),
        users_per_chunk=_int_env("RECPIPE_USERS_PER_CHUNK", 2_500),
        max_labelled_users=_positive_int_env("RECPIPE_MAX_LABELLED_USERS", 20_000),
        duckdb_memory_limit=_memory_env("RECPIPE_DUCKDB_MEMORY_LIMIT", "3GB"),
        dbt_threads=_positive_int_env("RECPIPE_DBT_THREADS", DEFAULT_DBT_THREADS),
        user_shards=_positive_int_env("RECPIPE_USER_SHARDS", 1),
        discovery_slots=_non_negative_int_env("RECPIPE_DISCOVERY_SLOTS", 0),
        lock_timeout_s=_int_env("RECPIPE_LOCK_TIMEOUT_S", 30),
        bq_project=os.environ.get("RECPIPE_BQ_PROJECT") or None,
        bq_location=os.environ.get("RECPIPE_BQ_LOCATION", "US"),
        bq_dataset_prefix=os.environ.get("RECPIPE_BQ_DATASET_PREFIX", ""),
        bq_api_endpoint=os.environ.get("RECPIPE_BQ_API_ENDPOINT") or None,
        bq_credentials=_choice_env("RECPIPE_BQ_CREDENTIALS", ("adc", "airflow"), "adc"),
        bq_maximum_bytes_billed=_int_env("RECPIPE_BQ_MAXIMUM_BYTES_BILLED", 50_000_000_000),
        dbt_manifest=Path(
            os.environ.get("RECPIPE_DBT_MANIFEST") or DBT_PROJECT_DIR / "target" / "manifest.json"
        ).resolve(),
    )
