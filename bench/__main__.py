"""``python -m bench [NAME ...] [--rounds N] [--profile] [--keep-log]``.

Starts one embedded PostgreSQL for the whole run, runs each benchmark against fresh
databases, prints figures, ratios and targets, and a summary. Exit status: 0 when every
benchmark ran (whether or not its targets were met), 1 when one raised an error.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import (
    authz,
    clusters,
    healthz_rps,
    join,
    nodes,
    reconcile_throughput,
    wakeup_latency,
)
from bench.common import SHORT_TMP, LogSink, Outcome, Postgres, out

BENCHMARK_TIMEOUT = 150.0  # seconds: a benchmark that hangs is an error, not a long wait
# A runner reports one outcome, or one per part of a benchmark with several parts.
Runner = Callable[[Postgres, argparse.Namespace], Awaitable[Outcome | list[Outcome]]]

BENCHMARKS: dict[str, tuple[str, Runner]] = {
    "throughput": (
        "reconcile throughput",
        lambda pg, args: reconcile_throughput.run(pg, args.rounds),
    ),
    "wakeup": ("wake-up latency", lambda pg, args: wakeup_latency.run(pg, args.samples)),
    "healthz": (
        "/healthz requests per second",
        lambda pg, args: healthz_rps.run(pg, args.rounds, args.requests, args.profile),
    ),
    "authz": ("authorization decisions", lambda pg, args: authz.run(pg, args.rounds)),
    "join": ("join script requests per second", lambda pg, args: join.run(pg, args.rounds)),
    "nodes": (
        "nodes: 1,000 status changes absorbed",
        lambda pg, args: nodes.run(pg, args.rounds),
    ),
    "clusters": (
        "clusters: console list and vcluster resync",
        lambda pg, args: clusters.run(pg, args.rounds),
    ),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternations per benchmark")
    parser.add_argument("--samples", type=int, default=300, help="wake-ups to time")
    parser.add_argument("--requests", type=int, default=20_000, help="requests per HTTP run")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the product app during an extra run"
    )
    parser.add_argument("--keep-log", action="store_true", help="keep the product's JSON log file")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    args.names = args.names or list(BENCHMARKS)
    return args


def describe_machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.node()}: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, load average {load}"
    )


async def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    out(f"KubeBYON benchmarks, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC")
    out(describe_machine())
    log_dir = Path(tempfile.mkdtemp(prefix="kbblog", dir=SHORT_TMP))
    logs = LogSink(log_dir)
    pg = await asyncio.to_thread(Postgres)
    outcomes: list[Outcome] = []
    try:
        out(f"{await pg.server_version()}, embedded (pgserver), data in {pg.directory}")
        out(f"product logs: JSON at INFO (as in production) into {logs.path}, not the terminal")
        for name in args.names:
            title, runner = BENCHMARKS[name]
            out()
            out(f"== {title} ==")
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(BENCHMARK_TIMEOUT):
                    reported = await runner(pg, args)
                outcomes.extend(reported if isinstance(reported, list) else [reported])
            except Exception as exc:  # noqa: BLE001 - report, go on, exit 1 at the end
                traceback.print_exc()
                error = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, TimeoutError):
                    error = f"did not finish within {BENCHMARK_TIMEOUT:g} s"
                outcomes.append(Outcome(title, error=error))
                out(f"  ERROR: {error}")
            out(f"  ({time.perf_counter() - t0:.1f} s)")
    finally:
        await asyncio.to_thread(pg.close)
        lines = logs.lines()
        logs.close()
        if args.keep_log:
            out(f"\nproduct log kept: {logs.path} ({lines} lines)")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    out()
    out("== summary ==")
    for o in outcomes:
        if o.error is not None:
            out(f"  {o.name}: ERROR {o.error}")
            continue
        met = sum(t.met for t in o.targets)
        ratio = f"{o.ratio_label} = {o.ratio:.3g}" if o.ratio is not None else ""
        missed = [t.label for t in o.targets if not t.met]
        verdict = "all targets met" if not missed else "MISSED: " + "; ".join(missed)
        out(f"  {o.name}: {ratio}; {met}/{len(o.targets)} targets met ({verdict})")
    out(f"  total {time.perf_counter() - started:.1f} s; product log lines: {lines}")
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args(sys.argv[1:]))))
