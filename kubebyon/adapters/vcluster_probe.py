"""Looking at a running vCluster: its API (with the vCluster's own kubeconfig) and its
control-plane pod's usage on the host (``metrics.k8s.io``), for the connection and
control-plane-metrics reconcilers.

One short request each, no retries: both reconcilers look again on their interval, and a
cluster that does not answer is a fact to record ("unreachable"), not an error to retry.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import aiohttp
import structlog
import yaml
from kubernetes_asyncio import client, config

from kubebyon.adapters.kube import Kube, KubeError

log = structlog.get_logger("kubebyon.adapters.vcluster_probe")

METRICS_GROUP, METRICS_VERSION = "metrics.k8s.io", "v1beta1"


class KubeconfigInvalid(Exception):
    """The kubeconfig cannot be used: unparsable, or its credentials are refused."""


class ClusterUnreachable(Exception):
    """The API server did not answer, or answered with a server error."""


@dataclass(frozen=True)
class VersionProbe:
    git_version: str
    latency_ms: float


@dataclass(frozen=True)
class PodUsage:
    cpu_millicores: float
    memory_bytes: float


async def probe_version(kubeconfig: str, *, seconds: float) -> VersionProbe:
    """``GET /version`` with the cluster's kubeconfig, timed."""
    try:
        document = yaml.safe_load(kubeconfig)
        if not isinstance(document, dict):
            raise KubeconfigInvalid("the kubeconfig is not a YAML mapping")
        api = await config.new_client_from_config_dict(document)
    except config.ConfigException as exc:
        raise KubeconfigInvalid(f"the kubeconfig cannot be used: {exc}") from None
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        # not the parser's message: it quotes the document, credentials included
        raise KubeconfigInvalid(f"the kubeconfig cannot be used ({type(exc).__name__})") from None
    vcluster = Kube(api, attempts=1, timeout=seconds)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(seconds):
            version = await vcluster.version()
    except KubeError as exc:
        if exc.status in (401, 403):
            raise KubeconfigInvalid(f"the API server refused the kubeconfig: {exc}") from None
        raise ClusterUnreachable(str(exc)) from None
    except TimeoutError:
        raise ClusterUnreachable(f"the API server did not answer within {seconds:g} s") from None
    finally:
        await vcluster.close()
    return VersionProbe(str(version.get("gitVersion", "")), (loop.time() - started) * 1000)


async def control_plane_usage(
    host: Kube | None, *, namespace: str, release: str, seconds: float
) -> PodUsage | None:
    """CPU and memory of the vCluster's control-plane pods (summed over replicas) from the
    host's metrics API; None when there is no host, no metrics API, no sample yet, or the
    host does not answer."""
    if host is None:
        return None
    try:
        async with asyncio.timeout(seconds):
            listing = await client.CustomObjectsApi(host.api).list_namespaced_custom_object(
                METRICS_GROUP,
                METRICS_VERSION,
                namespace,
                "pods",
                # the chart's selector labels of the control-plane pods (reference §3)
                label_selector=f"app=vcluster,release={release}",
                _request_timeout=seconds,
            )
    except (client.ApiException, aiohttp.ClientError, OSError, TimeoutError) as exc:
        log.debug("no control-plane metrics", namespace=namespace, error=type(exc).__name__)
        return None
    containers = [c for pod in listing.get("items", []) for c in pod.get("containers", [])]
    if not containers:
        return None
    try:
        cpu = sum(parse_quantity(c["usage"]["cpu"]) for c in containers)
        memory = sum(parse_quantity(c["usage"]["memory"]) for c in containers)
    except (KeyError, TypeError, ValueError):
        log.debug("unreadable control-plane metrics", namespace=namespace)
        return None
    return PodUsage(cpu_millicores=cpu * 1000, memory_bytes=memory)


_SUFFIXES = {
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)([A-Za-z]*)$")


def parse_quantity(text: str) -> float:
    """A Kubernetes resource quantity ("250m", "1.5", "128974848", "512Mi", "1e3")."""
    match = _QUANTITY.match(text.strip())
    if match is None or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a quantity: {text!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2)]
