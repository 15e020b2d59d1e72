"""Rules of the bk-bcs ``bcs-user-manager`` dialect (seed 002): user types and their
tokens, cluster registration, error codes, and how a bk-bcs permission becomes a role of
the authorization engine (docs/authorization.md, "bk-bcs").
"""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
import socket
import ssl
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum
from urllib.parse import urlsplit

import yaml

from kubebyon.domain.authz import Access
from kubebyon.domain.clusters import host_problem

# bcs-common error codes.
UNAUTHORIZED = 1405059
BAD_REQUEST = 1405061
STORAGE_ERROR = 1405062
# Byte for byte what bcs-user-manager answers (two spaces after the comma included).
ANONYMOUS_MESSAGE = (
    f"errcode: {UNAUTHORIZED},  anonymous requests is forbidden, please provide a valid token"
)


def error_envelope(status: int, message: str) -> tuple[int, str]:
    """The bk-bcs code and message for an HTTP error: 401 is always the anonymous answer,
    5xx a storage error (no internals), every other 4xx a bad request."""
    if status == 401:
        return UNAUTHORIZED, ANONYMOUS_MESSAGE
    code = STORAGE_ERROR if status >= 500 else BAD_REQUEST
    return code, f"errcode: {code}, {message}"


class UserType(IntEnum):
    ADMIN = 1
    SAAS = 2
    PLAIN = 3


# Who may call the user routes of each type (bcs-user-manager's AdminAuth / Auth filters).
CREATORS: dict[UserType, frozenset[UserType]] = {
    UserType.ADMIN: frozenset({UserType.ADMIN}),
    UserType.SAAS: frozenset({UserType.ADMIN}),
    UserType.PLAIN: frozenset({UserType.ADMIN, UserType.SAAS}),
}
ADMIN_ONLY = CREATORS[UserType.ADMIN]

LONG_LIVED = timedelta(days=3650)  # admin and saas: "10 years", as in the seed's example
PLAIN_LIFETIME = timedelta(hours=24)
MAX_REFRESH_DAYS = 365  # plain tokens are meant to be short-lived

_TOKEN_ALPHABET = string.ascii_letters + string.digits
USER_TOKEN_LENGTH = 32
REGISTER_TOKEN_LENGTH = 128
# Patterns of this module are used with fullmatch (with "$", a trailing newline passes).
_USER_TOKEN = re.compile(rf"[A-Za-z0-9]{{{USER_TOKEN_LENGTH}}}")


def _random_token(length: int) -> str:
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(length))


def new_user_token() -> str:
    return _random_token(USER_TOKEN_LENGTH)


def new_register_token() -> str:
    return _random_token(REGISTER_TOKEN_LENGTH)


def is_user_token(value: str) -> bool:
    return _USER_TOKEN.fullmatch(value) is not None


def token_expiry(user_type: UserType, now: datetime) -> datetime:
    return now + (PLAIN_LIFETIME if user_type is UserType.PLAIN else LONG_LIVED)


def plain_refresh(expires_at: datetime, now: datetime, days: int) -> tuple[bool, datetime]:
    """(replace the token?, new expiry): an expired plain token is replaced, a live one
    keeps its value; either way it then lives ``days`` days from now."""
    return expires_at <= now, now + timedelta(days=days)


def refresh_days_problem(raw: str) -> str | None:
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_REFRESH_DAYS:
        return f"days must be an integer from 1 to {MAX_REFRESH_DAYS}"
    return None


_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def user_name_problem(name: str) -> str | None:
    if not _USER_NAME.fullmatch(name):
        return "user name must be 1-128 letters, digits or ._@+- and start with a letter or digit"
    return None


# A registered bk-bcs cluster is a KubeBYON cluster with the bk-bcs id as its id, so that
# grants naming the id apply to it; ids of KubeBYON's own clusters start with this.
OWN_CLUSTER_ID_PREFIX = "cl_"


def cluster_id_problem(cluster_id: str) -> str | None:
    if not _NAME.fullmatch(cluster_id):
        return "cluster id must be 1-100 letters, digits or ._- and start with a letter or digit"
    if cluster_id.startswith(OWN_CLUSTER_ID_PREFIX):
        return f"cluster ids starting with {OWN_CLUSTER_ID_PREFIX} are KubeBYON's own"
    return None


CLUSTER_TYPES = {"k8s": 1, "mesos": 2, "tke": 3}


# KubeBYON calls these addresses itself (connection probe, console kubectl), so they may
# not point at this machine, link-local addresses (cloud metadata services live there),
# or the metadata addresses outside that range. Private ranges (RFC 1918, ULA) are where
# on-premises clusters live: allowed. docs/authorization.md, "Imported clusters".
_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("0.0.0.0/8", "100.100.100.200/32", "fd00:ec2::254/128")
)


def _blocked_host(host: str, *, allow_loopback: bool = False) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return not allow_loopback
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:  # the C resolver reads 0x7f.0x1 and the like as IPv4 addresses
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        (address.is_loopback and not allow_loopback)
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or any(address in network for network in _BLOCKED_NETWORKS)
    )


def server_addresses_problem(value: str, *, allow_loopback: bool = False) -> str | None:
    """``;``-separated API server URLs: https, a host (a DNS name or an IP address this
    machine may call, see ``_blocked_host``), an optional port, nothing else. Names are
    not resolved here: what they resolve to can change after the check."""
    if not value or len(value) > 4096:
        return "server_addresses must hold 1 to 4096 characters"
    for address in value.split(";"):
        if address != address.strip() or not address:
            return "server_addresses must be https URLs separated by ';' without spaces"
        try:
            url = urlsplit(address)
            url.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            return f"server address {address!r} is not a valid URL"
        if url.scheme != "https" or not url.hostname or host_problem(url.hostname):
            return f"server address {address!r} must be an https URL with a host"
        if url.username or url.password or url.query or url.fragment or url.path not in ("", "/"):
            return f"server address {address!r} must hold only a host and a port"
        if _blocked_host(url.hostname, allow_loopback=allow_loopback):
            return (
                f"server address {address!r} points at this machine or a link-local or "
                "metadata address"
            )
    return None


_BEARER_TOKEN = re.compile(r"[!-~]+")


def credentials_problem(ca_cert: str, user_token: str) -> str | None:
    """Why KubeBYON cannot call the cluster's API with these credentials (bk-bcs stores
    them anyway): the CA must be PEM certificates, as bcs-kube-agent sends them, and the
    token fit in an ``Authorization: Bearer`` header."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=ca_cert)
    except (ssl.SSLError, TypeError, ValueError):
        return "the CA in the bk-bcs credentials is not a PEM certificate"
    if not _BEARER_TOKEN.fullmatch(user_token):
        return "the user token in the bk-bcs credentials holds spaces or non-ASCII characters"
    return None


def imported_kubeconfig(cluster_id: str, server: str, ca_cert: str, user_token: str) -> str:
    """The kubeconfig of a registered cluster: its API server, CA and token."""
    ca_data = base64.b64encode(ca_cert.encode()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_id,
                "cluster": {"server": server, "certificate-authority-data": ca_data},
            }
        ],
        "users": [{"name": cluster_id, "user": {"token": user_token}}],
        "contexts": [{"name": cluster_id, "context": {"cluster": cluster_id, "user": cluster_id}}],
        "current-context": cluster_id,
    }
    return yaml.safe_dump(config, sort_keys=False)


# Permissions. A bk-bcs role is a set of HTTP actions; the engine speaks Kite's verbs.
# The first verb of an action is the one /permissions/verify asks the engine about.
ACTION_VERBS: dict[str, tuple[str, ...]] = {
    "GET": ("get", "list", "log"),
    "POST": ("create", "exec"),  # kubectl exec is a POST (create) on pods/exec
    "PUT": ("update",),
    "PATCH": ("update",),
    "DELETE": ("delete",),
}
ROLE_ACTIONS: dict[str, tuple[str, ...]] = {
    "manager": ("GET", "POST", "PUT", "PATCH", "DELETE"),
    "viewer": ("GET",),
}
RESOURCE_TYPES = ("cluster", "namespace", "namespace_scoped", "storage")
ALL = "*"
NAMESPACE_OBJECT = "namespaces"  # the Namespace objects themselves
STORAGE_RESOURCE = "storage"  # bk-bcs storage (bcs-storage) data of a cluster
GRANT_ROLE_PREFIX = "bcs:"


def resource_problem(resource_type: str, resource: str) -> str | None:
    """cluster and storage: a cluster id or ``*``; namespace and namespace_scoped:
    ``<cluster id>/<namespace>`` where either part may be ``*`` (``*`` alone: every one).
    No other glob: these names become engine patterns."""
    if resource == ALL:
        return None
    if resource_type in ("cluster", "storage"):
        if _NAME.fullmatch(resource):
            return None
        return f"resource of type {resource_type} must be a cluster id or *"
    cluster, slash, namespace = resource.partition("/")
    if (
        slash
        and (cluster == ALL or _NAME.fullmatch(cluster))
        and (namespace == ALL or _NAMESPACE.fullmatch(namespace))
    ):
        return None
    return f"resource of type {resource_type} must be <cluster id>/<namespace> or *"


def _scope(resource_type: str, resource: str) -> tuple[str, str]:
    if resource_type in ("cluster", "storage"):
        return resource, ALL
    if resource == ALL:
        return ALL, ALL
    cluster, _, namespace = resource.partition("/")
    return cluster, namespace


@dataclass(frozen=True)
class GrantRole:
    """The engine role that stands for one bk-bcs (role, resource_type, resource)."""

    name: str
    description: str
    clusters: tuple[str, ...]
    namespaces: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]


_ENGINE_RESOURCES: dict[str, tuple[str, ...]] = {
    "cluster": (ALL,),
    "namespace": (NAMESPACE_OBJECT,),
    # Everything inside the namespace, but not the Namespace object (that is "namespace").
    "namespace_scoped": (ALL, "!" + NAMESPACE_OBJECT),
    "storage": (STORAGE_RESOURCE,),
}


def grant_role(role: str, resource_type: str, resource: str) -> GrantRole:
    cluster, namespace = _scope(resource_type, resource)
    verbs = tuple(dict.fromkeys(v for a in ROLE_ACTIONS[role] for v in ACTION_VERBS[a]))
    return GrantRole(
        name=f"{GRANT_ROLE_PREFIX}{role}:{resource_type}:{resource}",
        description=f"bk-bcs {role} on {resource_type} {resource}",
        clusters=(cluster,),
        namespaces=(namespace,),
        resources=_ENGINE_RESOURCES[resource_type],
        verbs=verbs,
    )


def parse_grant_role(name: str) -> tuple[str, str, str] | None:
    """(role, resource_type, resource) of a role made by ``grant_role``."""
    if not name.startswith(GRANT_ROLE_PREFIX):
        return None
    parts = name.removeprefix(GRANT_ROLE_PREFIX).split(":", 2)
    if len(parts) != 3 or parts[0] not in ROLE_ACTIONS or parts[1] not in RESOURCE_TYPES:
        return None
    return parts[0], parts[1], parts[2]


def verify_access(resource_type: str, resource: str, action: str) -> Access:
    """What /permissions/verify asks the engine. ``*`` stands for the whole scope: a
    cluster-wide question is answered yes only by a cluster-wide grant."""
    cluster, namespace = _scope(resource_type, resource)
    engine_resource = _ENGINE_RESOURCES[resource_type][0]
    return Access(cluster, namespace, engine_resource, ACTION_VERBS[action][0])
