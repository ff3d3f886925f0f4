"""``recpipe demo`` ends its shop yesterday (so an unpaused DAG's first run, today, is fresh) and
refuses to mix it into a warehouse that holds a shop ending on another day."""

from __future__ import annotations

from datetime import date

import pytest

from recpipe.demo import _refuse_another_shop, demo_end_date
from recpipe.ingest import ingest_events, ingest_items
from recpipe.settings import load_settings
from recpipe.synthetic import generate_shop
from recpipe.warehouse import session


def test_the_demo_shop_ends_yesterday():
    assert demo_end_date(date(2026, 12, 2)) == date(2026, 12, 1)
    assert demo_end_date(date(2027, 1, 1)) == date(2026, 12, 31)


def test_a_warehouse_with_another_days_shop_is_refused(recpipe_home, tmp_path):
    settings = load_settings()
    with session(settings) as wh:
        _refuse_another_shop(settings, wh, date(2026, 12, 1))  # nothing loaded yet: fine
    shop = generate_shop(
        tmp_path / "shop",
        users=30,
        items=20,
        days=5,
        end_date=date(2026, 11, 30),
        show_progress=False,
    )
    with session(settings) as wh:
        ingest_items(wh, shop.files["items"])
        ingest_events(wh, shop.files["events"])
        _refuse_another_shop(settings, wh, shop.end_date)  # the same day's demo again: fine
        with pytest.raises(RuntimeError, match="holds events up to 2026-11-30.*fresh RECPIPE_HOME"):
            _refuse_another_shop(settings, wh, date(2026, 12, 1))
