"""Scale benchmark: generate a shop, ingest it, run ``recpipe_daily`` through Airflow on DuckDB.

    .venv/bin/python bench/scale.py --size 100k --size 1m          # one run each
    .venv/bin/python bench/scale.py --size 100k --repeat 3         # median of 3 runs

For each size, in a fresh ``RECPIPE_HOME`` under ``--work``: ``recpipe generate`` (Parquet),
``recpipe ingest`` (timed apart), a one-time set-up (``airflow db migrate``, and the dbt manifest
cosmos renders the DAG from when the dbt sources changed since it was built: deployment steps,
timed apart),
then ``recpipe run --as-of D`` (D = the day after the shop's last event; ``retrain=always`` so a
repeat does the same work) as a child process. It prints:

- seconds per stage, from the Airflow task instances of the run (the dbt sensors summed);
- rows per second: events in the shop / wall time of ``recpipe run``;
- peak RSS: the largest sum of RSS over the ``recpipe`` process and all its children, sampled
  every 0.2 s (and the largest single process), for the whole run and while each stage ran;
- orchestration overhead = wall time of ``recpipe run`` minus the time inside dbt's model and
  test SQL (the wall time during which dbt ran at least one node, from the node timings in
  ``run_results.json`` of the run's ``dbt build``, which runs several nodes at once) minus the
  time inside recpipe's Python stage bodies (the ``recpipe stage body`` lines that
  :func:`recpipe.airflow_tasks.stage` logs around each stage). What is left is process
  start, imports, DAG parsing, Airflow's scheduling and task start-up, dbt's start-up and
  parsing, and the sensors.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
# Shops of ~100k, ~1M and ~10M events (about 41 events per user over 60 days).
SIZES = {
    "100k": {"users": 2_500, "items": 1_000, "days": 60},
    "1m": {"users": 25_000, "items": 3_000, "days": 60},
    "10m": {"users": 250_000, "items": 10_000, "days": 60},
}
STAGE_LINE = re.compile(r"recpipe stage body: (\S+) took ([0-9.]+) s")
WROTE_LINE = re.compile(r"wrote ([\d,]+) events.*\((\d{4}-\d\d-\d\d) \.\. (\d{4}-\d\d-\d\d)\)")


@dataclass
class Measured:
    seconds: float
    peak_rss: int  # bytes, sum over the process tree
    peak_single_rss: int  # bytes, the largest one process
    output: str
    rss_series: list[tuple[float, int]] = field(default_factory=list)  # (epoch s, summed RSS)


@dataclass
class RunFigures:
    wall: float
    peak_rss: int
    peak_single_rss: int
    tasks: dict[str, float]
    dbt_sql: float
    dbt_nodes: int
    python_bodies: dict[str, float] = field(default_factory=dict)
    task_peak_rss: dict[str, int] = field(default_factory=dict)  # bytes, while the task ran

    @property
    def overhead(self) -> float:
        return self.wall - self.dbt_sql - sum(self.python_bodies.values())


def measure(cmd: list[str], env: dict[str, str]) -> Measured:
    """Run ``cmd``, sampling the RSS of it and all its children; fail loudly on error."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peaks = {"sum": 0, "single": 0}
    series: list[tuple[float, int]] = []

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = [p.memory_info().rss for p in [root, *root.children(recursive=True)]]
            except psutil.Error:
                rss = []
            if rss:
                peaks["sum"] = max(peaks["sum"], sum(rss))
                peaks["single"] = max(peaks["single"], max(rss))
                series.append((time.time(), sum(rss)))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    seconds = time.perf_counter() - started
    sampler.join()
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise SystemExit(f"{' '.join(cmd[2:4])} failed (exit {proc.returncode}):\n{tail}")
    return Measured(seconds, peaks["sum"], peaks["single"], output, series)


def recpipe(*args: str) -> list[str]:
    return [sys.executable, "-m", "recpipe.cli", *args]


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RECPIPE_"))}
    env.update({"RECPIPE_HOME": str(home), "RECPIPE_WAREHOUSE": "duckdb"})
    return env


def task_windows(home: Path) -> dict[str, tuple[float, float]]:
    """(start, end) in epoch seconds of every task instance of the latest DAG run, from
    Airflow's metadata DB (mapped tasks: from the first start to the last end)."""
    epoch = "(julianday({}) - 2440587.5) * 86400"
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        (run_id,) = db.execute(
            "select run_id from dag_run where dag_id = 'recpipe_daily' order by id desc limit 1"
        ).fetchone()
        rows = db.execute(
            f"select task_id, min({epoch.format('start_date')}), max({epoch.format('end_date')}) "
            "from task_instance where dag_id = 'recpipe_daily' and run_id = ? group by task_id",
            (run_id,),
        ).fetchall()
    return {task: (start or 0.0, end or start or 0.0) for task, start, end in rows}


def task_seconds(home: Path) -> dict[str, float]:
    """Duration of every task of the latest DAG run."""
    return {task: end - start for task, (start, end) in task_windows(home).items()}


def task_peaks(home: Path, series: list[tuple[float, int]]) -> dict[str, int]:
    """The largest summed RSS sampled while each task of the latest DAG run ran."""
    return {
        task: max((rss for at, rss in series if start <= at <= end), default=0)
        for task, (start, end) in task_windows(home).items()
    }


def dbt_sql_seconds(home: Path) -> tuple[float, int]:
    """Wall seconds during which dbt ran at least one model or test (compiling and executing
    it) in the run's ``dbt build``: the union of the nodes' timing intervals, since dbt runs
    several nodes at once (profile ``threads``); a node without timing counts its
    ``execution_time``."""
    results = json.loads((home / "dbt" / "run_results.json").read_text())["results"]
    intervals, untimed = [], 0.0
    for result in results:
        stamps = [
            (datetime.fromisoformat(t["started_at"]), datetime.fromisoformat(t["completed_at"]))
            for t in result.get("timing") or []
            if t.get("started_at") and t.get("completed_at")
        ]
        if stamps:
            intervals.append((min(s for s, _ in stamps), max(e for _, e in stamps)))
        else:
            untimed += result.get("execution_time") or 0.0
    covered, reach = 0.0, None
    for start, end in sorted(intervals):
        if reach is not None and start < reach:
            start = reach
        if end > start:
            covered += (end - start).total_seconds()
        reach = end if reach is None else max(reach, end)
    return covered + untimed, len(results)


def python_bodies(home: Path, as_of: date) -> dict[str, float]:
    log = (home / "logs" / f"recpipe_daily_{as_of}.log").read_text(errors="replace")
    bodies: dict[str, float] = {}
    for task, seconds in STAGE_LINE.findall(log):
        bodies[task] = float(seconds)  # the last run in the log wins
    return bodies


def run_once(home: Path, as_of: date) -> RunFigures:
    log = home / "logs" / f"recpipe_daily_{as_of}.log"
    if log.exists():
        log.unlink()
    (home / "dbt" / "run_results.json").unlink(missing_ok=True)
    done = measure(
        recpipe("run", "--as-of", as_of.isoformat(), "--param", "retrain=always"),
        environment(home),
    )
    sql, nodes = dbt_sql_seconds(home)
    return RunFigures(
        wall=done.seconds,
        peak_rss=done.peak_rss,
        peak_single_rss=done.peak_single_rss,
        tasks=task_seconds(home),
        task_peak_rss=task_peaks(home, done.rss_series),
        dbt_sql=sql,
        dbt_nodes=nodes,
        python_bodies=python_bodies(home, as_of),
    )


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def bench_size(name: str, work: Path, repeat: int) -> dict:
    shape = SIZES[name]
    base = work / name
    shutil.rmtree(base, ignore_errors=True)
    shop, home = base / "shop", base / "home"
    env = environment(home)
    gen = measure(
        recpipe(
            "generate", "--out", str(shop), "--format", "parquet",
            *(f"--{k}={v}" for k, v in shape.items()),
        ),
        env,
    )  # fmt: skip
    match = WROTE_LINE.search(gen.output)
    if match is None:
        raise SystemExit(f"recpipe generate printed no summary: {gen.output[-300:]}")
    events = int(match.group(1).replace(",", ""))
    as_of = date.fromisoformat(match.group(3)) + timedelta(days=1)
    files = {k: shop / f"{k}.parquet" for k in ("events", "items", "users")}
    ingest = measure(
        recpipe(
            "ingest", "--events", str(files["events"]), "--items", str(files["items"]),
            *(["--users", str(files["users"])] if files["users"].exists() else []),
        ),
        env,
    )  # fmt: skip
    setup = measure(
        [
            sys.executable, "-c",
            "from recpipe.airflow_runner import configure_airflow;"
            "from recpipe.dbt_manifest import ensure_manifest;"
            "from recpipe.settings import load_settings; s = load_settings();"
            "configure_airflow(s); ensure_manifest(s.dbt_manifest)",
        ],
        env,
    )  # fmt: skip
    runs = [run_once(home, as_of) for _ in range(repeat)]
    walls = [r.wall for r in runs]
    median = runs[walls.index(statistics.median_low(walls))]
    report = {
        "size": name,
        "events": events,
        "as_of": as_of.isoformat(),
        "generate_s": round(gen.seconds, 1),
        "ingest_s": round(ingest.seconds, 1),
        "ingest_peak_rss": ingest.peak_rss,
        "airflow_setup_s": round(setup.seconds, 1),
        "run_walls_s": [round(w, 1) for w in walls],
        "run": median,
        "runs": runs,
    }
    print_report(report)
    return report


def stage_rows(figures: RunFigures) -> list[tuple[str, float, float | None, int]]:
    """(stage, Airflow task seconds, seconds inside the stage's own work, peak RSS bytes of the
    whole process tree while the stage ran)."""
    tasks, peaks = dict(figures.tasks), figures.task_peak_rss
    producer = next((t for t in tasks if t.endswith("dbt_producer_watcher")), None)
    rows: list[tuple[str, float, float | None, int]] = []
    if producer:
        rows.append(
            ("dbt build (producer)", tasks.pop(producer), figures.dbt_sql, peaks.get(producer, 0))
        )
    dbt_other = [t for t in tasks if t.startswith("dbt.")]
    label = "dbt sensors" if producer else "dbt tasks"
    rows.append((f"{label} ({len(dbt_other)})", sum(tasks.pop(t) for t in dbt_other),
                 None if producer else figures.dbt_sql,
                 max((peaks.get(t, 0) for t in dbt_other), default=0)))  # fmt: skip
    for task, seconds in sorted(tasks.items(), key=lambda kv: -kv[1]):
        rows.append((task, seconds, figures.python_bodies.get(task), peaks.get(task, 0)))
    return rows


def print_report(report: dict) -> None:
    figures: RunFigures = report["run"]
    events, wall = report["events"], figures.wall
    print(f"\n== {report['size']}: {events:,} events, as of {report['as_of']} ==")
    print(f"generate {report['generate_s']} s; ingest {report['ingest_s']} s "
          f"({events / report['ingest_s']:,.0f} rows/s, peak {gib(report['ingest_peak_rss'])}); "
          f"airflow set-up {report['airflow_setup_s']} s")  # fmt: skip
    for number, run in enumerate(report["runs"], start=1):
        python = sum(run.python_bodies.values())
        print(f"run {number}: wall {run.wall:.1f} s, dbt SQL {run.dbt_sql:.1f} s, Python stages "
              f"{python:.1f} s, overhead {run.overhead:.1f} s = "
              f"{100 * run.overhead / run.wall:.0f}%")  # fmt: skip
    print(f"recpipe run wall times (s): {report['run_walls_s']} -> figures of the median run")
    print(f"{'stage':<44}{'task s':>9}{'work s':>9}{'peak GiB':>10}")
    for stage, seconds, work, peak in stage_rows(figures):
        shown = f"{work:9.1f}" if work is not None else f"{'':>9}"
        print(f"{stage:<44}{seconds:9.1f}{shown}{peak / 2**30:10.2f}")
    python = sum(figures.python_bodies.values())
    print(f"wall {wall:.1f} s; {events / wall:,.0f} events/s; peak RSS {gib(figures.peak_rss)} "
          f"(largest process {gib(figures.peak_single_rss)})")  # fmt: skip
    print(f"inside dbt SQL {figures.dbt_sql:.1f} s ({figures.dbt_nodes} nodes), inside Python "
          f"stages {python:.1f} s; orchestration overhead {figures.overhead:.1f} s "
          f"= {100 * figures.overhead / wall:.0f}% of wall")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", action="append", choices=sorted(SIZES), required=True)
    parser.add_argument("--repeat", type=int, default=1, help="runs of recpipe run per size")
    parser.add_argument("--work", type=Path, default=ROOT / ".recpipe" / "bench_scale")
    args = parser.parse_args()
    for name in args.size:
        bench_size(name, args.work, args.repeat)


if __name__ == "__main__":
    main()
