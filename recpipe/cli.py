"""The ``recpipe`` command line (README "Command line"): demo, generate, ingest, run, backfill,
report.

Exit code 0 on success; on failure a one-line reason on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

from recpipe.settings import Settings, load_settings

DEMO_SHOP = {"users": 4000, "items": 800, "days": 60, "seed": 7}


class CliError(RuntimeError):
    """A failure to report in one line."""


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from err


def _param(text: str) -> tuple[str, object]:
    """``--param KEY=VALUE``, validated against the DAG's own param schema (recpipe.params)."""
    from recpipe.params import ParamValueError, parse_param

    try:
        return parse_param(text)
    except ParamValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("recpipe")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that names every option's default (or that it is required)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required:
            return f"{text} (required)"
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def cmd_generate(args: argparse.Namespace, settings: Settings) -> None:
    from recpipe.synthetic import generate_shop

    summary = generate_shop(
        Path(args.out),
        users=args.users,
        items=args.items,
        days=args.days,
        seed=args.seed,
        fmt=args.format,
        **({"end_date": args.end_date} if args.end_date else {}),
    )
    print(
        f"wrote {summary.events:,} events, {summary.items:,} items, {summary.users:,} users "
        f"({summary.start_date} .. {summary.end_date}) to {summary.out_dir}"
    )


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> None:
    """Check every file first (a missing or bad one creates nothing, not even the warehouse
    file), then load them all in one transaction."""
    from recpipe.ingest import ingest_files
    from recpipe.warehouse import session

    results = ingest_files(
        lambda: session(settings),
        items=Path(args.items),
        users=Path(args.users) if args.users else None,
        events=Path(args.events),
        quarantine=args.quarantine,
    )
    for r in results:
        print(
            f"{r.table}: read {r.rows_read:,}, loaded {r.rows_loaded:,}, "
            f"rejected {r.rows_rejected:,}, already present or duplicate "
            f"{r.duplicates_skipped:,}  ({r.file})"
        )


def _print_now(line: str) -> None:
    print(line, flush=True)


@contextlib.contextmanager
def _output_to(log_path: Path | None) -> Iterator[Callable[[str], None]]:
    """Send everything written to stdout/stderr (Airflow, dbt, subprocesses) to ``log_path``;
    yields a function that still prints a line to the terminal (the stage progress)."""
    if log_path is None:
        yield _print_now
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)

        def console(line: str) -> None:
            os.write(saved[0], (line + "\n").encode())

        try:
            yield console
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _run_one(settings: Settings, as_of: date, conf: dict, verbose: bool = False):
    """Run the DAG for ``as_of``; success only when ``pipeline_runs`` says that date published."""
    from recpipe.airflow_runner import check_published, run_dag

    log_path = None if verbose else settings.home / "logs" / f"recpipe_daily_{as_of}.log"
    if log_path:
        print(
            f"running recpipe_daily for {as_of} through Airflow (log: {log_path}) ...", flush=True
        )
    with _output_to(log_path) as console:
        outcome = run_dag(settings, as_of, conf, progress=console)
    if not outcome.ok:
        raise CliError(
            f"recpipe_daily for {as_of} ended {outcome.state}: "
            f"{_failure_reason(settings, outcome.run_id, outcome.failed_tasks)}"
        )
    done = check_published(settings, outcome)
    print(
        f"recpipe_daily for {as_of}: {outcome.state}, published {done.rows:,} rows for "
        f"{done.users:,} users (run {outcome.run_id})"
    )
    return outcome


def _failure_reason(settings: Settings, run_id: str, failed: list[str]) -> str:
    from recpipe.warehouse import BRIEF_LOCK_TIMEOUT_S, WarehouseBusyError, busy_message, session

    try:
        with session(settings, lock_timeout_s=BRIEF_LOCK_TIMEOUT_S) as wh:
            rows = wh.query_df(
                f"select error from {wh.table('recpipe', 'pipeline_runs')} where run_id = @r",
                {"r": run_id},
            )
        if len(rows) and rows["error"].iloc[0]:
            return str(rows["error"].iloc[0])
    except WarehouseBusyError as err:  # the usual reason the run could not record its own
        return busy_message(err.path, err.holder, settings.lock_timeout_s)
    except Exception:  # noqa: BLE001 - the reason is a courtesy; the failure is reported anyway
        pass
    return f"failed tasks: {', '.join(failed) or 'unknown'}"


def cmd_run(args: argparse.Namespace, settings: Settings) -> None:
    conf = dict(args.param or [])
    if "as_of" in conf:
        raise CliError("give the date with --as-of, not --param as_of")
    conf["as_of"] = args.as_of.isoformat()
    _run_one(settings, args.as_of, conf, verbose=args.verbose)


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> None:
    if args.end < args.start:
        raise CliError(f"--end {args.end} is before --start {args.start}")
    day = args.start
    while day <= args.end:
        _run_one(settings, day, {"as_of": day.isoformat()}, verbose=args.verbose)
        day += timedelta(days=1)


def cmd_report(args: argparse.Namespace, settings: Settings) -> None:
    from recpipe.report import write_report

    path = write_report(settings, Path(args.out), lock_timeout_s=args.wait)
    print(f"wrote {path}")


def cmd_demo(args: argparse.Namespace, settings: Settings) -> None:
    from recpipe.demo import run_demo

    run_demo(settings, run_one=_run_one, **DEMO_SHOP)


def cmd_manifest(args: argparse.Namespace, settings: Settings) -> None:
    from recpipe.dbt_manifest import build_manifest, ensure_manifest

    build = build_manifest if args.force else ensure_manifest
    print(f"dbt manifest: {build(settings.dbt_manifest)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recpipe",
        description="recpipe: daily top-K recommendations from a shop's events, through Airflow.",
        epilog=__doc__.split("\n\n", 1)[1].strip(),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"recpipe {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, epilog: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=epilog,
            formatter_class=_HelpFormatter,
        )

    command("demo", "generate a shop, ingest it, run the DAG, print the results")

    gen = command("generate", "write a synthetic shop in the input contract")
    gen.add_argument("--out", required=True, help="directory to write the shop's files into")
    gen.add_argument("--users", type=int, default=5000, help="number of users")
    gen.add_argument("--items", type=int, default=1000, help="number of items")
    gen.add_argument("--days", type=int, default=60, help="days of events")
    gen.add_argument("--seed", type=int, default=42, help="random seed (same seed, same shop)")
    gen.add_argument(
        "--end-date",
        type=_date,
        help="last day of events, YYYY-MM-DD, any date (default 2026-09-30, the generator's)",
    )
    gen.add_argument("--format", choices=("csv", "parquet"), default="csv", help="file format")

    ing = command("ingest", "load input files into the raw tables")
    ing.add_argument("--events", required=True, help="events file (CSV or Parquet)")
    ing.add_argument("--items", required=True, help="items file (CSV or Parquet)")
    ing.add_argument("--users", help="users file (CSV or Parquet); optional")
    ing.add_argument(
        "--quarantine",
        action="store_true",
        help="load good rows and keep bad rows in raw.rejected_* with the reason "
        "(default: refuse the whole file on the first bad row)",
    )

    from recpipe.params import describe_params

    run = command(
        "run",
        "run recpipe_daily for one date through Airflow",
        epilog=describe_params(exclude=("as_of",)),
    )
    run.add_argument(
        "--as-of", required=True, type=_date, help="as-of date YYYY-MM-DD (uses events before it)"
    )
    run.add_argument(
        "--param",
        action="append",
        type=_param,
        metavar="KEY=VALUE",
        help="a DAG param (below), repeatable; checked against the DAG's param schema before "
        "Airflow starts (default: the DAG's defaults)",
    )
    run.add_argument(
        "--verbose",
        action="store_true",
        help="show Airflow's and dbt's logs (default: one line per stage; logs to a file)",
    )

    back = command("backfill", "run recpipe_daily for a range of dates, in order")
    back.add_argument("--start", required=True, type=_date, help="first as-of date YYYY-MM-DD")
    back.add_argument("--end", required=True, type=_date, help="last as-of date YYYY-MM-DD")
    back.add_argument(
        "--verbose",
        action="store_true",
        help="show Airflow's and dbt's logs (default: one line per stage; logs to a file)",
    )

    rep = command("report", "write an HTML report of runs, gates and metrics (reads only)")
    rep.add_argument("--out", default="recpipe_report.html", help="HTML file to write")
    rep.add_argument(
        "--wait",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="DuckDB: how long to wait while another process writes the warehouse",
    )

    man = command(
        "manifest",
        "build the dbt manifest the DAG's dbt tasks are rendered from (a deploy step: "
        "the DAG file never runs dbt; RECPIPE_DBT_MANIFEST sets where it is written)",
    )
    man.add_argument(
        "--force", action="store_true", help="rebuild even when it is current (default: no)"
    )
    return parser


COMMANDS = {
    "manifest": cmd_manifest,
    "demo": cmd_demo,
    "generate": cmd_generate,
    "ingest": cmd_ingest,
    "run": cmd_run,
    "backfill": cmd_backfill,
    "report": cmd_report,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    try:
        settings = load_settings()
        COMMANDS[args.command](args, settings)
    except KeyboardInterrupt:
        print("recpipe: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the CLI's promise: one line, non-zero exit
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"recpipe {args.command}: error: {message}", file=sys.stderr)
        return 1
    if args.command != "demo":
        print(f"done in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
