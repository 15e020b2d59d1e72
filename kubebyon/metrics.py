"""Prometheus metrics. Names are the operator-facing contract (grafana/ queries them).

Counters and histograms are per process; the queue and job gauges are read from the
database at scrape time, so every replica reports the same global values (use max()).
"""

from __future__ import annotations

import asyncio
import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from kubebyon import __version__
from kubebyon.db.database import Database

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILE_TOTAL = Counter(
    "kubebyon_reconcile_total",
    "Reconcile calls by outcome (success, requeue, temporary_error, permanent_error, "
    "error, timeout).",
    ["reconciler", "result"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "kubebyon_reconcile_errors_total",
    "Reconcile calls that failed, whatever the kind of failure.",
    ["reconciler"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "kubebyon_reconcile_duration_seconds",
    "Time spent in one reconcile call.",
    ["reconciler"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
RECONCILE_IN_FLIGHT = Gauge(
    "kubebyon_reconcile_in_flight",
    "Reconcile calls running in this process.",
    ["reconciler"],
    registry=REGISTRY,
)
RECONCILE_QUEUE_DEPTH = Gauge(
    "kubebyon_reconcile_queue_depth",
    "Keys due and not leased, across all processes.",
    ["reconciler"],
    registry=REGISTRY,
)
RECONCILE_OLDEST_DUE = Gauge(
    "kubebyon_reconcile_oldest_due_seconds",
    "Age of the oldest due, unleased key, across all processes.",
    ["reconciler"],
    registry=REGISTRY,
)
RECONCILE_LEASED = Gauge(
    "kubebyon_reconcile_leased_keys",
    "Keys currently held under a lease, across all processes.",
    ["reconciler"],
    registry=REGISTRY,
)
RECONCILE_STOPPED = Gauge(
    "kubebyon_reconcile_stopped_keys",
    "Keys stopped by a permanent error until their desired state changes.",
    ["reconciler"],
    registry=REGISTRY,
)
LEASES_LOST = Counter(
    "kubebyon_reconcile_leases_lost_total",
    "Work cancelled because its lease could not be extended.",
    ["reconciler"],
    registry=REGISTRY,
)
WAKEUP_LATENCY = Histogram(
    "kubebyon_reconcile_wakeup_lag_seconds",
    "Time from a key becoming due to its claim.",
    ["reconciler"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
LISTENER_CONNECTED = Gauge(
    "kubebyon_wakeup_listener_connected",
    "1 while the LISTEN connection for wake-ups is up.",
    registry=REGISTRY,
)
LISTENER_RECONNECTS = Counter(
    "kubebyon_wakeup_listener_reconnects_total",
    "Times the LISTEN connection was re-established.",
    registry=REGISTRY,
)
JOBS = Gauge(
    "kubebyon_cluster_jobs",
    "Cluster jobs by status, across all processes.",
    ["status"],
    registry=REGISTRY,
)
JOBS_FINISHED = Counter(
    "kubebyon_cluster_jobs_finished_total",
    "Cluster job attempts finished in this process, by job type and outcome.",
    ["type", "result"],
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "kubebyon_http_requests_total",
    "HTTP requests by method, route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "kubebyon_http_request_duration_seconds",
    "HTTP request latency by method and route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
DB_POOL_SIZE = Gauge(
    "kubebyon_db_pool_connections", "Open connections in this process's pool.", registry=REGISTRY
)
DB_POOL_IN_USE = Gauge(
    "kubebyon_db_pool_in_use", "Pool connections currently checked out.", registry=REGISTRY
)
NODES_UNATTACHED = Counter(
    "kubebyon_node_observations_unattached_total",
    "Observations of host nodes whose kubebyon.io/cluster-id label names a cluster that "
    "is deleted or unknown (such a node is never attached to any cluster).",
    ["reason"],
    registry=REGISTRY,
)
BUILD_INFO = Info("kubebyon_build", "Version of the running KubeBYON.", registry=REGISTRY)
BUILD_INFO.info({"version": __version__, "python": platform.python_version()})

JOB_STATUSES = ("pending", "running", "succeeded", "failed")
_SEEN_RECONCILERS: set[str] = set()


async def refresh_database_gauges(db: Database, deadline: float = 2.0) -> bool:
    """Read queue and job gauges from the database; False (old values kept) on failure."""
    size, in_use = db.pool_stats()
    DB_POOL_SIZE.set(size)
    DB_POOL_IN_USE.set(in_use)
    try:
        async with asyncio.timeout(deadline):
            queue = await db.fetch(db.q.queue_stats)
            jobs = await db.fetch(db.q.job_counts)
    except Exception:  # noqa: BLE001 - a scrape must not fail
        return False
    absent = _SEEN_RECONCILERS - {row["reconciler"] for row in queue}
    for name in absent:  # every row of it is gone: report zero, not the last value
        for gauge in (
            RECONCILE_QUEUE_DEPTH,
            RECONCILE_OLDEST_DUE,
            RECONCILE_LEASED,
            RECONCILE_STOPPED,
        ):
            gauge.labels(name).set(0)
    for row in queue:
        name = row["reconciler"]
        _SEEN_RECONCILERS.add(name)
        RECONCILE_QUEUE_DEPTH.labels(name).set(row["due"])
        RECONCILE_OLDEST_DUE.labels(name).set(row["oldest_due_seconds"])
        RECONCILE_LEASED.labels(name).set(row["leased"])
        RECONCILE_STOPPED.labels(name).set(row["stopped"])
    counts = {row["status"]: row["n"] for row in jobs}
    for status in JOB_STATUSES:
        JOBS.labels(status).set(counts.get(status, 0))
    return True
