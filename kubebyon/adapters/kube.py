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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.config.config_exception import ConfigException
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
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> JSON:
        try:
            answer: JSON = await self.api.call_api(
                path,
                method,
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
    ) -> JSON:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(attempts or self.attempts),
            wait=wait_exponential(multiplier=self.backoff, max=self.backoff * 8),
            retry=retry_if_exception(lambda e: isinstance(e, KubeError) and e.retryable),
            reraise=True,
        ):
            with attempt:
                return await self._request(method, path, body, content_type)
        raise AssertionError("unreachable")  # pragma: no cover - reraise=True

    async def get(self, resource: Resource, name: str, namespace: str | None = None) -> JSON | None:
        try:
            return await self._call("GET", resource.path(name, namespace))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

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
