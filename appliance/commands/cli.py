"""``mistudio``: run and inspect the appliance. Every command reads the same MISTUDIO_* settings."""

from __future__ import annotations

import argparse
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from appliance import __version__
from appliance.commands import logs
from appliance.commands.demo import ARCHITECTURES as DEMO_ARCHITECTURES
from appliance.config import ConfigError, Settings, load_settings


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    logs.configure(settings.log_level)
    from appliance.commands.serve import serve

    serve(settings)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    logs.configure(settings.log_level)  # before the worker's code can import a library that reads it
    from appliance.commands.worker import run_worker

    return run_worker(settings)


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    """API and worker together in the foreground, each restarted when it exits (see appliance.commands.up);
    Ctrl-C or SIGTERM stops both cleanly."""
    from appliance.commands.up import Supervisor

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    supervisor = Supervisor.from_settings(
        settings,
        {
            "worker": [sys.executable, "-m", "appliance", "worker"],
            "API": [sys.executable, "-m", "appliance", "serve"],
        },
    )
    try:
        worker = supervisor.start("worker")
        print(f"mistudio: worker started (pid {worker.pid}); UI and API on {settings.api_url}", flush=True)
        api = supervisor.start("API")
        print(f"mistudio: API started (pid {api.pid})", flush=True)
        supervisor.run(lambda: stopping)
        return 0
    finally:
        print("mistudio: stopping", flush=True)
        supervisor.stop()


def _api_reachable(settings: Settings) -> str:
    request = urllib.request.Request(settings.api_url + "/api/health/live")
    if settings.token:
        request.add_header("Authorization", f"Bearer {settings.token}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return f"up ({settings.api_url})" if response.status == 200 else f"answers {response.status}"
    except urllib.error.HTTPError as exc:
        return f"answers {exc.code} ({settings.api_url})"
    except OSError:
        return f"not reachable at {settings.api_url}"


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.data import jobs as job_sql
    from appliance.data import migrate
    from appliance.data import workers as worker_sql
    from appliance.data.database import Database

    if not settings.db_path.exists():
        print(f"No appliance data in {settings.data_dir} yet (start it with `mistudio up`).")
        return 1
    migrate(settings.db_path)
    db = Database(settings.db_path)
    print(f"data dir : {settings.data_dir}")
    print(f"API      : {_api_reachable(settings)}")
    row = db.one(worker_sql.latest())
    if row is None:
        print("worker   : never started")
    else:
        age = time.time() - row["heartbeat_at"]
        alive = row["stopped_at"] is None and age <= settings.worker_stale_s
        state = (
            f"running (pid {row['pid']}, seen {age:.0f}s ago)" if alive else f"not running (last seen {age:.0f}s ago)"
        )
        print(f"worker   : {state}")
    counts = {status: n for status, n in db.all(job_sql.status_counts())}
    print("jobs     : " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"))
    active = [
        (job["id"], job["kind"], job["status"], f"{job['progress'] * 100:.1f}%", job["message"])
        for job in db.all(job_sql.active())
    ]
    if active:
        print_table(active, right=(3,), indent="  ")
    return 0


def cmd_jobs(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.data import jobs as job_sql
    from appliance.data import migrate
    from appliance.data.database import Database
    from appliance.jobs.store import JobStore

    migrate(settings.db_path)
    if args.cancel:
        store = JobStore(Database(settings.db_path))
        job = store.get(args.cancel)
        if job is None:
            print(f"no job {args.cancel}", file=sys.stderr)
            return 1
        if store.cancel_queued(job.id) or store.request_control(job.id, "cancel", ("running",)):
            print(f"cancel requested for {job.id}")
            return 0
        print(f"{job.id} is already {job.status}", file=sys.stderr)
        return 1
    rows = Database(settings.db_path).all(job_sql.recent(args.status, args.limit))
    if not rows:
        print("no jobs")
        return 0
    table = [("ID", "KIND", "STATUS", "PROGRESS", "CREATED", "MESSAGE")]
    for row in rows:
        code = f"[{row['error_code']}] " if row["error_code"] else ""
        message = (row["error_message"] if row["error_code"] else row["message"]) or ""
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["created_at"]))
        table.append((row["id"], row["kind"], row["status"], f"{row['progress'] * 100:.1f}%", created, code + message))
    print_table(table, right=(3,))
    return 0


def print_table(table: Sequence[tuple[str, ...]], right: tuple[int, ...] = (), indent: str = "") -> None:
    """Rows in columns as wide as their widest cell (kinds such as features.explain outgrew fixed
    widths); the last column is not padded, and the columns in ``right`` are aligned right."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        print(indent + "  ".join([*cells, row[-1]]).rstrip())


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.commands.doctor import run_doctor

    return run_doctor(settings)


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.commands.bench import run_bench

    return run_bench(args.suite, args)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.commands.bench import record_dir
    from appliance.commands.demo import run_demo

    return run_demo(
        args.url or settings.api_url,
        settings.token,
        quick=args.quick,
        layer=args.layer,
        architecture=args.architecture,
        record_dir=record_dir(args),
    )


BENCH_EXIT_CODES = """exit status (every suite):
  0    every target met
  1    a target missed, or a figure was measured with errors (a failed request,
       a lost or duplicated event, a non-200 page): that figure is a MISS
  2    the benchmark itself could not run (the appliance did not start, ...)
  130  interrupted"""


def add_bench_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``mistudio bench <suite>`` and the options its suites read."""
    from appliance.commands.bench import SUITES

    bench = sub.add_parser(
        "bench",
        help="benchmarks that print figures against an in-run baseline",
        description="Start a throw-away appliance, measure one suite, print its figures against their "
        "targets and record the run as docs/bench/<suite>.json in the checkout (the README's "
        "figures are rendered from these records).",
        epilog=BENCH_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument(
        "suite",
        choices=SUITES,
    )
    bench.add_argument("--clients", type=int, default=50)
    bench.add_argument("--requests", type=int, default=2000, help="GET requests per endpoint")
    bench.add_argument("--idle", type=float, default=60.0, help="seconds of idle before the pickup probe")
    bench.add_argument("--events", type=int, default=200, help="SSE events to time")
    bench.add_argument("--seconds", type=float, default=60.0, help="measuring window (monitoring)")
    bench.add_argument("--interval", type=float, default=2.0, help="sampling interval (monitoring)")
    bench.add_argument(
        "--samples",
        type=int,
        default=None,
        help="dataset size (default: 100,000 for datasets, 2,000 for extraction, 1,000 for features, "
        "the whole demo dataset for quality, 64 extracted samples for pipeline, 400 for explain)",
    )
    bench.add_argument(
        "--threads", type=int, default=1, help="torch threads (training, extraction, features, steering, pipeline)"
    )
    bench.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed repeats, best kept (training, extraction, features, steering, pipeline floors)",
    )
    bench.add_argument("--no-api", action="store_true", help="skip the part that starts an appliance (steering)")
    bench.add_argument(
        "--memory-mb",
        type=int,
        default=8192,
        help="pipeline, explain: the memory the appliance plans with (MISTUDIO_MEMORY_TOTAL_MB; default 8192)",
    )
    bench.add_argument(
        "--shape", default="12x768", help="pipeline: the GPT-2-shaped model's LAYERSxWIDTH (default 12x768)"
    )
    bench.add_argument(
        "--full", action="store_true", help="pipeline: a bigger run (more samples, longer context and training)"
    )
    bench.add_argument("--features", type=int, default=None, help="explain: features per run (default 24)")
    bench.add_argument(
        "--latencies",
        default=None,
        help="explain: the fake judge's latencies in ms, comma-separated (default 0,50,200)",
    )
    bench.add_argument(
        "--labeller", default=None, help="explain: the local labeller's LAYERSxWIDTH (default 2x64, random weights)"
    )
    bench.add_argument(
        "--record-dir",
        metavar="DIR",
        default=None,
        help="record the run as DIR/<suite>.json (default: docs/bench of the checkout)",
    )
    bench.add_argument("--no-record", action="store_true", help="print the figures only, record nothing")
    bench.set_defaults(func=cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mistudio", description="MechInterp Studio appliance")
    parser.add_argument("--version", action="version", version=f"mistudio {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the API server (and the UI)").set_defaults(func=cmd_serve)
    sub.add_parser("worker", help="run the job worker (owns torch and the accelerator)").set_defaults(func=cmd_worker)
    sub.add_parser("up", help="run API and worker together in the foreground").set_defaults(func=cmd_up)
    sub.add_parser("status", help="what runs, and the active jobs").set_defaults(func=cmd_status)
    jobs = sub.add_parser("jobs", help="list jobs (or cancel one)")
    jobs.add_argument("--status", choices=["queued", "running", "paused", "completed", "failed", "cancelled"])
    jobs.add_argument("--limit", type=int, default=20)
    jobs.add_argument("--cancel", metavar="JOB_ID")
    jobs.set_defaults(func=cmd_jobs)
    sub.add_parser("doctor", help="check the install and say what to fix").set_defaults(func=cmd_doctor)
    add_bench_parser(sub)
    demo = sub.add_parser("demo", help="run the whole pipeline on the demo kit through a running appliance's API")
    demo.add_argument("--url", help="the appliance's address (default: MISTUDIO_HOST/MISTUDIO_PORT's)")
    demo.add_argument("--quick", action="store_true", help="a shortened run (fewer samples and steps), for tests")
    demo.add_argument("--layer", type=int, default=None, help="the layer to train the SAE on (default 2)")
    demo.add_argument(
        "--architecture",
        choices=DEMO_ARCHITECTURES,
        default=None,
        help="the SAE's encoder_type (default topk); those with a sparsity coefficient ask for an L0 of k "
        "(target_l0) instead",
    )
    demo.add_argument(
        "--record-dir",
        metavar="DIR",
        default=None,
        help="record a completed run as DIR/demo.json (default: docs/bench of the checkout, whose "
        "README quotes it; an installed package records nothing)",
    )
    demo.add_argument("--no-record", action="store_true", help="record nothing")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"mistudio: {exc}", file=sys.stderr)
        return 2
    return args.func(settings, args)


if __name__ == "__main__":
    sys.exit(main())
