"""The recpipe page inside the Airflow UI, loaded by a real browser: headless Chromium driven by
chromedriver over the W3C WebDriver protocol (plain HTTP, no extra Python package), from the
api-server of the shared Airflow scenario (conftest.py). Saves docs/plugin_screenshot.png."""

from __future__ import annotations

import base64
import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from recpipe.services import free_port, stop_processes

pytestmark = pytest.mark.slow

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "plugin_screenshot.png"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1700",
]


def save_small_png(png: bytes, path: Path) -> None:
    """Save a screenshot with a 64-colour palette: a few tens of kB, fit to commit."""
    import io

    from PIL import Image

    path.parent.mkdir(exist_ok=True)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=64).save(path, optimize=True)


class Browser:
    """A WebDriver session in headless Chromium."""

    def __init__(self, driver_url: str, profile: str):
        self.driver_url = driver_url
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": shutil.which("chromium") or "/usr/bin/chromium",
                "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"],
            },
        }
        reply = requests.post(
            f"{driver_url}/session",
            json={"capabilities": {"alwaysMatch": capabilities}},
            timeout=60,
        )
        reply.raise_for_status()
        self.session = f"{driver_url}/session/{reply.json()['value']['sessionId']}"

    def call(self, method: str, path: str, body=None):
        reply = requests.request(method, f"{self.session}{path}", json=body, timeout=60)
        reply.raise_for_status()
        return reply.json()["value"]

    def open(self, url: str) -> None:
        self.call("POST", "/url", {"url": url})

    def run(self, script: str):
        return self.call("POST", "/execute/sync", {"script": script, "args": []})

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("GET", "/screenshot"))

    def quit(self) -> None:
        requests.delete(self.session, timeout=30)


@pytest.fixture(scope="module")
def browser():
    driver = shutil.which("chromedriver")
    if not driver or not shutil.which("chromium"):
        pytest.fail("Debian packages chromium and chromium-driver are needed (.ci/run installs)")
    port = free_port()
    proc = subprocess.Popen(
        [driver, f"--port={port}", "--allowed-ips=127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    profile = tempfile.mkdtemp(prefix="recpipe-chromium-")
    session = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/status", timeout=2).raise_for_status()
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        session = Browser(f"http://127.0.0.1:{port}", profile)
        yield session
    finally:
        if session is not None:
            session.quit()
        stop_processes([proc], grace_s=5)
        shutil.rmtree(profile, ignore_errors=True)


def test_airflow_lists_the_recpipe_page_in_its_navigation(airflow_services):
    running, _ = airflow_services
    plugins = running.client().get("/api/v2/plugins")["plugins"]
    (recpipe,) = [p for p in plugins if p["name"] == "recpipe"]
    (view,) = recpipe["external_views"]
    assert (view["href"], view["destination"], view["url_route"]) == ("recpipe/", "nav", "recpipe")
    assert [app["url_prefix"] for app in recpipe["fastapi_apps"]] == ["/recpipe"]


def log_in(browser: Browser, services) -> None:
    """Log the browser in as Airflow's UI does: its JWT in the ``_token`` cookie."""
    client = services.client()
    client._login()
    browser.open(f"{services.url}/auth/login/")
    browser.run(f"document.cookie = '_token={client._token}; path=/';")


def test_browser_gets_the_page_only_when_logged_in(airflow_services, browser):
    running, _ = airflow_services
    with contextlib.suppress(requests.HTTPError):  # no cookie yet on a fresh page
        browser.call("DELETE", "/cookie")
    browser.open(f"{running.url}/recpipe/")
    text = browser.run("return document.body.innerText;")
    assert "Not authenticated" in text and "Recent runs" not in text
    log_in(browser, running)
    browser.open(f"{running.url}/recpipe/")
    assert "Recent runs" in browser.run("return document.body.innerText;")


def test_browser_shows_runs_gates_metrics_recall_and_recommendations(airflow_scenario, browser):
    log_in(browser, airflow_scenario.services)
    url = f"{airflow_scenario.services.url}/recpipe/"
    browser.open(url)
    page = browser.run(
        """
        const rows = (cls) => Array.from(document.querySelectorAll(`table.${cls} tbody tr`))
            .map((tr) => Array.from(tr.cells).map((td) => td.innerText));
        const img = (id) => { const i = document.getElementById(id);
            return i ? [i.complete, i.naturalWidth, i.naturalHeight] : null; };
        return {
          title: document.title,
          headings: Array.from(document.querySelectorAll('h2')).map((h) => h.innerText),
          runs: rows('runs'), gateSummary: rows('gate-summary'), gates: rows('gates'),
          metrics: rows('metrics'), sample: rows('sample'),
          metricsPlot: img('metrics-plot'), recallPlot: img('recall-plot'),
          text: document.body.innerText,
        };
        """
    )
    save_small_png(browser.screenshot(), SCREENSHOT)

    assert page["title"] == "recpipe"
    assert page["headings"] == [
        "Recent runs",
        "Gate results per run",
        "Ranker vs the strongest baseline",
        "Candidate recall",
        "Sample of the latest published recommendations",
    ]
    run_ids = {airflow_scenario.manual_run["dag_run_id"]} | {
        r["dag_run_id"] for r in airflow_scenario.backfill_runs
    }
    shown_runs = {row[1] for row in page["runs"]}
    assert shown_runs == run_ids
    assert all(row[2] == "success" for row in page["runs"])
    assert {row[1] for row in page["gateSummary"]} == run_ids
    assert all(row[4] == "0" for row in page["gateSummary"])  # no failed check
    assert {row[1] for row in page["gates"]} >= {"raw", "features", "candidates", "model"}
    trained_for = {row[1][:10] for row in page["metrics"]}  # the backfill retrained each date
    assert trained_for == {d.isoformat() for d in airflow_scenario.backfill_dates}
    for plot in (page["metricsPlot"], page["recallPlot"]):  # the PNG decoded in the browser
        assert plot[0] is True and plot[1] > 300 and plot[2] > 150, plot
    latest = max(airflow_scenario.backfill_dates).isoformat()
    assert page["sample"] and all(row[0] == latest for row in page["sample"])
    assert [int(row[2]) for row in page["sample"][:5]] == [1, 2, 3, 4, 5]
    assert "Read live from the warehouse" in page["text"]
    assert 20_000 < SCREENSHOT.stat().st_size < 400_000


def test_the_airflow_ui_embeds_the_page_under_its_plugin_route(airflow_scenario, browser):
    """The navigation entry opens /plugin/recpipe: the Airflow UI with the page in an iframe."""
    base = airflow_scenario.services.url
    log_in(browser, airflow_scenario.services)  # else the UI would redirect to the login
    browser.open(f"{base}/plugin/recpipe")
    deadline = time.monotonic() + 60
    src = None
    while time.monotonic() < deadline:
        src = browser.run(
            "const f = document.querySelector('iframe'); return f ? f.getAttribute('src') : null;"
        )
        if src:
            break
        time.sleep(1)
    assert src and src.rstrip("/").endswith("recpipe"), src
    # the iframe's page is served to the logged-in user (the UI's cookie authorises it)
    deadline = time.monotonic() + 60
    inner = ""
    while time.monotonic() < deadline and "Recent runs" not in inner:
        inner = browser.run(
            "const f = document.querySelector('iframe');"
            "return f && f.contentDocument ? f.contentDocument.body.innerText : '';"
        )
        time.sleep(1)
    assert "Recent runs" in inner, inner[:300]
