"""The Airflow plugin loads through Airflow's plugin manager and serves its page (FastAPI test
client; the real api-server and a browser: tests/integration/test_plugin_browser.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def plugin(airflow_db):
    from airflow import plugins_manager

    plugins, _ = plugins_manager._get_plugins()
    assert plugins_manager.get_import_errors() == {}
    (found,) = [p for p in plugins if p.name == "recpipe"]
    return found


def test_plugin_mounts_an_app_and_adds_a_navigation_link(plugin):
    (app,) = plugin.fastapi_apps
    assert app["url_prefix"] == "/recpipe"
    (view,) = plugin.external_views
    assert view["destination"] == "nav" and view["url_route"] == "recpipe"
    assert not view["href"].startswith("/")  # relative: works under a base URL


def test_page_before_anything_was_ingested(plugin, recpipe_home):
    from fastapi.testclient import TestClient

    reply = TestClient(plugin.fastapi_apps[0]["app"]).get("/")
    assert reply.status_code == 200 and "no warehouse" in reply.text


def test_page_on_an_empty_warehouse_shows_every_section(plugin, recpipe_home):
    from fastapi.testclient import TestClient

    from recpipe.settings import load_settings
    from recpipe.tables import ensure_tables
    from recpipe.warehouse import session

    with session(load_settings()) as wh:
        ensure_tables(wh)
    reply = TestClient(plugin.fastapi_apps[0]["app"]).get("/")
    assert reply.status_code == 200
    for heading in ("Recent runs", "Gate results per run", "Candidate recall", "Sample of"):
        assert heading in reply.text
