"""Every reconciler of the product, one module each; ``build`` is the registration list."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from kubebyon.adapters.kube import Kube
from kubebyon.runtime.contract import Reconciler
from kubebyon.runtime.jobs import JobHandler
from kubebyon.secretbox import SecretBox
from kubebyon.settings import Settings
from reconcilers.cluster_jobs import cluster_job_handlers
from reconcilers.connection import ConnectionReconciler
from reconcilers.control_plane_metrics import ControlPlaneMetricsReconciler
from reconcilers.job_leases import JobLeaseReconciler
from reconcilers.join_tokens import JoinTokenReconciler
from reconcilers.node_jobs import node_job_handlers
from reconcilers.nodes import NodesReconciler
from reconcilers.notifications import NotificationsReconciler
from reconcilers.vcluster import VClusterReconciler, load_values_file


def build_reconcilers(
    settings: Settings, secrets: SecretBox, host: Kube | None = None
) -> list[Reconciler]:
    """``host``: the host cluster's API (None: none configured)."""
    return [
        JobLeaseReconciler(
            max_attempts=settings.job_max_attempts,
            interval=max(settings.lease_seconds / 2, 1.0),
        ),
        NotificationsReconciler(secrets),
        VClusterReconciler(
            host,
            secrets,
            chart_repo=settings.vcluster_chart_repo,
            chart_version=settings.vcluster_chart_version,
            base_values=load_values_file(settings.vcluster_values_file),
        ),
        ConnectionReconciler(secrets, interval=settings.connection_probe_interval_seconds),
        ControlPlaneMetricsReconciler(
            host,
            secrets,
            interval=settings.control_plane_metrics_interval_seconds,
            retention=timedelta(days=settings.control_plane_metrics_retention_days),
        ),
        NodesReconciler(host, offline_grace=settings.node_offline_grace_seconds),
        JoinTokenReconciler(host, secrets, k3s_version=settings.k3s_version),
    ]


def build_job_handlers(settings: Settings, host: Kube | None = None) -> Mapping[str, JobHandler]:
    """Job type -> handler. ``host``: the host cluster's API (None: none configured)."""
    return {
        **cluster_job_handlers(poll_seconds=5.0),
        **node_job_handlers(
            host,
            drain_timeout=settings.node_drain_timeout_seconds,
            retry_seconds=settings.node_drain_retry_seconds,
        ),
    }
