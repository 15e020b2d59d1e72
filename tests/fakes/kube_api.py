"""An in-process fake Kubernetes API server that speaks the real wire protocol.

It is an ``aiohttp.web`` server on 127.0.0.1 (random port) that stores objects in
memory and answers the REST paths the real apiserver answers, with real ``Status``
error bodies, a single global ``resourceVersion``, watches (with bookmarks and
410 on compacted history), label/field selectors, and merge / strategic-merge /
JSON / (approximate) server-side-apply patches.  Any client works against it:
``kubernetes_asyncio``, ``kubectl``, plain HTTP.

Usage::

    async with FakeKubeAPI() as kube:
        async with await kube.api_client() as api:
            await CoreV1Api(api).list_namespace()
        kube.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
        kube.fail_next(2, status=500)   # the next two requests fail
        kube.down()                     # every request gets 503 until kube.up()

What is NOT modelled: controllers (no pods for deployments, no garbage collection
via ownerReferences, no scheduling, no kubelet), admission, RBAC, defaulting
beyond a few fields, API-version conversion, field ownership of server-side
apply (apply is a create-or-merge-patch), and the exact element order strategic
merge produces.  Strategic merge patch knows the common list merge keys of the
built-in types (containers/env/volumes by name, conditions by type, finalizers
as a set, ...) and the ``$patch``/``$deleteFromPrimitiveList`` directives; like
the real server it is refused (415) for custom resources.  The ``pods/eviction``
subresource honours PodDisruptionBudgets, computing what the disruption controller
would (``FakeKubeAPI._evict``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import functools
import ipaddress
import json
import random
import re
import ssl
import tempfile
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

JSON = dict[str, Any]

DEFAULT_TOKEN = "fake-token"

_ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_STATUS_VERBS = ["get", "patch", "update"]
_DEFAULT_WATCH_TIMEOUT = 1800.0
_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class ResourceType:
    """One REST resource (a group/version/plural) the fake serves."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    status_subresource: bool = True
    short_names: tuple[str, ...] = ()
    custom: bool = False  # behaves like a CRD (status dropped on create, PUT needs RV)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def resource_name(self) -> str:
        """kubectl-style name: ``plural`` for core, ``plural.group`` otherwise."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


_BUILTIN_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, True, ("ns",)),
    ResourceType("", "v1", "nodes", "Node", False, True, ("no",)),
    ResourceType("", "v1", "secrets", "Secret", True, False),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, False, ("cm",)),
    ResourceType("", "v1", "services", "Service", True, True, ("svc",)),
    ResourceType("", "v1", "pods", "Pod", True, True, ("po",)),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, False, ("sa",)),
    ResourceType("", "v1", "resourcequotas", "ResourceQuota", True, True, ("quota",)),
    ResourceType("", "v1", "limitranges", "LimitRange", True, False, ("limits",)),
    ResourceType("", "v1", "events", "Event", True, False, ("ev",)),
    ResourceType("", "v1", "endpoints", "Endpoints", True, False, ("ep",)),
    ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, True, ("pvc",)),
    ResourceType("apps", "v1", "deployments", "Deployment", True, True, ("deploy",)),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", True, True, ("sts",)),
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, True, ("ds",)),
    ResourceType("batch", "v1", "jobs", "Job", True, True),
    ResourceType(
        "policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, True, ("pdb",)
    ),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True, False),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True, False),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, False),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, False),
    ResourceType(
        "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False, False
    ),
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        False,
        False,
    ),
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        False,
        False,
    ),
    ResourceType("helm.cattle.io", "v1", "helmcharts", "HelmChart", True, True, (), custom=True),
)


class ApiError(Exception):
    """Raised inside the fake; turned into a ``Status`` response."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        *,
        name: str | None = None,
        kind: str | None = None,
        group: str | None = None,
        causes: list[JSON] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details: JSON = {}
        if name is not None:
            self.details["name"] = name
        if group:
            self.details["group"] = group
        if kind is not None:
            self.details["kind"] = kind
        if causes:
            self.details["causes"] = causes

    def status(self) -> JSON:
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        404, f'{rt.resource_name} "{name}" not found', name=name, kind=rt.plural, group=rt.group
    )


def _conflict(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {rt.resource_name} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        "Conflict",
        name=name,
        kind=rt.plural,
        group=rt.group,
    )


def _invalid(rt: ResourceType, name: str, fld: str, detail: str) -> ApiError:
    return ApiError(
        422,
        f'{rt.kind} "{name}" is invalid: {fld}: {detail}',
        "Invalid",
        name=name,
        kind=rt.kind,
        group=rt.group,
        causes=[{"reason": "FieldValueInvalid", "message": detail, "field": fld}],
    )


# ----------------------------------------------------------------------- selectors


@dataclass(frozen=True)
class _Requirement:
    key: str
    op: str  # = != in notin exists !exists gt lt
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "=":
                return has and value == self.values[0]
            case "!=":
                return not has or value != self.values[0]
            case "in":
                return has and value in self.values
            case "notin":
                return not has or value not in self.values
            case "exists":
                return has
            case "!exists":
                return not has
            case "gt" | "lt":
                try:
                    number = int(value or "")
                except ValueError:
                    return False
                bound = int(self.values[0])
                return number > bound if self.op == "gt" else number < bound
        return False  # pragma: no cover


_LABEL_KEY = r"(?:[A-Za-z0-9.\-]+/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_SET_RE = re.compile(rf"^({_LABEL_KEY})\s+(in|notin)\s*\((.*)\)$")
_EQ_RE = re.compile(rf"^({_LABEL_KEY})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)$")
_CMP_RE = re.compile(rf"^({_LABEL_KEY})\s*([<>])\s*(-?\d+)$")
_EXISTS_RE = re.compile(rf"^({_LABEL_KEY})$")
_NOT_EXISTS_RE = re.compile(rf"^!\s*({_LABEL_KEY})$")


def _split_top_level(text: str) -> Iterator[str]:
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            yield text[start:i]
            start = i + 1
    yield text[start:]


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector (``k=v``, ``k!=v``, ``k``, ``!k``, ``k in (..)``, ...)."""

    requirements: tuple[_Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        reqs: list[_Requirement] = []
        for raw in _split_top_level(text or ""):
            term = raw.strip()
            if not term:
                continue
            if m := _SET_RE.match(term):
                values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
                reqs.append(_Requirement(m.group(1), m.group(2), values))
            elif m := _NOT_EXISTS_RE.match(term):
                reqs.append(_Requirement(m.group(1), "!exists"))
            elif m := _EQ_RE.match(term):
                op = "!=" if m.group(2) == "!=" else "="
                reqs.append(_Requirement(m.group(1), op, (m.group(3),)))
            elif m := _CMP_RE.match(term):
                reqs.append(
                    _Requirement(m.group(1), "gt" if m.group(2) == ">" else "lt", (m.group(3),))
                )
            elif m := _EXISTS_RE.match(term):
                reqs.append(_Requirement(m.group(1), "exists"))
            else:
                raise ApiError(400, f"unable to parse requirement: {term!r}")
        return cls(tuple(reqs))

    def matches(self, obj: JSON) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r.matches(labels) for r in self.requirements)


def _field_value(obj: JSON, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


@dataclass(frozen=True)
class FieldSelector:
    """A parsed field selector: ``a.b=c``, ``a.b==c``, ``a.b!=c`` joined by commas."""

    terms: tuple[tuple[str, bool, str], ...] = ()  # (path, equal?, value)

    @classmethod
    def parse(cls, text: str | None) -> FieldSelector:
        terms: list[tuple[str, bool, str]] = []
        for raw in (text or "").split(","):
            term = raw.strip()
            if not term:
                continue
            m = re.match(r"^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$", term)
            if not m:
                raise ApiError(400, f"invalid field selector: {term!r}")
            terms.append((m.group(1), m.group(2) != "!=", m.group(3).strip()))
        return cls(tuple(terms))

    def matches(self, obj: JSON) -> bool:
        return all((_field_value(obj, p) == v) == eq for p, eq, v in self.terms)


# -------------------------------------------------------------------------- patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (``null`` deletes a key); returns a new value."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# Lists that strategic merge patch merges (instead of replacing) in the built-in
# types: field name -> merge key (None: a list of scalars merged as a set).
_SMP_MERGE_KEYS: dict[str, str | None] = {
    "finalizers": None,
    "podCIDRs": None,
    "ownerReferences": "uid",
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "resourceClaims": "name",
    "conditions": "type",
    "ports": "port",
}
_CONTAINER_FIELDS = ("containers", "initContainers", "ephemeralContainers")


def _smp_merge_key(path: tuple[str, ...]) -> tuple[bool, str | None]:
    """(merge this list?, merge key) for the list at ``path`` (list indices omitted)."""
    name = path[-1]
    if name == "ports" and len(path) > 1 and path[-2] in _CONTAINER_FIELDS:
        return True, "containerPort"
    if path in (("status", "addresses"), ("secrets",)):  # Node addresses, SA secrets
        return True, "type" if path[0] == "status" else "name"
    if name in _SMP_MERGE_KEYS:
        return True, _SMP_MERGE_KEYS[name]
    return False, None


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value if not (isinstance(v, dict) and "$patch" in v)]
    return copy.deepcopy(value)


def _smp_list(original: list[Any], patch: list[Any], path: tuple[str, ...]) -> list[Any]:
    merge, key = _smp_merge_key(path)
    if not merge or any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return _strip_directives(patch)  # type: ignore[no-any-return]
    if key is None:
        return copy.deepcopy(original) + [v for v in patch if v not in original]
    result = copy.deepcopy(original)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise ApiError(
                422, f"map: {item!r} does not contain declared merge key: {key}", "Invalid"
            )
        if item.get("$patch") == "delete":
            result = [r for r in result if not (isinstance(r, dict) and r.get(key) == item[key])]
            continue
        for i, existing in enumerate(result):
            if isinstance(existing, dict) and existing.get(key) == item[key]:
                result[i] = strategic_merge_patch(existing, item, path)
                break
        else:
            result.append(strategic_merge_patch({}, item, path))
    return result


def strategic_merge_patch(original: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """Kubernetes strategic merge patch for the built-in types (see _SMP_MERGE_KEYS);
    returns a new value (None when the patch deletes the map)."""
    if not isinstance(patch, dict):
        return _strip_directives(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip_directives(patch)
    if directive == "delete":
        return None
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    if isinstance(patch.get("$retainKeys"), list):
        result = {k: v for k, v in result.items() if k in patch["$retainKeys"]}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list) and isinstance(value, list):
                result[name] = [v for v in result[name] if v not in value]
            continue
        if key.startswith("$"):
            continue  # $patch, $retainKeys, $setElementOrder/...: handled or order-only
        old = result.get(key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(old, value, (*path, key))
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _smp_list(old if isinstance(old, list) else [], value, (*path, key))
        else:
            result[key] = copy.deepcopy(value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, f"invalid JSON pointer {path!r}", "Invalid")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit():
        raise ApiError(422, f"invalid array index {token!r}", "Invalid")
    idx = int(token)
    if idx > len(container) or (idx == len(container) and not allow_end):
        raise ApiError(422, f"array index {idx} out of bounds", "Invalid")
    return idx


def _walk(doc: Any, tokens: list[str]) -> Any:
    cur = doc
    for token in tokens:
        if isinstance(cur, dict) and token in cur:
            cur = cur[token]
        elif isinstance(cur, list):
            cur = cur[_index(cur, token, allow_end=False)]
        else:
            raise ApiError(422, f"path /{'/'.join(tokens)} does not exist", "Invalid")
    return cur


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _walk(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise ApiError(422, f"cannot add at /{'/'.join(tokens)}", "Invalid")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise ApiError(422, "cannot remove the document root", "Invalid")
    parent = _walk(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, allow_end=False))
    raise ApiError(422, f"path /{'/'.join(tokens)} does not exist", "Invalid")


def json_patch(doc: Any, ops: list[Any]) -> Any:
    """RFC 6902 JSON patch (add/remove/replace/move/copy/test); returns a new value."""
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ApiError(400, f"invalid JSON patch operation: {op!r}")
        kind, tokens = op["op"], _pointer(op["path"])
        if kind in ("add", "replace", "test") and "value" not in op:
            raise ApiError(400, f"JSON patch {kind} needs a value")
        if kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, tokens)
        elif kind == "replace":
            if tokens:
                _remove(doc, tokens)
            doc = _add(doc, tokens, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            source = _pointer(str(op.get("from", "")))
            value = _remove(doc, source) if kind == "move" else copy.deepcopy(_walk(doc, source))
            doc = _add(doc, tokens, value)
        elif kind == "test":
            if _walk(doc, tokens) != op["value"]:
                raise ApiError(422, f"JSON patch test failed at {op['path']}", "Invalid")
        else:
            raise ApiError(400, f"unknown JSON patch op {kind!r}")
    return doc


# ------------------------------------------------------------------------- watches


@dataclass(frozen=True)
class _Event:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: tuple[str, str]  # ResourceType.key
    namespace: str
    obj: JSON
    prev: JSON | None


@dataclass(frozen=True)
class _Bookmark:
    rv: int


_STOP = object()


@dataclass(eq=False)
class _Watcher:
    rt: ResourceType
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)

    def translate(self, ev: _Event) -> tuple[str, JSON] | None:
        """The event this watcher should see for ``ev`` (None: not for it)."""
        if ev.key != self.rt.key or (self.namespace is not None and ev.namespace != self.namespace):
            return None
        now = self._matches(ev.obj)
        before = ev.prev is not None and self._matches(ev.prev)
        if ev.type == "ADDED":
            return ("ADDED", ev.obj) if now else None
        if ev.type == "DELETED":
            return ("DELETED", ev.obj) if now else None
        if now:
            return ("MODIFIED" if before else "ADDED", ev.obj)
        if before and ev.prev is not None:  # left the selection: looks like a delete
            gone = copy.deepcopy(ev.prev)
            gone["metadata"]["resourceVersion"] = str(ev.rv)
            return ("DELETED", gone)
        return None

    def _matches(self, obj: JSON) -> bool:
        return self.labels.matches(obj) and self.fields.matches(obj)


# ------------------------------------------------------------------------- helpers


@functools.cache
def _self_signed_certificate(host: str) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for ``host`` (an IP), made once per process."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kube-apiserver")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    created = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    secs = max(0, int((datetime.now(UTC) - created).total_seconds()))
    if secs < 120:
        return f"{secs}s"
    if secs < 2 * 3600:
        return f"{secs // 60}m"
    if secs < 2 * 86400:
        return f"{secs // 3600}h"
    return f"{secs // 86400}d"


def _number(value: str | None, name: str) -> float:
    try:
        return float(value or 0)
    except ValueError:
        raise ApiError(400, f"invalid {name}: {value!r}") from None


def _truthy(value: str | None) -> bool:
    return value in ("true", "1", "True")


def _meta(obj: JSON) -> JSON:
    meta = obj.get("metadata")
    if meta is None:
        meta = obj["metadata"] = {}
    if not isinstance(meta, dict):
        raise ApiError(400, "metadata must be an object")
    return meta


def _selects(selector: Any, obj: JSON) -> bool:
    """A metav1.LabelSelector object (``matchLabels``, ``matchExpressions``); an empty one
    selects everything, a missing one nothing."""
    if not isinstance(selector, dict):
        return False
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    reqs = [_Requirement(k, "=", (v,)) for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        reqs.append(_Requirement(expr["key"], ops[expr["operator"]], tuple(expr.get("values", []))))
    return LabelSelector(tuple(reqs)).matches(obj)


def _scaled(value: int | str, total: int) -> int:
    """An IntOrString of a PodDisruptionBudget; percentages round up, as Kubernetes does."""
    if isinstance(value, str) and value.endswith("%"):
        return -(-int(value[:-1]) * total // 100)
    return int(value)


def _spec_part(obj: JSON) -> JSON:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}


@dataclass
class _Failure:
    remaining: int
    status: int
    message: str
    method: str | None
    path: str | None


@dataclass(frozen=True)
class _Route:
    template: str
    rt: ResourceType | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    discovery: Callable[[], JSON] | None = None


# ---------------------------------------------------------------------------- fake


class FakeKubeAPI:
    """A fake kube-apiserver; use as ``async with FakeKubeAPI() as kube: ...``."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        namespaces: Iterable[str] = ("default", "kube-system"),
        history_limit: int = 10_000,
        bookmark_interval: float = 60.0,
        git_version: str = "v1.31.0",
        tls: bool = False,
        port: int = 0,
    ) -> None:
        self.token = token
        self.tls = tls
        self.history_limit = history_limit
        self.bookmark_interval = bookmark_interval
        self.git_version = git_version
        self.request_count: Counter[tuple[str, str]] = Counter()
        self.requests: list[tuple[str, str]] = []  # (method, path?query) in arrival order
        self.host = "127.0.0.1"
        self.port = port  # 0: pick a free one; kept after stop() so start() reuses it
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._store: dict[tuple[str, str], dict[tuple[str, str], JSON]] = {}
        self._rv = 0
        self._history: deque[_Event] = deque()
        self._history_floor = 0  # events with rv <= floor are gone
        self._watchers: set[_Watcher] = set()
        self._changed = asyncio.Event()
        self._failures: list[_Failure] = []
        self._down = False
        self._runner: web.AppRunner | None = None
        self._clients: list[Any] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        for rt in _BUILTIN_TYPES:
            self._add_type(rt)
        for ns in namespaces:
            self.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeKubeAPI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        for client in self._clients:
            await client.close()
        self._clients.clear()

    async def start(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        ssl_context = None
        if self.tls:
            self._tmp = tempfile.TemporaryDirectory(prefix="fake-kube-")
            cert_file, key_file = Path(self._tmp.name, "tls.crt"), Path(self._tmp.name, "tls.key")
            cert_pem, key_pem = _self_signed_certificate(self.host)
            cert_file.write_bytes(cert_pem)
            key_file.write_bytes(key_pem)
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(cert_file, key_file)
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop serving (state is kept; :meth:`start` serves it again on the same port),
        e.g. to simulate an apiserver crash: clients get connection errors meanwhile."""
        self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    # ------------------------------------------------------------- client config

    def kubeconfig_dict(self, *, token: str | None = None, namespace: str = "default") -> JSON:
        """A kubeconfig (as a dict) pointing at this server with a bearer token (and,
        with ``tls=True``, the server's self-signed certificate as the CA)."""
        cluster: JSON = {"server": self.url}
        if self.tls:
            cert_pem = _self_signed_certificate(self.host)[0]
            cluster["certificate-authority-data"] = base64.b64encode(cert_pem).decode()
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "fake", "user": {"token": token or self.token}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                }
            ],
            "current-context": "fake",
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | Path, *, token: str | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.kubeconfig_dict(token=token)))
        return path

    async def api_client(self, *, token: str | None = None) -> Any:
        """A ``kubernetes_asyncio.client.ApiClient`` for this server (closed when the
        ``async with`` block ends)."""
        from kubernetes_asyncio import config

        client = await config.new_client_from_config_dict(self.kubeconfig_dict(token=token))
        self._clients.append(client)
        return client

    # -------------------------------------------------------------- fault control

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        message: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Fail the next ``n`` requests (optionally only those with this method and/or
        whose path contains ``path``) with a ``Status`` of code ``status``."""
        self._failures.append(
            _Failure(
                n,
                status,
                message or f"injected failure ({status})",
                method.upper() if method else None,
                path,
            )
        )

    def down(self) -> None:
        """Answer every request with 503 until :meth:`up`; open watches are closed."""
        self._down = True
        self.drop_watches()

    def up(self) -> None:
        self._down = False

    @property
    def is_down(self) -> bool:
        return self._down

    def drop_watches(self) -> None:
        """End every open watch stream (clients see the stream close)."""
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(_STOP)

    def reset_request_counts(self) -> None:
        self.request_count.clear()
        self.requests.clear()

    # ----------------------------------------------------------- watch control

    @property
    def resource_version(self) -> int:
        return self._rv

    def compact(self) -> None:
        """Forget all watch history: watches from any older resourceVersion get 410."""
        self._history.clear()
        self._history_floor = self._rv

    def send_bookmark(self) -> None:
        """Send a BOOKMARK now to every watch that asked for bookmarks."""
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(_Bookmark(self._rv))

    @property
    def watch_count(self) -> int:
        return len(self._watchers)

    async def wait_for_watchers(
        self, count: int = 1, resource: str | None = None, *, timeout: float = 5.0
    ) -> None:
        """Wait until at least ``count`` watches (on ``resource``, if given) are open."""
        rt = self._resolve(resource) if resource else None

        def ready() -> bool:
            return sum(1 for w in self._watchers if rt is None or w.rt.key == rt.key) >= count

        await self.wait_for(ready, timeout=timeout)

    async def wait_for(self, predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
        """Wait (no polling) until ``predicate()`` is true; re-checked after every change
        to objects or watches.  Raises ``TimeoutError``."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------ resource types

    def register_resource(
        self,
        group: str,
        version: str,
        plural: str,
        kind: str,
        namespaced: bool = True,
        *,
        status_subresource: bool = True,
        short_names: Iterable[str] = (),
    ) -> ResourceType:
        """Serve a CRD-like resource at ``/apis/{group}/{version}/...``."""
        rt = ResourceType(
            group,
            version,
            plural,
            kind,
            namespaced,
            status_subresource,
            tuple(short_names),
            custom=True,
        )
        self._add_type(rt)
        return rt

    def _add_type(self, rt: ResourceType) -> None:
        self._types[(rt.group, rt.version, rt.plural)] = rt
        self._store.setdefault(rt.key, {})

    def _resolve(self, resource: str) -> ResourceType:
        """``"secrets"``, ``"Secret"``, ``"deployments.apps"``, ``"apps/v1/deployments"``."""
        candidates = []
        for rt in self._types.values():
            names = {
                rt.plural,
                rt.kind,
                rt.resource_name,
                f"{rt.prefix[1:]}/{rt.plural}",
                f"{rt.api_version}/{rt.plural}",
                f"{rt.kind}.{rt.group}",
            }
            if resource in names:
                candidates.append(rt)
        core = [rt for rt in candidates if not rt.group]
        if len(candidates) == 1 or len(core) == 1:
            return core[0] if core else candidates[0]
        if not candidates:
            raise KeyError(f"unknown resource {resource!r}")
        raise KeyError(f"ambiguous resource {resource!r}; use plural.group")

    def _type_for(self, obj: JSON) -> ResourceType:
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        group, _, version = api_version.rpartition("/")
        for rt in self._types.values():
            if rt.group == group and rt.version == version and rt.kind == kind:
                return rt
        raise KeyError(f"no resource registered for {api_version} {kind}")

    # ------------------------------------------------------- direct helpers

    def get(self, resource: str, name: str, namespace: str | None = None) -> JSON | None:
        """The stored object (a copy) or None; namespaced kinds default to "default".
        No HTTP, not counted."""
        rt = self._resolve(resource)
        obj = self._store[rt.key].get(((namespace or "default") if rt.namespaced else "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def objects(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[JSON]:
        """Stored objects (copies) sorted by namespace/name; ``namespace=None``: all."""
        rt = self._resolve(resource)
        return copy.deepcopy(
            self._select(
                rt,
                namespace,
                LabelSelector.parse(label_selector),
                FieldSelector.parse(field_selector),
            )
        )

    def put_object(self, obj: JSON) -> JSON:
        """Create or overwrite an object from its apiVersion/kind, bypassing validation,
        conflicts, finalizer and status rules: what you give is stored (a given uid,
        creationTimestamp or deletionTimestamp is kept; namespaced kinds default to
        "default").  Emits ADDED/MODIFIED and bumps the resourceVersion; returns a copy."""
        rt = self._type_for(obj)
        new = copy.deepcopy(obj)
        meta = _meta(new)
        name = meta["name"]
        ns = meta.get("namespace", "default") if rt.namespaced else ""
        if rt.namespaced:
            meta["namespace"] = ns
        old = self._store[rt.key].get((ns, name))
        if old is None:
            new["apiVersion"], new["kind"] = rt.api_version, rt.kind
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            meta.setdefault("generation", 1)
            self._apply_defaults(rt, new)
            self._commit(rt, "ADDED", new, None)
        else:
            for keep in ("uid", "creationTimestamp"):
                meta.setdefault(keep, old["metadata"].get(keep))
            meta.setdefault("generation", old["metadata"].get("generation", 1))
            self._commit(rt, "MODIFIED", new, old)
        return copy.deepcopy(new)

    def delete_object(self, resource: str, name: str, namespace: str | None = None) -> bool:
        """Remove an object now, ignoring finalizers (emits DELETED; a namespace takes its
        contents with it).  Namespaced kinds default to "default".  False if absent."""
        rt = self._resolve(resource)
        old = self._store[rt.key].get(((namespace or "default") if rt.namespaced else "", name))
        if old is None:
            return False
        self._remove(rt, old)
        return True

    # ------------------------------------------------------------- storage

    def _select(
        self, rt: ResourceType, namespace: str | None, labels: LabelSelector, fields: FieldSelector
    ) -> list[JSON]:
        return [
            obj
            for (ns, _), obj in sorted(self._store[rt.key].items())
            if (namespace is None or ns == namespace)
            and labels.matches(obj)
            and fields.matches(obj)
        ]

    def _fill_new_metadata(self, rt: ResourceType, obj: JSON) -> None:
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = _meta(obj)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta.setdefault("generation", 1)
        for transient in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(transient, None)
        self._apply_defaults(rt, obj)

    @staticmethod
    def _apply_defaults(rt: ResourceType, obj: JSON) -> None:
        meta = obj["metadata"]
        for omit_empty in ("labels", "annotations", "finalizers", "ownerReferences"):
            if omit_empty in meta and not meta[omit_empty]:
                del meta[omit_empty]  # the real server drops them (Go omitempty)
        if rt.kind == "Namespace":
            obj.setdefault("status", {}).setdefault("phase", "Active")
        elif rt.kind == "Pod":
            obj.setdefault("status", {}).setdefault("phase", "Pending")
        elif rt.kind == "Secret":
            obj.setdefault("type", "Opaque")

    def _commit(self, rt: ResourceType, kind: str, obj: JSON, prev: JSON | None) -> None:
        self._rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._rv)
        ns = meta.get("namespace", "") if rt.namespaced else ""
        if kind == "DELETED":
            self._store[rt.key].pop((ns, meta["name"]), None)
        else:
            self._store[rt.key][(ns, meta["name"])] = obj
        event = _Event(self._rv, kind, rt.key, ns, obj, prev)
        self._history.append(event)
        while len(self._history) > self.history_limit:
            self._history_floor = self._history.popleft().rv
        for watcher in self._watchers:
            watcher.queue.put_nowait(event)
        self._notify()

    def _remove(self, rt: ResourceType, obj: JSON) -> JSON:
        gone = copy.deepcopy(obj)
        if rt.kind == "Namespace":
            self._remove_namespace_content(obj["metadata"]["name"])
        self._commit(rt, "DELETED", gone, obj)
        return gone

    # ---------------------------------------------------------------- HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        route: _Route | ApiError
        try:
            route = self._route(request.path)
        except ApiError as err:
            route = err
        template = route.template if isinstance(route, _Route) else request.path
        self.request_count[(request.method, template)] += 1
        self.requests.append((request.method, request.path_qs))
        try:
            self._check_availability(request)
            self._check_auth(request)
            if isinstance(route, ApiError):
                raise route
            if route.discovery is not None:
                if request.method != "GET":
                    raise ApiError(405, f"{request.method} is not allowed on {request.path}")
                return web.json_response(route.discovery())
            return await self._dispatch(request, route)
        except ApiError as err:
            headers = {"Retry-After": "1"} if err.code in (429, 503) else None
            return web.json_response(err.status(), status=err.code, headers=headers)

    def _check_availability(self, request: web.Request) -> None:
        if self._down:
            raise ApiError(503, "the server is currently unable to handle the request")
        for failure in self._failures:
            if failure.remaining <= 0:
                continue
            if failure.method and failure.method != request.method:
                continue
            if failure.path and failure.path not in request.path:
                continue
            failure.remaining -= 1
            raise ApiError(failure.status, failure.message)
        self._failures = [f for f in self._failures if f.remaining > 0]

    def _check_auth(self, request: web.Request) -> None:
        if request.headers.get("Authorization", "") != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized")

    def _route(self, path: str) -> _Route:
        parts = [p for p in path.split("/") if p]
        if parts == ["version"]:
            return _Route("/version", discovery=self._version)
        if not parts or parts[0] not in ("api", "apis"):
            raise ApiError(404, "the server could not find the requested resource")
        if parts[0] == "api":
            if len(parts) == 1:
                return _Route("/api", discovery=self._api_versions)
            group, version, rest = "", parts[1], parts[2:]
            prefix = f"/api/{version}"
        else:
            if len(parts) == 1:
                return _Route("/apis", discovery=self._api_groups)
            if len(parts) == 2:
                group_name = parts[1]
                return _Route(f"/apis/{group_name}", discovery=lambda: self._api_group(group_name))
            group, version, rest = parts[1], parts[2], parts[3:]
            prefix = f"/apis/{group}/{version}"
        if not any(k[0] == group and k[1] == version for k in self._types):
            raise ApiError(404, "the server could not find the requested resource")
        if not rest:
            return _Route(prefix, discovery=lambda: self._resource_list(group, version))
        namespace: str | None = None
        nested = self._types.get((group, version, rest[2])) if len(rest) >= 3 else None
        if rest[0] == "namespaces" and nested is not None and nested.namespaced:
            namespace, rest = rest[1], rest[2:]
        rt = self._types.get((group, version, rest[0]))
        if rt is None or len(rest) > 3 or (namespace is not None and not rt.namespaced):
            raise ApiError(404, "the server could not find the requested resource")
        template = prefix + ("/namespaces/{namespace}" if namespace is not None else "")
        template += f"/{rt.plural}" + ("/{name}" if len(rest) > 1 else "")
        template += f"/{rest[2]}" if len(rest) > 2 else ""
        return _Route(
            template,
            rt,
            namespace,
            rest[1] if len(rest) > 1 else None,
            rest[2] if len(rest) > 2 else None,
        )

    async def _dispatch(self, request: web.Request, route: _Route) -> web.StreamResponse:
        rt, ns, name, sub = route.rt, route.namespace, route.name, route.subresource
        assert rt is not None
        query = request.query
        method = request.method
        dry_run = bool(query.get("dryRun"))
        if sub == "eviction" and rt.kind == "Pod" and ns is not None and name is not None:
            if method != "POST":
                raise ApiError(405, f"{method} is not supported on pods/eviction")
            return web.json_response(self._evict(ns, name, await self._body(request)), status=201)
        if sub is not None and not (sub == "status" and rt.status_subresource):
            raise ApiError(404, "the server could not find the requested resource")
        if name is None:
            if method == "GET":
                if _truthy(query.get("watch")):
                    return await self._watch(request, rt, ns)
                return self._respond(request, rt, self._list(rt, ns, query))
            if method == "POST" and (ns is not None or not rt.namespaced):
                body = await self._body(request)
                return web.json_response(self._create(rt, ns, body, dry_run), status=201)
            if method == "DELETE" and (ns is not None or not rt.namespaced):
                return web.json_response(self._delete_collection(rt, ns, query))
            raise ApiError(405, f"{method} is not supported on this collection")
        if rt.namespaced and ns is None:
            raise ApiError(404, "the server could not find the requested resource")
        key = (ns or "", name)
        if method == "GET":
            obj = self._store[rt.key].get(key)
            if obj is None:
                raise _not_found(rt, name)
            return self._respond(request, rt, obj)
        if method == "PUT":
            body = await self._body(request)
            return web.json_response(self._replace(rt, key, body, sub, dry_run))
        if method == "PATCH":
            body = await self._body(request)
            created = key not in self._store[rt.key]  # only apply patches may create
            result = self._patch(request, rt, key, body, sub, dry_run)
            return web.json_response(result, status=201 if created else 200)
        if method == "DELETE" and sub is None:
            body = await self._body(request)
            return web.json_response(self._delete(rt, key, body, dry_run))
        raise ApiError(405, f"{method} is not supported here")

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw.strip():
            return None
        try:
            if request.content_type == "application/apply-patch+yaml":
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, f"invalid request body: {exc}") from exc

    def _respond(self, request: web.Request, rt: ResourceType, data: JSON) -> web.Response:
        if "as=Table" in request.headers.get("Accept", ""):
            data = self._table(rt, data, request.query.get("includeObject", "Metadata"))
        return web.json_response(data)

    # ----------------------------------------------------------------- verbs

    def _list(self, rt: ResourceType, ns: str | None, query: Mapping[str, str]) -> JSON:
        items = self._select(
            rt,
            ns,
            LabelSelector.parse(query.get("labelSelector")),
            FieldSelector.parse(query.get("fieldSelector")),
        )
        list_rv = self._rv
        meta: JSON = {"resourceVersion": str(list_rv)}
        if token := query.get("continue"):
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                start, list_rv = tuple(state["start"]), int(state["rv"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ApiError(400, "invalid continue token") from exc
            meta["resourceVersion"] = str(list_rv)
            items = [
                o
                for o in items
                if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start
            ]
        limit = int(_number(query.get("limit"), "limit"))
        if 0 < limit < len(items):
            last = items[limit - 1]["metadata"]
            state = {"rv": list_rv, "start": [last.get("namespace", ""), last["name"]]}
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": meta,
            "items": items,
        }

    def _create(self, rt: ResourceType, ns: str | None, body: Any, dry_run: bool) -> JSON:
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        obj = copy.deepcopy(body)
        self._check_kind(rt, obj)
        meta = _meta(obj)
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise ApiError(
                    400,
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request",
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise _invalid(
                    rt, "", "metadata.name", "Required value: name or generateName is required"
                )
            for _ in range(100):
                suffix = "".join(random.choice(_GENERATE_CHARS) for _ in range(5))
                meta["name"] = meta["generateName"] + suffix
                if (ns or "", meta["name"]) not in self._store[rt.key]:
                    break
        name = meta["name"]
        self._validate_name(rt, name)
        if rt.namespaced:
            namespace = self._store[("", "namespaces")].get(("", ns or ""))
            if namespace is None:
                raise ApiError(404, f'namespaces "{ns}" not found', name=ns, kind="namespaces")
            if namespace["metadata"].get("deletionTimestamp"):
                raise ApiError(
                    403,
                    f'{rt.kind} "{name}" is forbidden: unable to create new '
                    f"content in namespace {ns} because it is being terminated",
                )
        if (ns or "", name) in self._store[rt.key]:
            raise ApiError(
                409,
                f'{rt.resource_name} "{name}" already exists',
                "AlreadyExists",
                name=name,
                kind=rt.plural,
                group=rt.group,
            )
        meta.pop("resourceVersion", None)
        meta.pop("generation", None)
        if rt.custom and rt.status_subresource:
            obj.pop("status", None)
        self._fill_new_metadata(rt, obj)
        if dry_run:
            return obj
        self._commit(rt, "ADDED", obj, None)
        return obj

    def _check_kind(self, rt: ResourceType, obj: JSON) -> None:
        if obj.get("kind") not in (None, "", rt.kind) or obj.get("apiVersion") not in (
            None,
            "",
            rt.api_version,
        ):
            raise ApiError(
                400,
                f"the API version in the data ({obj.get('apiVersion')}) and kind "
                f"({obj.get('kind')}) do not match {rt.api_version} {rt.kind}",
            )
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind

    @staticmethod
    def _validate_name(rt: ResourceType, name: str) -> None:
        label = rt.kind in ("Namespace", "Service")
        pattern = _DNS1123_LABEL if label else _DNS1123_SUBDOMAIN
        if not pattern.match(name) or len(name) > (63 if label else 253):
            kind = "label" if label else "subdomain"
            raise _invalid(
                rt,
                name,
                "metadata.name",
                f'Invalid value: "{name}": a lowercase '
                f"RFC 1123 {kind} must consist of lower "
                "case alphanumeric characters, '-' or '.'",
            )

    def _existing(self, rt: ResourceType, key: tuple[str, str]) -> JSON:
        old = self._store[rt.key].get(key)
        if old is None:
            raise _not_found(rt, key[1])
        return old

    def _replace(
        self, rt: ResourceType, key: tuple[str, str], body: Any, sub: str | None, dry_run: bool
    ) -> JSON:
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        old = self._existing(rt, key)
        new = copy.deepcopy(body)
        self._check_kind(rt, new)
        meta = _meta(new)
        if meta.get("name") != key[1]:
            raise ApiError(
                400,
                f"the name of the object ({meta.get('name')}) does not match the "
                f"name on the URL ({key[1]})",
            )
        if rt.namespaced and meta.get("namespace") not in (None, "", key[0]):
            raise ApiError(
                400,
                "the namespace of the provided object does not match the "
                "namespace sent on the request",
            )
        if not meta.get("resourceVersion") and rt.custom:
            raise _invalid(
                rt,
                key[1],
                "metadata.resourceVersion",
                "Invalid value: 0x0: must be specified for an update",
            )
        return self._update(rt, old, new, sub, dry_run)

    def _patch(
        self,
        request: web.Request,
        rt: ResourceType,
        key: tuple[str, str],
        body: Any,
        sub: str | None,
        dry_run: bool,
    ) -> JSON:
        ctype = request.content_type
        old = self._store[rt.key].get(key)
        if ctype == "application/apply-patch+yaml":
            if not request.query.get("fieldManager"):
                raise ApiError(
                    422,
                    'PatchOptions.meta.k8s.io "" is invalid: fieldManager: '
                    "Required value: is required for apply patch",
                    "Invalid",
                )
            if not isinstance(body, dict):
                raise ApiError(400, "apply patch body must be an object")
            if old is None:
                if sub is not None:
                    raise _not_found(rt, key[1])
                return self._create(rt, key[0] or None, body, dry_run)
        if old is None:
            raise _not_found(rt, key[1])
        if ctype == "application/json-patch+json":
            if not isinstance(body, list):
                raise ApiError(
                    400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
                )
            patched = json_patch(old, body)
        elif ctype in ("application/merge-patch+json", "application/apply-patch+yaml"):
            if not isinstance(body, dict):
                raise ApiError(400, "merge patch body must be a JSON object")
            patched = merge_patch(old, body)
        elif ctype == "application/strategic-merge-patch+json" and not rt.custom:
            if not isinstance(body, dict):
                raise ApiError(400, "strategic merge patch body must be a JSON object")
            patched = strategic_merge_patch(old, body)
        else:
            accepted = "application/json-patch+json, application/merge-patch+json, "
            accepted += "application/apply-patch+yaml"
            if not rt.custom:
                accepted += ", application/strategic-merge-patch+json"
            raise ApiError(
                415,
                "the body of the request was in an unknown format - accepted media types "
                f"include: {accepted}",
            )
        if not isinstance(patched, dict):
            raise ApiError(422, "patch did not produce an object", "Invalid")
        self._check_kind(rt, patched)
        meta = _meta(patched)
        if meta.get("name") != key[1] or (rt.namespaced and meta.get("namespace") != key[0]):
            raise _invalid(rt, key[1], "metadata.name", "Invalid value: field is immutable")
        return self._update(rt, old, patched, sub, dry_run)

    def _update(
        self, rt: ResourceType, old: JSON, new: JSON, sub: str | None, dry_run: bool
    ) -> JSON:
        """Shared tail of PUT and PATCH: optimistic concurrency, status subresource
        rules, immutable metadata, generation, finalizer-driven removal."""
        name = old["metadata"]["name"]
        rv = new["metadata"].get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise _conflict(rt, name)
        if sub == "status":
            merged = copy.deepcopy(old)
            if new.get("status") is None:
                merged.pop("status", None)
            else:
                merged["status"] = copy.deepcopy(new["status"])
        else:
            merged = new
            if rt.status_subresource:
                merged.pop("status", None)
                if "status" in old:
                    merged["status"] = copy.deepcopy(old["status"])
        meta, old_meta = merged["metadata"], old["metadata"]
        for fixed in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
        ):
            meta.pop(fixed, None)
            if fixed in old_meta:
                meta[fixed] = old_meta[fixed]
        meta["resourceVersion"] = old_meta["resourceVersion"]
        self._apply_defaults(rt, merged)
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise _invalid(
                    rt,
                    name,
                    "metadata.finalizers",
                    "Forbidden: no new finalizers can be added if the object is being deleted",
                )
        if sub != "status" and _spec_part(merged) != _spec_part(old):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if merged == old or dry_run:
            return copy.deepcopy(merged) if dry_run else old
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(rt, merged)
        self._commit(rt, "MODIFIED", merged, old)
        return merged

    def _delete(
        self,
        rt: ResourceType,
        key: tuple[str, str],
        body: Any,
        dry_run: bool,
    ) -> JSON:
        old = self._existing(rt, key)
        options = body if isinstance(body, dict) else {}
        pre = options.get("preconditions") or {}
        if (pre.get("uid") and pre["uid"] != old["metadata"].get("uid")) or (
            pre.get("resourceVersion")
            and pre["resourceVersion"] != old["metadata"]["resourceVersion"]
        ):
            raise _conflict(rt, key[1])
        dry_run = dry_run or bool(options.get("dryRun"))
        if dry_run:
            return old
        if old["metadata"].get("finalizers"):
            if old["metadata"].get("deletionTimestamp"):
                return old
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = _now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if rt.kind == "Namespace":
                new.setdefault("status", {})["phase"] = "Terminating"
                self._remove_namespace_content(key[1])
            self._commit(rt, "MODIFIED", new, old)
            return new
        return self._remove(rt, old)

    def _evict(self, ns: str, name: str, body: Any) -> JSON:
        """``POST pods/{name}/eviction`` (policy/v1 Eviction). The fake plays the disruption
        controller: a budget allows ``healthy - desired`` disruptions. desired comes from
        ``minAvailable`` or ``maxUnavailable`` (ints or percentages, rounded up) of the
        expected pods: those it selects plus those it let go (``status.disruptedPods``, which
        a controller would replace); healthy counts the selected Ready pods not being
        deleted. A budget with neither uses its ``status.disruptionsAllowed``. Like the real
        server, an eviction records the pod in ``disruptedPods`` and lowers
        ``disruptionsAllowed``; none left: 429."""
        pods, budgets_rt = self._resolve("pods"), self._resolve("poddisruptionbudgets")
        pod = self._existing(pods, (ns, name))
        if not isinstance(body, dict) or body.get("kind") not in (None, "Eviction"):
            raise ApiError(400, "the request body must be an Eviction")
        if (body.get("metadata") or {}).get("name") not in (None, name):
            raise ApiError(400, "name in URL does not match name in Eviction object")
        budgets = [
            pdb
            for pdb in self._select(budgets_rt, ns, LabelSelector(), FieldSelector())
            if _selects(pdb["spec"].get("selector"), pod)
        ]
        if len(budgets) > 1:
            raise ApiError(
                500,
                "This pod has more than one PodDisruptionBudget, which the eviction "
                "subresource does not support.",
            )
        if budgets and not pod["metadata"].get("deletionTimestamp"):
            pdb = copy.deepcopy(budgets[0])
            status = pdb.setdefault("status", {})
            status["disruptionsAllowed"] = self._disruptions_allowed(pdb, pods, ns) - 1
            status.setdefault("disruptedPods", {})[name] = _now()
            self._commit(budgets_rt, "MODIFIED", pdb, budgets[0])
        self._delete(pods, (ns, name), body.get("deleteOptions"), False)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}

    def _disruptions_allowed(self, pdb: JSON, pods: ResourceType, ns: str) -> int:
        spec, status = pdb["spec"], pdb["status"]
        selected = [
            p
            for p in self._select(pods, ns, LabelSelector(), FieldSelector())
            if _selects(spec.get("selector"), p)
        ]
        expected = len(
            {p["metadata"]["name"] for p in selected} | set(status.get("disruptedPods") or {})
        )
        healthy = sum(
            1
            for p in selected
            if not p["metadata"].get("deletionTimestamp")
            and any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (p.get("status") or {}).get("conditions") or []
            )
        )
        if "minAvailable" in spec:
            desired = _scaled(spec["minAvailable"], expected)
        elif "maxUnavailable" in spec:
            desired = expected - _scaled(spec["maxUnavailable"], expected)
        else:
            desired = healthy - int(status.get("disruptionsAllowed", 0))
        if healthy - desired <= 0:
            raise ApiError(
                429,
                "Cannot evict pod as it would violate the pod's disruption budget.",
                causes=[
                    {
                        "reason": "DisruptionBudget",
                        "message": f"The disruption budget {pdb['metadata']['name']} needs "
                        f"{desired} healthy pods and has {healthy} currently",
                    }
                ],
            )
        return healthy - desired

    def _remove_namespace_content(self, namespace: str) -> None:
        for other in self._types.values():
            if other.namespaced:
                for (ns, _), child in sorted(self._store[other.key].items()):
                    if ns == namespace:
                        self._commit(other, "DELETED", copy.deepcopy(child), child)

    def _delete_collection(
        self, rt: ResourceType, ns: str | None, query: Mapping[str, str]
    ) -> JSON:
        victims = self._select(
            rt,
            ns,
            LabelSelector.parse(query.get("labelSelector")),
            FieldSelector.parse(query.get("fieldSelector")),
        )
        for obj in list(victims):
            meta = obj["metadata"]
            self._delete(rt, (meta.get("namespace", ""), meta["name"]), None, False)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}

    # ----------------------------------------------------------------- watch

    async def _watch(
        self, request: web.Request, rt: ResourceType, ns: str | None
    ) -> web.StreamResponse:
        query = request.query
        watcher = _Watcher(
            rt,
            ns,
            LabelSelector.parse(query.get("labelSelector")),
            FieldSelector.parse(query.get("fieldSelector")),
        )
        bookmarks = _truthy(query.get("allowWatchBookmarks"))
        rv_text = query.get("resourceVersion", "")
        if rv_text not in ("", "0") and not rv_text.isdigit():
            raise ApiError(400, f"invalid resource version: {rv_text!r}")
        timeout = _number(query.get("timeoutSeconds"), "timeoutSeconds") or _DEFAULT_WATCH_TIMEOUT
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)

        # From here to the registration nothing awaits, so no event can slip between
        # the replayed state/history and the live queue.
        initial: list[tuple[str, JSON]] = []
        if rv_text in ("", "0") or _truthy(query.get("sendInitialEvents")):
            initial = [("ADDED", o) for o in self._select(rt, ns, watcher.labels, watcher.fields)]
        else:
            since = int(rv_text)
            if since < self._history_floor:
                error = ApiError(
                    410, f"too old resource version: {since} ({self._history_floor + 1})", "Expired"
                )
                await self._write(response, "ERROR", error.status())
                return response
            for ev in self._history:
                if ev.rv > since and (translated := watcher.translate(ev)):
                    initial.append(translated)
        start_rv = self._rv
        self._watchers.add(watcher)
        self._notify()
        try:
            for kind, obj in initial:
                await self._write(response, kind, obj)
            if bookmarks and _truthy(query.get("sendInitialEvents")):
                await self._write(
                    response,
                    "BOOKMARK",
                    self._bookmark(rt, start_rv, {"k8s.io/initial-events-end": "true"}),
                )
            next_bookmark = loop.time() + self.bookmark_interval
            while (now := loop.time()) < deadline:
                # A periodic bookmark may only claim self._rv once everything queued
                # before it has been written, hence the empty-queue condition.
                if bookmarks and now >= next_bookmark and watcher.queue.empty():
                    await self._write(response, "BOOKMARK", self._bookmark(rt, self._rv))
                    next_bookmark = loop.time() + self.bookmark_interval
                    continue
                wait = (min(deadline, next_bookmark) if bookmarks else deadline) - now
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), max(wait, 0.001))
                except TimeoutError:
                    continue
                if item is _STOP:
                    break
                if isinstance(item, _Bookmark):
                    if bookmarks:
                        await self._write(response, "BOOKMARK", self._bookmark(rt, item.rv))
                        next_bookmark = loop.time() + self.bookmark_interval
                elif isinstance(item, _Event) and (translated := watcher.translate(item)):
                    await self._write(response, *translated)
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        finally:
            self._watchers.discard(watcher)
            self._notify()
        return response

    @staticmethod
    def _bookmark(rt: ResourceType, rv: int, annotations: JSON | None = None) -> JSON:
        meta: JSON = {"resourceVersion": str(rv)}
        if annotations:
            meta["annotations"] = annotations
        return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}

    @staticmethod
    async def _write(response: web.StreamResponse, kind: str, obj: JSON) -> None:
        await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

    # -------------------------------------------------------------- discovery

    def _version(self) -> JSON:
        major, minor = self.git_version.lstrip("v").split(".")[:2]
        return {
            "major": major,
            "minor": minor,
            "gitVersion": self.git_version,
            "gitCommit": "fake",
            "gitTreeState": "clean",
            "buildDate": "2024-01-01T00:00:00Z",
            "goVersion": "go1.22",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def _api_versions(self) -> JSON:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.host}:{self.port}"}
            ],
        }

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for group, version, _ in self._types:
            if group and version not in groups.setdefault(group, []):
                groups[group].append(version)
        return groups

    @staticmethod
    def _group_json(group: str, versions: list[str]) -> JSON:
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}

    def _api_groups(self) -> JSON:
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [self._group_json(g, vs) for g, vs in self._groups().items()],
        }

    def _api_group(self, group: str) -> JSON:
        versions = self._groups().get(group)
        if not versions:
            raise ApiError(404, "the server could not find the requested resource")
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group_json(group, versions)}

    def _resource_list(self, group: str, version: str) -> JSON:
        resources: list[JSON] = []
        for (g, v, _), rt in self._types.items():
            if (g, v) != (group, version):
                continue
            entry: JSON = {
                "name": rt.plural,
                "singularName": rt.kind.lower(),
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": _ALL_VERBS,
            }
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            resources.append(entry)
            if rt.status_subresource:
                resources.append(
                    {
                        "name": f"{rt.plural}/status",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": _STATUS_VERBS,
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    @staticmethod
    def _table(rt: ResourceType, data: JSON, include: str) -> JSON:
        """A ``meta.k8s.io/v1`` Table (Name, Age) as kubectl asks for."""
        items = data.get("items", [data])
        rows = []
        for obj in items:
            meta = obj["metadata"]
            if include == "Object":
                row_obj: JSON | None = obj
            elif include == "None":
                row_obj = None
            else:
                row_obj = {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta,
                }
            row: JSON = {"cells": [meta["name"], _age(meta.get("creationTimestamp"))]}
            if row_obj is not None:
                row["object"] = row_obj
            rows.append(row)
        columns = [
            {
                "name": "Name",
                "type": "string",
                "format": "name",
                "priority": 0,
                "description": "Name must be unique within a namespace.",
            },
            {
                "name": "Age",
                "type": "string",
                "format": "",
                "priority": 0,
                "description": "Time since creation.",
            },
        ]
        list_meta = {
            k: v
            for k, v in data.get("metadata", {}).items()
            if k in ("resourceVersion", "continue", "remainingItemCount")
        }
        if "items" not in data:
            list_meta = {"resourceVersion": data["metadata"].get("resourceVersion", "")}
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta,
            "columnDefinitions": columns,
            "rows": rows,
        }


__all__ = [
    "ApiError",
    "FakeKubeAPI",
    "FieldSelector",
    "LabelSelector",
    "ResourceType",
    "json_patch",
    "merge_patch",
    "strategic_merge_patch",
]
