"""One prepared warehouse for the reliability tests: the tiny shop plus awkward users, built by
dbt and published for two dates (D-1, then D) by the pipeline's stage functions.

Building costs ~45 s (two dbt builds), so it happens once per session; a test that changes
anything works on its own copy of the RECPIPE_HOME (``shop`` fixture, a 15 MB file copy).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from recpipe import pipeline
from recpipe.dbt_cli import run_dbt
from recpipe.ingest import ingest_events, ingest_items, ingest_users
from recpipe.settings import Settings, load_settings
from recpipe.warehouse import session

K = 10
# Users that must be served like anyone else: ids are data, never SQL or spreadsheet formulas.
ODD_USERS = (
    "x'); drop table raw.events; --",
    '=HYPERLINK("http://evil.example","click")',
    "ünï©ødé 🛒",
)
ONE_EVENT_USER = "u-with-one-event"


@dataclass(frozen=True)
class PreparedShop:
    home: Path
    previous: date  # D-1, published first
    as_of: date  # D, published last; the warehouse's dbt tables are built for D
    digests: dict[date, str]


def digest(frame: pd.DataFrame) -> str:
    """A hash of a frame's rows, in order."""
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).values).hexdigest()


def published(settings: Settings, run_date: date | None = None, view: str = "recommendations"):
    with session(settings) as wh:
        where = "where run_date = @d" if run_date else ""
        return wh.query_df(
            f"select * from recpipe.{view} {where} order by run_date, user_id, rank",
            {"d": run_date} if run_date else None,
        )


def dbt_build(settings: Settings, as_of: date, *args: str) -> None:
    """``dbt build`` of the whole project for ``as_of`` on the settings' warehouse."""
    # target and logs beside the home, so copy_home does not copy them
    run_dbt(
        "build",
        settings,
        as_of=as_of,
        work_dir=settings.home.parent / f"{settings.home.name}_dbt",
        extra_args=args,
    )


def make_run(as_of: date, run_id: str, retrain: str = "auto", k: int = K) -> pipeline.Run:
    return pipeline.Run(as_of=as_of.isoformat(), run_id=run_id, k=k, retrain=retrain)


def run_stages(settings: Settings, run: pipeline.Run, *, through: str = "publish") -> str:
    """Every stage after dbt, as the DAG runs them; returns the serving model version."""
    pipeline.start_run(run, settings)
    pipeline.check_raw(run, settings)
    pipeline.check_features(run, settings)
    pipeline.generate_python_candidates(run, settings)
    pipeline.merge_python_candidates(run, settings)
    pipeline.check_candidates(run, settings)
    version = pipeline.train_or_load_ranker(run, settings)
    pipeline.check_model(run, version, settings)
    pipeline.score_candidates(run, version, settings)
    if through == "score":
        return version
    pipeline.check_output(run, settings)
    pipeline.publish_recommendations(run, settings)
    return version


def _awkward_events(shop_events: Path, out: Path, last_day: date) -> Path:
    """The shop's events plus a user with a single event and users with SQL/formula/unicode ids."""
    events = pd.read_csv(shop_events, dtype=str)
    donor = events[events["user_id"] == events["user_id"].iloc[0]]
    extra = [donor.assign(user_id=user) for user in ODD_USERS]
    single = donor.head(1).assign(
        user_id=ONE_EVENT_USER, event_ts=f"{last_day - timedelta(days=3)}T12:00:00Z"
    )
    pd.concat([events, *extra, single]).to_csv(out, index=False)
    return out


@pytest.fixture(scope="session")
def prepared_shop(tmp_path_factory, tiny_shop) -> PreparedShop:
    root = tmp_path_factory.mktemp("reliability")
    settings = replace(load_settings(), home=root / "template")
    as_of = tiny_shop.end_date + timedelta(days=1)
    previous = as_of - timedelta(days=1)
    events = _awkward_events(tiny_shop.files["events"], root / "events.csv", tiny_shop.end_date)
    with session(settings) as wh:
        ingest_items(wh, tiny_shop.files["items"])
        ingest_users(wh, tiny_shop.files["users"])
        ingest_events(wh, events)
    digests = {}
    for day in (previous, as_of):
        dbt_build(settings, day)
        run_stages(settings, make_run(day, f"prepared-{day}"))
        digests[day] = digest(published(settings, day))
    return PreparedShop(settings.home, previous, as_of, digests)


def copy_home(prepared: PreparedShop, dest: Path) -> Settings:
    shutil.copytree(prepared.home, dest)
    return replace(load_settings(), home=dest)


@pytest.fixture
def shop(prepared_shop, tmp_path) -> Settings:
    """Settings for a private copy of the prepared warehouse (dbt tables built for D)."""
    return copy_home(prepared_shop, tmp_path / "home")
