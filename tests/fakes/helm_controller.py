"""A fake k3s helm-controller for vCluster HelmCharts, running against a FakeKubeAPI.

It answers a ``helm.cattle.io/v1`` HelmChart the way k3s's helm-controller and the
vCluster chart do (../shared/reference/vcluster-and-join.md §2, §3, §4):

- claims the chart (``helmcharts.cattle.io/managed-by``) and adds the finalizer
  ``wrangler.cattle.io/on-helm-chart-remove``;
- runs Job ``helm-install-<name>`` in the chart's namespace, replaced (new uid) whenever
  the chart's spec changes, and sets ``status.jobName`` and the conditions;
- "installs" the release into ``targetNamespace``: the StatefulSet ``<name>`` (marked
  ready), the Service ``<name>`` (type and node port from the values) and the kubeconfig
  Secret ``vc-<name>`` (Opaque; labels ``app: vcluster``, ``vcluster-name: <name>``; data
  ``config``) holding a kubeconfig for a second FakeKubeAPI that stands for the vCluster,
  with ``exportKubeConfig.server`` (default ``https://localhost:8443``) and ``.context``;
- on deletion runs Job ``helm-delete-<name>``, removes what it installed and releases the
  finalizer (it gives up at once when the target namespace is gone or terminating).

It works on the fake's storage directly (no HTTP), so ``request_count`` counts only the
code under test. Switches: ``paused`` (the controller only claims charts: no job is
created, replaced or finished until ``resume()``),
``fail_with`` (install jobs fail with that message), ``control_plane_ready`` (the
StatefulSet's readiness).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import random
from typing import Any

import yaml

from tests.fakes.kube_api import FakeKubeAPI

JSON = dict[str, Any]
FINALIZER = "wrangler.cattle.io/on-helm-chart-remove"
MANAGED_BY = "helmcharts.cattle.io/managed-by"
CONFIG_HASH = "helmcharts.helm.cattle.io/configHash"
CHART_LABEL = "helmcharts.helm.cattle.io/chart"


def _condition(kind: str, status: bool, reason: str = "", message: str = "") -> JSON:
    return {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
    }


def _has(obj: JSON, kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True"
        for c in obj.get("status", {}).get("conditions") or []
    )


class FakeHelmController:
    def __init__(self, host: FakeKubeAPI, vcluster: FakeKubeAPI) -> None:
        self.host = host
        self.vcluster = vcluster
        self.paused = False
        self.fail_with: str | None = None
        self.control_plane_ready = True
        self.installed: list[str] = []  # "<namespace>/<name>" per completed install job
        self.uninstalled: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FakeHelmController:
        self._task = asyncio.create_task(self._run(), name="fake-helm-controller")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    # ---------------------------------------------------------------- switches

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self.step()

    def set_control_plane_ready(self, ready: bool) -> None:
        self.control_plane_ready = ready
        for sts in self.host.objects("statefulsets"):
            self._mark_ready(sts)
        self.step()

    # ------------------------------------------------------------------- loop

    async def _run(self) -> None:
        while True:
            self.step()
            seen = self.host.resource_version
            with contextlib.suppress(TimeoutError):
                await self.host.wait_for(
                    lambda seen=seen: self.host.resource_version != seen, timeout=60
                )

    def step(self) -> None:
        """Act on every HelmChart until nothing changes (idempotent)."""
        while any([self._handle(chart) for chart in self.host.objects("helmcharts")]):
            pass

    def _handle(self, chart: JSON) -> bool:
        meta = chart["metadata"]
        if meta.get("deletionTimestamp"):
            return self._uninstall(chart)
        if FINALIZER not in (meta.get("finalizers") or []) or MANAGED_BY not in (
            meta.get("annotations") or {}
        ):
            meta.setdefault("finalizers", []).append(FINALIZER)
            meta.setdefault("annotations", {})[MANAGED_BY] = "helm-controller"
            self.host.put_object(chart)
            return True
        if self.paused:
            return False
        name, namespace = meta["name"], meta["namespace"]
        spec = chart.get("spec", {})
        config_hash = (
            "SHA256=" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        )
        job = self.host.get("jobs", f"helm-install-{name}", namespace)
        template = (job or {}).get("spec", {}).get("template", {})
        job_hash = template.get("metadata", {}).get("annotations", {}).get(CONFIG_HASH)
        if job is None or job_hash != config_hash:
            if job is not None:
                self.host.delete_object("jobs", job["metadata"]["name"], namespace)
            self._job(f"helm-install-{name}", namespace, name, config_hash)
            chart["status"] = {
                "jobName": f"helm-install-{name}",
                "conditions": [
                    _condition(
                        "JobCreated",
                        True,
                        "Job created",
                        f"Applying HelmChart using Job {namespace}/helm-install-{name}",
                    ),
                    _condition("Failed", False),
                ],
            }
            self.host.put_object(chart)
            return True
        if _has(job, "Complete") or _has(job, "Failed"):
            return False
        if self.fail_with is not None:
            job["status"] = {
                "failed": 1,
                "conditions": [_condition("Failed", True, "BackoffLimitExceeded", self.fail_with)],
            }
            self.host.put_object(job)
            chart["status"]["conditions"][1] = _condition(
                "Failed", True, "Job failed", self.fail_with
            )
            self.host.put_object(chart)
            return True
        target = spec.get("targetNamespace") or namespace
        if self.host.get("namespaces", target) is None:
            return False  # helm would fail; k3s retries the job
        values = yaml.safe_load(spec.get("valuesContent") or "") or {}
        self._install(name, target, values)
        job["status"] = {"succeeded": 1, "conditions": [_condition("Complete", True)]}
        self.host.put_object(job)
        self.installed.append(f"{target}/{name}")
        return True

    def _job(self, job_name: str, namespace: str, chart: str, config_hash: str) -> None:
        self.host.put_object(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {
                    "name": job_name,
                    "namespace": namespace,
                    "labels": {CHART_LABEL: chart},
                },
                "spec": {
                    "backoffLimit": 1000,
                    "template": {
                        "metadata": {"annotations": {CONFIG_HASH: config_hash}},
                        "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "helm"}]},
                    },
                },
                "status": {"active": 1},
            }
        )

    # ------------------------------------------------------------- the release

    def _install(self, name: str, namespace: str, values: JSON) -> None:
        control_plane = values.get("controlPlane") or {}
        old = self.host.get("statefulsets", name, namespace)
        sts: JSON = {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "generation": (old["metadata"]["generation"] + 1) if old else 1,
                "labels": {"app": "vcluster", "release": name},
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "vcluster", "release": name}},
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "syncer",
                                "resources": (control_plane.get("statefulSet") or {}).get(
                                    "resources"
                                ),
                            }
                        ]
                    }
                },
            },
        }
        self._mark_ready(sts)
        service_values = control_plane.get("service") or {}
        kind = (service_values.get("spec") or {}).get("type", "ClusterIP")
        port: JSON = {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}
        if kind in ("NodePort", "LoadBalancer"):
            old_service = self.host.get("services", name, namespace) or {}
            old_ports = old_service.get("spec", {}).get("ports") or [{}]
            port["nodePort"] = (
                service_values.get("httpsNodePort")
                or old_ports[0].get("nodePort")
                or self._free_node_port()
            )
        self.host.put_object(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {
                        "app": "vcluster",
                        "release": name,
                        "vcluster.loft.sh/service": "true",
                    },
                },
                "spec": {
                    "type": kind,
                    "ports": [port],
                    "selector": {"app": "vcluster", "release": name},
                },
            }
        )
        export = values.get("exportKubeConfig") or {}
        kubeconfig = self.vcluster.kubeconfig_dict()
        kubeconfig["clusters"][0]["cluster"]["server"] = (
            export.get("server") or "https://localhost:8443"
        )
        if context := export.get("context"):
            kubeconfig["clusters"][0]["name"] = context
            kubeconfig["users"][0]["name"] = context
            kubeconfig["contexts"][0] = {
                "name": context,
                "context": {"cluster": context, "user": context},
            }
            kubeconfig["current-context"] = context
        self.host.put_object(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {
                    "name": f"vc-{name}",
                    "namespace": namespace,
                    "labels": {"app": "vcluster", "vcluster-name": name},
                },
                "data": {"config": base64.b64encode(yaml.safe_dump(kubeconfig).encode()).decode()},
            }
        )

    def _mark_ready(self, sts: JSON) -> None:
        generation = sts["metadata"]["generation"]
        ready = 1 if self.control_plane_ready else 0
        sts["status"] = {
            "replicas": 1,
            "readyReplicas": ready,
            "updatedReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": generation,
        }
        self.host.put_object(sts)

    def _free_node_port(self) -> int:
        used = {
            p.get("nodePort")
            for svc in self.host.objects("services")
            for p in svc.get("spec", {}).get("ports") or []
        }
        while (port := random.randint(30000, 32767)) in used:
            pass
        return port

    # ---------------------------------------------------------------- removal

    def _uninstall(self, chart: JSON) -> bool:
        if self.paused:
            return False
        name, namespace = chart["metadata"]["name"], chart["metadata"]["namespace"]
        target = chart.get("spec", {}).get("targetNamespace") or namespace
        ns = self.host.get("namespaces", target)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return self.host.delete_object("helmcharts", name, namespace)
        if self.host.get("jobs", f"helm-install-{name}", namespace) is not None:
            self.host.delete_object("jobs", f"helm-install-{name}", namespace)
        if self.host.get("jobs", f"helm-delete-{name}", namespace) is None:
            self._job(f"helm-delete-{name}", namespace, name, "")
            return True
        for resource, object_name in (
            ("statefulsets", name),
            ("services", name),
            ("secrets", f"vc-{name}"),
        ):
            self.host.delete_object(resource, object_name, target)
        self.host.delete_object("jobs", f"helm-delete-{name}", namespace)
        self.uninstalled.append(f"{target}/{name}")
        # The finalizer is released: with no finalizer left the chart is gone.
        return self.host.delete_object("helmcharts", name, namespace)


def chart_values(chart: JSON) -> JSON:
    """The values a HelmChart carries (``spec.valuesContent``), parsed."""
    loaded: JSON = yaml.safe_load(chart["spec"]["valuesContent"])
    return loaded
