"""The Airflow plugin loads through Airflow's plugin manager, requires Airflow's auth on every
route and serves its page (FastAPI test client with tokens minted by Airflow's auth manager; the
real api-server and a browser: tests/integration/test_plugin_browser.py and
tests/integration/test_airflow_services.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def plugin(airflow_db):
    from airflow import plugins_manager

    plugins, _ = plugins_manager._get_plugins()
    assert plugins_manager.get_import_errors() == {}
    (found,) = [p for p in plugins if p.name == "recpipe"]
    return found


@pytest.fixture(scope="module")
def auth_manager(airflow_db):
    from airflow.api_fastapi.app import init_auth_manager

    return init_auth_manager()


def token_for(auth_manager, role: str | None) -> str:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return auth_manager.generate_jwt(SimpleAuthManagerUser(username=f"u_{role}", role=role))


@pytest.fixture
def client(plugin, auth_manager):
    """A test client of the plugin's app, logged in as a viewer (the UI's JWT cookie)."""
    from fastapi.testclient import TestClient

    test_client = TestClient(plugin.fastapi_apps[0]["app"])
    test_client.cookies.set("_token", token_for(auth_manager, "viewer"))
    return test_client


def test_plugin_mounts_an_app_and_adds_a_navigation_link(plugin):
    (app,) = plugin.fastapi_apps
    assert app["url_prefix"] == "/recpipe"
    (view,) = plugin.external_views
    assert view["destination"] == "nav" and view["url_route"] == "recpipe"
    assert not view["href"].startswith("/")  # relative: works under a base URL


@pytest.mark.parametrize("path", ["/", "/health"])
def test_every_route_refuses_anonymous_and_forged_callers(plugin, auth_manager, path):
    from fastapi.testclient import TestClient

    anonymous = TestClient(plugin.fastapi_apps[0]["app"])
    assert anonymous.get(path).status_code == 401
    forged = anonymous.get(path, headers={"Authorization": "Bearer not-a-jwt"})
    assert forged.status_code == 403
    assert "recommendations" not in forged.text.lower()
    viewer = {"Authorization": f"Bearer {token_for(auth_manager, 'viewer')}"}
    assert anonymous.get(path, headers=viewer).status_code == 200
    # a token without a role that may read recpipe_daily's runs
    nobody = {"Authorization": f"Bearer {token_for(auth_manager, None)}"}
    assert anonymous.get(path, headers=nobody).status_code == 403


def test_every_route_of_the_app_carries_the_auth_dependency(plugin):
    # Airflow's own check (requires_access_dag), by name: the plugin file may be imported twice
    # in one test session (Airflow's loader and a test), each import with its own closure.
    app = plugin.fastapi_apps[0]["app"]
    paths = [route.path for route in app.routes if hasattr(route, "dependant")]
    assert {"/", "/health"} <= set(paths)
    for route in app.routes:
        if hasattr(route, "dependant"):
            calls = [dep.call.__qualname__ for dep in route.dependant.dependencies]
            assert "requires_access_dag.<locals>.inner" in calls, route.path


def test_page_before_anything_was_ingested(client, recpipe_home):
    reply = client.get("/")
    assert reply.status_code == 200 and "no warehouse" in reply.text


def test_page_on_an_empty_warehouse_shows_every_section(client, recpipe_home):
    from recpipe.settings import load_settings
    from recpipe.tables import ensure_tables
    from recpipe.warehouse import session

    with session(load_settings()) as wh:
        ensure_tables(wh)
    reply = client.get("/")
    assert reply.status_code == 200
    for heading in ("Recent runs", "Gate results per run", "Candidate recall", "Sample of"):
        assert heading in reply.text


def test_page_while_another_process_holds_the_writer(client, recpipe_home):
    """The page never takes the writer lock: while another process writes, it says so."""
    import subprocess
    import sys

    from recpipe.settings import load_settings
    from recpipe.tables import ensure_tables
    from recpipe.warehouse import session

    settings = load_settings()
    with session(settings) as wh:
        ensure_tables(wh)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, duckdb; con = duckdb.connect(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(120)",
            str(settings.duckdb_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "locked"
        reply = client.get("/")
        assert reply.status_code == 200 and "locked by another process" in reply.text
    finally:
        writer.kill()
        writer.wait(timeout=10)
    reply = client.get("/")
    assert reply.status_code == 200 and "Recent runs" in reply.text
