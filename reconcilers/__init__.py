"""Every reconciler of the product, one module each; ``build`` is the registration list."""

from __future__ import annotations

from collections.abc import Mapping

from kubebyon.runtime.contract import Reconciler
from kubebyon.runtime.jobs import JobHandler
from kubebyon.secretbox import SecretBox
from kubebyon.settings import Settings
from reconcilers.job_leases import JobLeaseReconciler
from reconcilers.notifications import NotificationsReconciler


def build_reconcilers(settings: Settings, secrets: SecretBox) -> list[Reconciler]:
    return [
        JobLeaseReconciler(
            max_attempts=settings.job_max_attempts,
            interval=max(settings.lease_seconds / 2, 1.0),
        ),
        NotificationsReconciler(secrets),
    ]


def build_job_handlers(settings: Settings) -> Mapping[str, JobHandler]:
    """Job type -> handler. Cluster lifecycle handlers arrive with the cluster feature."""
    return {}
