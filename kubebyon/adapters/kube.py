"""The host Kubernetes API through kubernetes_asyncio, with objects as plain JSON.

Where the host is: ``KUBEBYON_KUBECONFIG_PATH``; else, inside a Kubernetes pod
(``KUBERNETES_SERVICE_HOST`` set and a service-account token mounted), that service
account; else there is no host cluster and ``connect_host`` returns None.

Calls are retried (tenacity) only when retrying can help: connection errors, timeouts,
429 and 5xx. Every other answer (404, 409, 422, ...) is the answer.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.config.config_exception import ConfigException
from kubernetes_asyncio.watch import Watch
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

JSON = dict[str, Any]
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_MERGE_PATCH = "application/merge-patch+json"
_ANSWERS = {200: "object", 201: "object", 202: "object"}


class KubeError(Exception):
    """A host API call failed. ``status`` is None when no answer came back."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status == 429 or self.status >= 500


class WatchExpired(KubeError):
    """The resourceVersion a watch started from is no longer kept (410 Gone), or is
    unknown to the server: list again."""


class HostConfigError(Exception):
    """The host cluster's configuration cannot be loaded (an operator must fix it)."""


@dataclass(frozen=True)
class Resource:
    api_version: str
    plural: str
    namespaced: bool = True

    def path(self, name: str | None = None, namespace: str | None = None) -> str:
        group = "/" in self.api_version  # "apps/v1"; the core group is plain "v1"
        path = f"/apis/{self.api_version}" if group else f"/api/{self.api_version}"
        if self.namespaced:
            if namespace is None:
                raise ValueError(f"{self.plural} are namespaced")
            path += f"/namespaces/{namespace}"
        path += f"/{self.plural}"
        return f"{path}/{name}" if name is not None else path


NAMESPACES = Resource("v1", "namespaces", namespaced=False)
SECRETS = Resource("v1", "secrets")
SERVICES = Resource("v1", "services")
RESOURCE_QUOTAS = Resource("v1", "resourcequotas")
LIMIT_RANGES = Resource("v1", "limitranges")
JOBS = Resource("batch/v1", "jobs")
STATEFUL_SETS = Resource("apps/v1", "statefulsets")
DEPLOYMENTS = Resource("apps/v1", "deployments")
HELM_CHARTS = Resource("helm.cattle.io/v1", "helmcharts")
NODES = Resource("v1", "nodes", namespaced=False)
PODS = Resource("v1", "pods")
MUTATING_WEBHOOKS = Resource(
    "admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations", namespaced=False
)
VALIDATING_WEBHOOKS = Resource(
    "admissionregistration.k8s.io/v1", "validatingwebhookconfigurations", namespaced=False
)


def contains(current: Any, desired: Any) -> bool:
    """Every field given in ``desired`` has that value in ``current`` (mappings are
    compared key by key, so fields the server adds do not count as differences)."""
    if isinstance(desired, Mapping):
        return isinstance(current, Mapping) and all(
            contains(current.get(key), value) for key, value in desired.items()
        )
    return bool(current == desired)


def is_deleting(obj: Mapping[str, Any]) -> bool:
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


def _message(exc: client.ApiException) -> str:
    body = exc.body
    if isinstance(body, str | bytes) and body:
        try:
            status = json.loads(body)
        except ValueError:
            status = None
        if isinstance(status, dict) and status.get("message"):
            return f"{exc.status} {status.get('reason') or exc.reason}: {status['message']}"
    return f"{exc.status} {exc.reason}"


class Kube:
    """One Kubernetes API server, spoken to in JSON."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        attempts: int = 3,
        backoff: float = 0.5,
        timeout: float = 15.0,
    ) -> None:
        self.api = api
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout

    async def close(self) -> None:
        await self.api.close()

    async def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> JSON:
        try:
            answer: JSON = await self.api.call_api(
                path,
                method,
                query_params=query,
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                response_types_map=_ANSWERS,
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _request_timeout=self.timeout,
            )
        except client.ApiException as exc:
            if not exc.status:  # the client's own wrapper around a transport failure
                raise KubeError(f"cannot reach the Kubernetes API: {exc.reason}") from None
            raise KubeError(_message(exc), status=exc.status) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            detail = str(exc) or type(exc).__name__
            raise KubeError(f"cannot reach the Kubernetes API: {detail}") from None
        return answer

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        *,
        attempts: int | None = None,
        query: list[tuple[str, str]] | None = None,
    ) -> JSON:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(attempts or self.attempts),
            wait=wait_exponential(multiplier=self.backoff, max=self.backoff * 8),
            retry=retry_if_exception(lambda e: isinstance(e, KubeError) and e.retryable),
            reraise=True,
        ):
            with attempt:
                return await self._request(method, path, body, content_type, query)
        raise AssertionError("unreachable")  # pragma: no cover - reraise=True

    async def get(self, resource: Resource, name: str, namespace: str | None = None) -> JSON | None:
        try:
            return await self._call("GET", resource.path(name, namespace))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def list_at(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[JSON], str]:
        """``list``, and the resourceVersion it was taken at (to ``watch`` from)."""
        if namespace is None and resource.namespaced:
            resource = replace(resource, namespaced=False)  # /api/v1/pods lists them all
        query = [("labelSelector", label_selector)] if label_selector else []
        query += [("fieldSelector", field_selector)] if field_selector else []
        answer = await self._call("GET", resource.path(None, namespace), query=query or None)
        items: list[JSON] = answer.get("items") or []
        return items, str((answer.get("metadata") or {}).get("resourceVersion") or "")

    async def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[JSON]:
        """The matching objects; a namespaced kind without ``namespace``: in every one."""
        items, _ = await self.list_at(
            resource, namespace, label_selector=label_selector, field_selector=field_selector
        )
        return items

    async def watch(
        self,
        resource: Resource,
        *,
        resource_version: str,
        timeout_seconds: int,
        label_selector: str | None = None,
    ) -> AsyncGenerator[tuple[str, JSON], None]:
        """Changes after ``resource_version`` as (ADDED | MODIFIED | DELETED | BOOKMARK,
        object), bookmarks requested, until the server ends the stream after
        ``timeout_seconds``. Raises ``WatchExpired`` when the version is not kept (list
        again), ``KubeError`` when the stream cannot be opened or breaks."""
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        query += [("labelSelector", label_selector)] if label_selector else []

        async def open_stream(**_: Any) -> Any:
            # Unread: kubernetes_asyncio's Watch reads the lines (and Status errors).
            return await self.api.call_api(
                resource.path(),
                "GET",
                query_params=query,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout_seconds + self.timeout,
            )

        try:
            async with Watch() as stream:
                # timeout_seconds tells Watch the stream ends: no silent reconnects.
                async for event in stream.stream(open_stream, timeout_seconds=timeout_seconds):
                    if not isinstance(event, dict):
                        raise KubeError(f"unreadable watch event: {str(event)[:200]}")
                    yield event["type"], event["raw_object"]
        except client.ApiException as exc:
            # 504 "Too large resource version": newer than this server knows (another host
            # cluster, a restored etcd); listing again is the way out of both.
            if exc.status == 410 or "too large resource version" in str(exc.reason).lower():
                raise WatchExpired(f"watch expired: {exc.reason}", status=exc.status) from None
            raise KubeError(f"watch failed: {exc.status} {exc.reason}", status=exc.status) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            detail = str(exc) or type(exc).__name__
            raise KubeError(f"cannot reach the Kubernetes API: {detail}") from None

    async def create(self, resource: Resource, obj: JSON) -> JSON:
        namespace = obj["metadata"].get("namespace")
        return await self._call("POST", resource.path(None, namespace), obj)

    async def patch(
        self, resource: Resource, name: str, patch: JSON, namespace: str | None = None
    ) -> JSON:
        """A JSON merge patch (``null`` removes a field)."""
        return await self._call("PATCH", resource.path(name, namespace), patch, _MERGE_PATCH)

    async def delete(self, resource: Resource, name: str, namespace: str | None = None) -> bool:
        """Ask for deletion (finalizers may keep the object a while); False if absent."""
        try:
            await self._call(
                "DELETE", resource.path(name, namespace), {"propagationPolicy": "Background"}
            )
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def ensure(self, resource: Resource, desired: JSON) -> tuple[JSON, bool]:
        """Create ``desired`` or merge-patch the existing object until it contains every
        field of ``desired``; no write when it already does. Returns (object, wrote)."""
        meta = desired["metadata"]
        current = await self.get(resource, meta["name"], meta.get("namespace"))
        if current is None:
            try:
                return await self.create(resource, desired), True
            except KubeError as exc:
                if exc.status != 409:  # created meanwhile: compare with that one
                    raise
            current = await self.get(resource, meta["name"], meta.get("namespace"))
            if current is None:
                raise KubeError(f"{resource.plural} {meta['name']} vanished while being created")
        if contains(current, desired):
            return current, False
        patch = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind")}
        return await self.patch(resource, meta["name"], patch, meta.get("namespace")), True

    async def evict(self, name: str, namespace: str) -> str | None:
        """Evict a pod through the Eviction API, which honours its PodDisruptionBudget.
        None once it is evicted (or gone); else why not *yet*: 429 (a budget allows no
        disruption now) and other answers worth retrying later are returned, not raised,
        and not retried here — the caller decides when to ask again."""
        eviction = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        path = PODS.path(name, namespace) + "/eviction"
        try:
            await self._call("POST", path, eviction, attempts=1)
        except KubeError as exc:
            if exc.status == 404:
                return None
            if exc.retryable:
                return str(exc)
            raise
        return None

    async def version(self) -> JSON:
        """``GET /version`` once, without retries (health probes)."""
        return await self._call("GET", "/version", attempts=1)


async def connect_host(
    kubeconfig_path: Path | None,
    *,
    environ: Mapping[str, str] = os.environ,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    **options: Any,
) -> Kube | None:
    """The host cluster, or None when none is configured. ``options`` go to ``Kube``."""
    try:
        if kubeconfig_path is not None:
            api = await config.new_client_from_config(
                config_file=str(kubeconfig_path), persist_config=False
            )
        elif environ.get("KUBERNETES_SERVICE_HOST") and (service_account_dir / "token").is_file():
            configuration = client.Configuration()
            # Reads the token file, and again when it is rotated.
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration,
                token_filename=str(service_account_dir / "token"),
                cert_filename=str(service_account_dir / "ca.crt"),
                environ=environ,
            )
            api = client.ApiClient(configuration)
        else:
            return None
    except (ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
        source = kubeconfig_path or "the in-cluster service account"
        raise HostConfigError(
            f"cannot load the host cluster configuration ({source}): {exc}"
        ) from None
    return Kube(api, **options)
