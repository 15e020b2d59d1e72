"""Who may call what: every route of the route tables (``api.app.ROUTE_TABLES``) × every
kind of caller, each by session and by API key, judged against the route's declared
policy (``RouteSpec.auth``); for the dialects that decide access themselves, against the
table for their path prefix; for routes on a cluster, against the verb the route needs
and what each caller holds on that cluster (owner, granted viewer, granted editor,
stranger). A route with a policy this matrix does not know, or a route on an engine
object missing from ``OBJECT_ROUTES``, fails it.

Path parameters get a dummy id (a real one for clusters) and bodies are ``{}``: a 400,
404 or 422 is an answer, not a refusal (except 404 on an object route, which is how a
stranger is refused). Nothing may answer 5xx.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from api.app import ROUTE_TABLES, create_app
from api.openapi import RouteSpec
from api.sessions import start_session
from api.state import Services
from kubebyon.db.database import Database
from kubebyon.domain.authz import ADMIN_ROLE, VERBS
from kubebyon.domain.ids import new_id
from kubebyon.domain.tokens import SESSION_COOKIE
from kubebyon.settings import Settings
from tests.api.conftest import MakeUser

KITE = "/api/v1/admin/roles"
BCS = "/bcsapi/v4/usermanager/v1"
BCS_ANONYMOUS = 1405059
DUMMY_ID = "999999"  # a syntactically valid id of nothing (numeric for Kite role ids)
CLUSTERS = "/api/console/clusters"
CLUSTER = CLUSTERS + "/{clusterID}"
NODES = "/api/console/nodes"
NODE = NODES + "/{nodeID}"
TOKEN = "/api/console/tokens/{tokenID}"
KNOWN_POLICIES = ("none", "session", "admin")
# Accounts the middleware sees as not signed in, and accounts allowed everything.
NOBODY = ("anonymous", "banned")
EVERYTHING = ("admin", "role_admin")  # platform admin; holder of the system admin role

# What each route on a cluster needs of its caller ("*": every verb, full rights).
OBJECT_ROUTES: dict[tuple[str, str], str] = {
    ("GET", CLUSTER): "get",
    ("PUT", CLUSTER): "update",
    ("DELETE", CLUSTER): "delete",
    ("GET", CLUSTER + "/operations"): "get",
    ("GET", CLUSTER + "/control-plane-metrics/history"): "get",
    ("POST", CLUSTER + "/kubeconfig"): "*",
    ("POST", CLUSTER + "/kubectl"): "get",  # read-only commands
    ("GET", NODE): "get",
    ("POST", NODE + "/cordon"): "update",
    ("POST", NODE + "/uncordon"): "update",
    ("POST", NODE + "/drain"): "update",
    ("DELETE", NODE): "delete",
    ("POST", CLUSTER + "/join-token"): "create",
    ("DELETE", TOKEN): "delete",
}
# Collections of engine objects: listed by what the caller may read / judged by policy.
OBJECT_LISTS: dict[tuple[str, str], Callable[[Any], set[str]]] = {
    ("GET", CLUSTERS): lambda payload: {c["id"] for c in payload["clusters"]},
    ("GET", NODES): lambda payload: {n["cluster_id"] for n in payload["nodes"]},
    ("GET", "/api/console/node-events"): lambda payload: {
        e["cluster_id"] for e in payload["events"]
    },
}
# Creating a cluster needs no grant; the overview counts what the caller may see.
OBJECT_BY_POLICY = {("POST", CLUSTERS), ("GET", "/api/console/overview")}
OBJECT_PREFIXES = (
    CLUSTERS,
    "/api/console/nodes",
    "/api/console/node-events",
    "/api/console/tokens",
    "/api/console/overview",
)
# What the granted roles hold on the granted cluster (namespaces and resources: "*").
GRANTS = {"viewer": ("get", "log"), "editor": ("get", "list", "create", "update", "delete", "log")}
# Routes that end the caller's own credentials run last (the principals are shared).
ENDS_CREDENTIALS = {("POST", "/api/auth/logout")}


@pytest.fixture
def settings() -> Settings:
    # Login and the kubeconfig route are called by every caller: no rate limit in the way.
    return Settings(auth_rate_limit_burst=10_000)


@dataclass(frozen=True)
class Caller:
    # anonymous | banned | user (a stranger to every cluster) | admin (platform) |
    # role_admin (holds the admin role) | owner | viewer | editor (of the granted cluster)
    account: str
    method: str  # none | session | api_key
    credential: str = ""

    @property
    def name(self) -> str:
        return self.account if self.method == "none" else f"{self.account} ({self.method})"

    def headers(self, origin: str) -> dict[str, str]:
        if self.method == "session":
            return {"Cookie": f"{SESSION_COOKIE}={self.credential}", "Origin": origin}
        if self.method == "api_key":
            return {"Authorization": f"Bearer {self.credential}"}
        return {}


@dataclass(frozen=True)
class Expect:
    refused: frozenset[int] = frozenset()  # empty: the caller must not be refused
    refusals: frozenset[int] = frozenset({401, 403})  # statuses that count as a refusal

    def __str__(self) -> str:
        return "not refused" if not self.refused else f"refused {sorted(self.refused)}"


ALLOWED = Expect()
UNAUTHENTICATED = Expect(frozenset({401}))
FORBIDDEN = Expect(frozenset({403}))


class UnknownPolicy(AssertionError):
    pass


def by_policy(policy: str, caller: Caller) -> Expect:
    """What the auth middleware enforces for a declared policy."""
    if policy == "none":
        return ALLOWED
    if caller.account in NOBODY:
        return UNAUTHENTICATED
    if policy == "admin" and caller.account != "admin":
        return FORBIDDEN
    return ALLOWED


def kite(caller: Caller) -> Expect:
    """Platform admins and holders of the admin role, by session or API key."""
    if caller.account in NOBODY:
        return UNAUTHENTICATED
    return ALLOWED if caller.account in EVERYTHING else FORBIDDEN


def bcs(caller: Caller) -> Expect:
    """Token-based: a platform admin's API key is a bk-bcs admin token; a session cookie
    is no token at all, and every other caller is anonymous to bk-bcs."""
    if caller.account == "admin" and caller.method == "api_key":
        return ALLOWED
    return UNAUTHENTICATED


def on_cluster(verb: str, caller: Caller) -> Expect:
    """Owners and admins may do anything; a grant allows its verbs; a caller who may not
    even read the cluster is told it does not exist."""
    object_refusals = frozenset({401, 403, 404})
    if caller.account in NOBODY:
        return UNAUTHENTICATED
    if caller.account in (*EVERYTHING, "owner"):
        return Expect(refusals=object_refusals)
    held = GRANTS.get(caller.account, ())
    if set(VERBS if verb == "*" else (verb,)) <= set(held):
        return Expect(refusals=object_refusals)
    return Expect(frozenset({403 if "get" in held else 404}), object_refusals)


# Dialects that decide access in their module (their routes are public to the middleware).
DECIDED_BY_MODULE: dict[str, Callable[[Caller], Expect]] = {KITE: kite, BCS: bcs}
# Authenticated by a secret in the body, not by the caller: every caller gets the same
# answer as an anonymous one.
CALLER_BLIND = [
    ("PUT", re.compile(re.escape(BCS) + r"/clusters/\{[^}]+\}/credentials")),
    # The host's admission webhooks: the signature in the path is the credential.
    ("POST", re.compile(r"/api/internal/admission/clusters/\{[^}]+\}/\{[^}]+\}/\w+-pod")),
]


def expectation(spec: RouteSpec, caller: Caller) -> Expect:
    if spec.auth not in KNOWN_POLICIES:
        raise UnknownPolicy(f"{spec.method} {spec.path}: policy {spec.auth!r} is unknown here")
    if (spec.method, spec.path) in OBJECT_ROUTES:
        return on_cluster(OBJECT_ROUTES[spec.method, spec.path], caller)
    for prefix, decide in DECIDED_BY_MODULE.items():
        if spec.path == prefix or spec.path.startswith(prefix + "/"):
            return decide(caller)
    return by_policy(spec.auth, caller)


def caller_blind(spec: RouteSpec) -> bool:
    return any(spec.method == m and pattern.fullmatch(spec.path) for m, pattern in CALLER_BLIND)


def all_routes() -> list[RouteSpec]:
    """Every declared route; deletions late (they change the cluster the later routes
    use), the routes that end the caller's credentials last."""
    specs = [spec for table in ROUTE_TABLES for spec in table.routes]
    return sorted(
        specs, key=lambda s: ((s.method, s.path) in ENDS_CREDENTIALS, s.method == "DELETE")
    )


def node_of(cluster_id: str) -> str:
    """The id of the matrix's node in that cluster (there is none in a missing cluster)."""
    return f"node_of_{cluster_id}"


def token_of(cluster_id: str) -> str:
    """The id of the matrix's join token of that cluster."""
    return f"tok_of_{cluster_id}"


def concrete(path: str, cluster_id: str) -> str:
    path = path.replace("{clusterID}", cluster_id).replace("{nodeID}", node_of(cluster_id))
    path = path.replace("{tokenID}", token_of(cluster_id))
    return re.sub(r"\{[^}]+\}", DUMMY_ID, path)


@dataclass(frozen=True)
class Http:
    """Requests to the test server from a session that never stores cookies: each
    request carries exactly its caller's credential, so callers can run concurrently."""

    session: aiohttp.ClientSession
    base: str

    async def call(self, method: str, path: str, caller: Caller) -> tuple[int, Any]:
        body: dict[str, Any] | None = None if method in ("GET", "HEAD") else {}
        async with self.session.request(
            method, self.base + path, json=body, headers=caller.headers(self.base)
        ) as response:
            text = await response.text()
            try:
                payload = await response.json(content_type=None) if text else None
            except ValueError:
                payload = text
            return response.status, payload


@pytest.fixture
async def http(client: TestClient) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield Http(session, str(client.make_url("/")).rstrip("/"))


def refusal_envelope_problem(path: str, status: int, payload: Any) -> str | None:
    if path.startswith(KITE):
        ok = isinstance(payload, dict) and set(payload) == {"error"}
        ok = ok and isinstance(payload["error"], str)
        return None if ok else f'not Kite\'s {{"error": "..."}}: {payload!r}'
    if path.startswith(BCS):
        ok = isinstance(payload, dict) and payload.get("code") == BCS_ANONYMOUS
        ok = ok and payload.get("result") is False and payload.get("data") is None
        return None if ok else f"not the bk-bcs anonymous envelope: {payload!r}"
    code = {401: "unauthenticated", 403: "forbidden", 404: "not_found"}[status]
    ok = isinstance(payload, dict) and isinstance(payload.get("error"), dict)
    ok = ok and payload["error"].get("code") == code
    return None if ok else f"not the console error envelope with code {code}: {payload!r}"


@dataclass
class World:
    callers: list[Caller]
    granted: str  # a cluster of "owner", granted to "viewer" and "editor"
    unrelated: str  # another cluster of "owner", granted to nobody


async def session_of(services: Services, user_id: str) -> str:
    async with services.db.transaction() as conn:
        _, token, _ = await start_session(
            conn,
            user_id=user_id,
            auth_method="password",
            ip=None,
            user_agent=None,
            idle_seconds=3600,
        )
    return token


async def api_key_of(http: Http, session: str) -> str:
    response = await http.session.post(
        http.base + "/api/console/api-keys",
        json={"name": "matrix"},
        headers=Caller("", "session", session).headers(http.base),
    )
    assert response.status == 201, await response.text()
    key: str = (await response.json())["api_key"]["key"]
    return key


async def insert_cluster(db: Database, owner_id: str, name: str) -> str:
    cluster_id = new_id("cl")
    await db.execute(
        "INSERT INTO clusters (id, owner_user_id, name, namespace, vcluster_name, "
        "kubernetes_version, workload_cpu_limit_milli_cores, workload_memory_limit_mib, "
        "control_plane_cpu_request_milli_cores, control_plane_memory_request_mib) "
        "VALUES ($1, $2, $3, $3, $3, 'v1.30.0', 2000, 2048, 500, 512)",
        cluster_id,
        owner_id,
        name,
    )
    return cluster_id


async def insert_node(db: Database, cluster_id: str) -> None:
    """A joined node with one event, so node routes and listings have something to show."""
    node_id = node_of(cluster_id)
    await db.execute(
        "INSERT INTO nodes (id, cluster_id, name, status) VALUES ($1, $2, $1, 'ready')",
        node_id,
        cluster_id,
    )
    await db.execute(
        "INSERT INTO node_events (id, cluster_id, node_id, node_name, type, new_status) "
        "VALUES ($1, $2, $3, $3, 'joined', 'ready')",
        new_id("nevt"),
        cluster_id,
        node_id,
    )


async def insert_token(db: Database, cluster_id: str) -> None:
    token_id = token_of(cluster_id)
    await db.execute(
        "INSERT INTO join_tokens (id, cluster_id, value_hash, display_prefix, "
        "bootstrap_token_id, bootstrap_secret_name, expires_at) "
        "VALUES ($1, $2, $3, $4, $4, $4, now() + interval '1 hour')",
        token_id,
        cluster_id,
        token_id.encode(),
        cluster_id[-6:],
    )


async def grant(db: Database, subject: str, *, role: str, cluster: str, verbs: list[str]) -> None:
    role_id = await db.fetchval(
        "INSERT INTO roles (name, clusters, namespaces, resources, verbs) "
        "VALUES ($1, $2, '{*}', '{*}', $3) RETURNING id",
        role,
        [cluster],
        verbs,
    )
    await db.execute(
        "INSERT INTO role_assignments (role_id, subject_type, subject) VALUES ($1, 'user', $2)",
        role_id,
        subject,
    )


async def make_world(http: Http, services: Services, make_user: MakeUser) -> World:
    db = services.db
    names = ("user", "admin", "role_admin", "banned", "owner", "viewer", "editor")
    accounts = {
        name: (await make_user(role="admin" if name == "admin" else "user")).id for name in names
    }
    granted = await insert_cluster(db, accounts["owner"], "granted")
    unrelated = await insert_cluster(db, accounts["owner"], "unrelated")
    for cluster_id in (granted, unrelated):
        await insert_node(db, cluster_id)
        await insert_token(db, cluster_id)
    await db.execute(
        "INSERT INTO role_assignments (role_id, subject_type, subject) "
        "SELECT id, 'user', $1 FROM roles WHERE name = $2",
        accounts["role_admin"],
        ADMIN_ROLE,
    )
    for account, verbs in GRANTS.items():
        await grant(
            db, accounts[account], role=f"matrix-{account}", cluster=granted, verbs=list(verbs)
        )
    services.authorizer.invalidate()
    callers = [Caller("anonymous", "none")]
    for account, user_id in accounts.items():
        session = await session_of(services, user_id)
        callers.append(Caller(account, "session", session))
        callers.append(Caller(account, "api_key", await api_key_of(http, session)))
    admin_key = next(c for c in callers if c.account == "admin" and c.method == "api_key")
    banned = await http.session.put(
        f"{http.base}/api/console/admin/users/{accounts['banned']}/status",
        json={"status": "banned"},
        headers=admin_key.headers(http.base),
    )
    assert banned.status == 200, await banned.text()
    return World(callers, granted, unrelated)


async def still_valid(http: Http, callers: list[Caller]) -> list[str]:
    valid = [c for c in callers if c.account not in NOBODY]
    answers = await asyncio.gather(*(http.call("GET", "/api/console/me", c) for c in valid))
    return [
        caller.name for caller, (status, _) in zip(valid, answers, strict=True) if status != 200
    ]


def judge(spec: RouteSpec, answers: dict[Caller, tuple[int, Any]]) -> list[str]:
    route = f"{spec.method} {spec.path}"
    failures = [
        f"{route} as {caller.name}: {status} {payload!r}"
        for caller, (status, payload) in answers.items()
        if status >= 500
    ]
    if caller_blind(spec):
        anonymous = next(a for c, a in answers.items() if c.account == "anonymous")
        failures += [
            f"{route} as {caller.name}: {answer[0]}, anonymous got {anonymous[0]} "
            "(this route must not depend on the caller)"
            for caller, answer in answers.items()
            if answer != anonymous
        ]
        return failures
    for caller, (status, payload) in answers.items():
        expected = expectation(spec, caller)
        refused = status in expected.refusals
        if expected.refused and status not in expected.refused:
            failures.append(f"{route} as {caller.name}: {status}, expected {expected}")
        elif not expected.refused and refused:
            failures.append(f"{route} as {caller.name}: {status} {payload!r}, expected {expected}")
        elif refused:
            problem = refusal_envelope_problem(spec.path, status, payload)
            if problem:
                failures.append(f"{route} as {caller.name}: {problem}")
    return failures


def judge_listing(
    spec: RouteSpec, answers: dict[Caller, tuple[int, Any]], world: World
) -> list[str]:
    listed_ids = OBJECT_LISTS[spec.method, spec.path]
    failures = []
    for caller, (status, payload) in answers.items():
        if caller.account in NOBODY:
            continue  # judged by policy
        mine = {world.granted, world.unrelated}
        visible = {
            "owner": mine,
            "viewer": {world.granted},
            "editor": {world.granted},
            "user": set(),
        }.get(caller.account, mine)
        listed = listed_ids(payload) & mine if status == 200 else None
        if listed != visible:
            failures.append(
                f"{spec.method} {spec.path} as {caller.name}: {status}, listed "
                f"{sorted(listed or ())} of the matrix's clusters, expected {sorted(visible)}"
            )
    return failures


async def test_every_route_answers_every_kind_of_caller_as_its_policy_says(
    http: Http, services: Services, make_user: MakeUser
) -> None:
    world = await make_world(http, services, make_user)
    callers = world.callers

    async def answers_to(method: str, path: str) -> dict[Caller, tuple[int, Any]]:
        answers = await asyncio.gather(*(http.call(method, path, c) for c in callers))
        return dict(zip(callers, answers, strict=True))

    # An unknown console path needs a principal too: it must not reveal what exists.
    for caller, (status, _) in (await answers_to("GET", "/api/console/no-such-thing")).items():
        assert status == (401 if caller.account in NOBODY else 404), caller.name

    failures: list[str] = []
    for spec in all_routes():
        answers = await answers_to(spec.method, concrete(spec.path, world.granted))
        failures += judge(spec, answers)
        if (spec.method, spec.path) in OBJECT_LISTS:
            failures += judge_listing(spec, answers, world)
        if (spec.method, spec.path) in OBJECT_ROUTES and spec.method == "GET":
            # A stranger's refusal is exactly the answer for a cluster that does not exist,
            # and a grant on one cluster says nothing about another.
            missing = concrete(spec.path, "cl_missing")
            unrelated = concrete(spec.path, world.unrelated)
            for caller in callers:
                if caller.account == "user":
                    mine, none = answers[caller], await http.call(spec.method, missing, caller)
                    if mine != none:
                        failures.append(f"{spec.path}: {mine} for a stranger, {none} if missing")
                if caller.account in GRANTS:
                    other = await http.call(spec.method, unrelated, caller)
                    if other[0] != 404:
                        failures.append(f"{spec.path}: {caller.name} reached another cluster")
        if spec.method != "GET" and (spec.method, spec.path) not in ENDS_CREDENTIALS:
            failures += [
                f"{spec.method} {spec.path} ended the credentials of {name}: list the route "
                "in ENDS_CREDENTIALS or stop it from doing so with an empty body"
                for name in await still_valid(http, callers)
            ]
    assert not failures, "\n".join(failures)


def test_every_route_the_app_serves_has_a_declared_policy(services: Services) -> None:
    app = create_app(services)
    served = list(app.router.routes())
    assert all(route in services.policies for route in served)
    assert len(served) == len(all_routes())


def test_every_route_declares_a_policy_the_matrix_knows() -> None:
    callers = [Caller("anonymous", "none"), Caller("user", "session"), Caller("admin", "api_key")]
    for spec in all_routes():
        for caller in callers:
            expectation(spec, caller)  # raises UnknownPolicy
    for prefix in ("/api/console", KITE, BCS):
        new_route = replace(all_routes()[0], path=prefix + "/new", auth="owner")
        with pytest.raises(UnknownPolicy):
            expectation(new_route, callers[0])


def test_every_route_on_clusters_nodes_or_tokens_is_in_the_object_matrix() -> None:
    judged = {*OBJECT_ROUTES, *OBJECT_LISTS, *OBJECT_BY_POLICY}
    routes = {(s.method, s.path) for s in all_routes()}
    missing = sorted(
        f"{method} {path}" for method, path in routes - judged if path.startswith(OBJECT_PREFIXES)
    )
    assert not missing, (
        "these routes touch objects of the authorization engine: add each to OBJECT_ROUTES "
        "(the verb it needs), OBJECT_LISTS or OBJECT_BY_POLICY: " + ", ".join(missing)
    )
    assert judged <= routes, f"no longer served: {sorted(judged - routes)}"
