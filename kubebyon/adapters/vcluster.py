"""Installing a vCluster on the host: a small ``Installer`` interface and its k3s
``HelmChart`` implementation (docs/architecture.md, "Installing vClusters").

``HelmChartInstaller`` writes a ``helm.cattle.io/v1`` HelmChart into the cluster's host
namespace and lets k3s's embedded helm-controller run helm (reference §4). A HelmChart
has no success condition, so an install counts as done when the ``helm-install-<name>``
Job is Complete **and** the vCluster's StatefulSet (a Deployment without persistence) is
ready. A Helm-CLI or Flux installer can replace it by implementing the same four calls.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

from kubebyon.adapters.kube import (
    DEPLOYMENTS,
    HELM_CHARTS,
    JOBS,
    JSON,
    SECRETS,
    SERVICES,
    STATEFUL_SETS,
    Kube,
    KubeError,
    contains,
    is_deleting,
)

CHART = "vcluster"
# helm-controller replaces the install Job whenever the chart's config changes. Which Job
# was current when we last changed the chart tells an old completed Job from the new one.
REPLACES_JOB = "kubebyon.io/replaces-job-uid"


@dataclass(frozen=True)
class Release:
    """One vCluster: release ``name`` in host ``namespace`` with Helm ``values``."""

    name: str
    namespace: str
    values: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InstallStatus:
    """``stage``: installing | waiting_for_control_plane | ready | failed. ``message``
    explains a failure or a problem worth showing while installing."""

    stage: str
    message: str | None = None

    @property
    def ready(self) -> bool:
        return self.stage == "ready"

    @property
    def failed(self) -> bool:
        return self.stage == "failed"


class Installer(Protocol):
    async def ensure(self, release: Release, *, retry: bool = False) -> bool:
        """Make the install match ``release``; True when this started an install or
        upgrade. ``retry``: a failed install is tried again even if nothing changed."""
        ...

    async def status(self, release: Release) -> InstallStatus: ...

    async def remove(self, release: Release) -> bool:
        """Start uninstalling; True once nothing of the release is left."""
        ...

    async def read_kubeconfig(self, release: Release) -> str | None:
        """The vCluster's kubeconfig (the ``vc-<name>`` Secret), None until it exists."""
        ...


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in obj.get("status", {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition  # type: ignore[no-any-return]
    return None


def _workload_ready(obj: Mapping[str, Any]) -> bool:
    status = obj.get("status") or {}
    wanted = int(obj.get("spec", {}).get("replicas", 1))
    return (
        int(status.get("observedGeneration", 0)) >= int(obj["metadata"].get("generation", 1))
        and int(status.get("readyReplicas", 0)) >= wanted
        and int(status.get("updatedReplicas", 0)) >= wanted
    )


class HelmChartInstaller:
    def __init__(self, kube: Kube, *, repo: str, version: str, chart: str = CHART) -> None:
        self.kube = kube
        self.repo = repo
        self.version = version
        self.chart = chart

    def _spec(self, release: Release) -> JSON:
        return {
            "chart": self.chart,
            "repo": self.repo,
            "version": self.version,
            "targetNamespace": release.namespace,
            "valuesContent": yaml.safe_dump(dict(release.values), sort_keys=True),
        }

    @staticmethod
    def _job_name(release: Release) -> str:
        return f"helm-install-{release.name}"

    async def ensure(self, release: Release, *, retry: bool = False) -> bool:
        spec, labels = self._spec(release), dict(release.labels)
        chart: JSON = {
            "apiVersion": "helm.cattle.io/v1",
            "kind": "HelmChart",
            "metadata": {"name": release.name, "namespace": release.namespace, "labels": labels},
            "spec": spec,
        }
        current = await self.kube.get(HELM_CHARTS, release.name, release.namespace)
        if current is None:
            try:
                await self.kube.create(HELM_CHARTS, chart)
                return True
            except KubeError as exc:
                if exc.status != 409:
                    raise
            current = await self.kube.get(HELM_CHARTS, release.name, release.namespace)
            if current is None:
                raise KubeError(f"HelmChart {release.name} vanished while being created")
        if is_deleting(current):
            return False  # an uninstall is still running; status() says so
        unchanged = contains(current.get("spec"), spec)
        if unchanged and not retry:
            if not contains(current["metadata"].get("labels"), labels):
                await self.kube.patch(
                    HELM_CHARTS, release.name, {"metadata": {"labels": labels}}, release.namespace
                )
            return False
        job = await self.kube.get(JOBS, self._job_name(release), release.namespace)
        if unchanged and not (job and _condition(job, "Failed")):
            return False  # nothing failed: nothing to retry
        replaced = job["metadata"].get("uid") if job else None
        patch: JSON = {"metadata": {"labels": labels, "annotations": {REPLACES_JOB: replaced}}}
        if not unchanged:
            patch["spec"] = spec
        await self.kube.patch(HELM_CHARTS, release.name, patch, release.namespace)
        if unchanged and job:
            # k3s's way to retry a failed chart: its helm-controller recreates the Job.
            await self.kube.delete(JOBS, self._job_name(release), release.namespace)
        return True

    async def status(self, release: Release) -> InstallStatus:
        name, namespace = release.name, release.namespace
        chart = await self.kube.get(HELM_CHARTS, name, namespace)
        if chart is None:
            return InstallStatus("installing", f"HelmChart {name} is missing")
        if is_deleting(chart):
            return InstallStatus("installing", "waiting for the previous uninstall to finish")
        failed = _condition(chart, "Failed")
        # "Job failed" is judged on the Job itself: the chart's condition may still be
        # about the Job a change or a retry replaced.
        if failed and failed.get("reason") != "Job failed":
            return InstallStatus("failed", self._failure(release, failed))
        job = await self.kube.get(JOBS, self._job_name(release), namespace)
        annotations = chart["metadata"].get("annotations") or {}
        if job is None or job["metadata"].get("uid") == annotations.get(REPLACES_JOB):
            return InstallStatus("installing")  # helm-controller has not (re)created it yet
        if failed := _condition(job, "Failed"):
            return InstallStatus("failed", self._failure(release, failed))
        if not _condition(job, "Complete"):
            failures = job.get("status", {}).get("failed") or 0
            if not failures:
                return InstallStatus("installing")
            return InstallStatus(
                "installing",
                f"{self._job_name(release)} failed {failures} time(s) and is retrying; "
                f"see kubectl -n {namespace} logs job/{self._job_name(release)}",
            )
        workload = await self.kube.get(STATEFUL_SETS, name, namespace)
        if workload is None:  # the chart runs a Deployment when it uses no volume
            workload = await self.kube.get(DEPLOYMENTS, name, namespace)
        if workload is None or not _workload_ready(workload):
            return InstallStatus("waiting_for_control_plane")
        return InstallStatus("ready")

    def _failure(self, release: Release, condition: Mapping[str, Any]) -> str:
        detail = condition.get("message") or condition.get("reason") or "failed"
        return (
            f"installing the vCluster failed: {detail} (see kubectl -n {release.namespace} "
            f"logs job/{self._job_name(release)})"
        )

    async def remove(self, release: Release) -> bool:
        # helm-controller holds the deletion with its finalizer
        # (wrangler.cattle.io/on-helm-chart-remove) until helm-delete-<name> has run.
        chart = await self.kube.get(HELM_CHARTS, release.name, release.namespace)
        if chart is None:
            return True
        if not is_deleting(chart):
            await self.kube.delete(HELM_CHARTS, release.name, release.namespace)
        return False

    async def read_kubeconfig(self, release: Release) -> str | None:
        secret = await self.kube.get(SECRETS, f"vc-{release.name}", release.namespace)
        encoded = (secret or {}).get("data", {}).get("config")
        if not encoded:
            return None
        try:
            return base64.b64decode(encoded).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise KubeError(f"Secret vc-{release.name} holds no readable kubeconfig") from None


async def https_node_port(kube: Kube, release: Release) -> int | None:
    """The node port Kubernetes gave the vCluster Service's ``https`` port."""
    service = await kube.get(SERVICES, release.name, release.namespace)
    for port in (service or {}).get("spec", {}).get("ports") or []:
        if port.get("name") == "https" and port.get("nodePort"):
            return int(port["nodePort"])
    return None
