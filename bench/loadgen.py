"""HTTP load generator, run as a separate process: ``python -m bench.loadgen URL``.

Protocol with the parent (so that the parent can measure its own CPU time over exactly
the timed part): after the warm-up it prints ``ready``; it then waits for a line on
stdin, runs the timed requests, and prints one JSON object with the results.
``--header 'Name: value'`` (repeatable) is sent with every request, e.g. a session cookie.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import aiohttp


async def _phase(session: aiohttp.ClientSession, url: str, total: int, concurrency: int) -> Any:
    remaining = total
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            try:
                async with session.get(url) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses, errors


async def main(
    url: str, requests: int, warmup: int, concurrency: int, headers: dict[str, str]
) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers
    ) as session:
        await _phase(session, url, warmup, concurrency)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        latencies, statuses, errors = await _phase(session, url, requests, concurrency)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    latencies.sort()
    result = {
        "requests": requests,
        "seconds": seconds,
        "client_cpu_seconds": cpu,
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": errors,
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else None,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("url")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'")
    args = parser.parse_args()
    headers = {n.strip(): v.strip() for n, _, v in (h.partition(":") for h in args.header)}
    asyncio.run(main(args.url, args.requests, args.warmup, args.concurrency, headers))
