"""Authorization decisions: 1,000 roles and 10,000 assignments, cached and uncached.

Data: 1,000 roles with realistic patterns (exact names, anchored globs such as
``team07-*`` and ``*-prod-*``, ``*``, denies such as ``!kube-system`` and ``!exec``)
over 360 clusters, their namespaces, 15 resource kinds and Kite's verbs. 10,000
assignments: 800 users hold 10 roles each directly, 200 groups 10 roles each, and every
user is in 2 groups (so ~30 roles per principal). The workload: decisions for 200 of
the users, half of them aimed at what one of the user's roles names (so about a third
are allowed), half anywhere.

Phases, on the same decisions in the same event loop, alternated ``rounds`` times:
- ``dict``: a plain dict lookup of the precomputed answer, behind the same awaited call
  as the authorizer: the cheapest possible decision, the baseline.
- ``engine``: ``kubebyon.domain.authz.allowed`` on roles already in memory.
- ``cached``: ``Authorizer.allowed`` once its per-principal cache is warm.
- ``uncached``: ``Authorizer.allowed`` after ``invalidate()`` before every decision: one
  ``roles_for_principal`` query to PostgreSQL each time.

Each phase is run twice: once with a timer around every call (latency percentiles) and
once as a bare loop (decisions per second, without the timers' own cost).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bench.common import Outcome, Postgres, out, percentile
from kubebyon.db.authz import Authorizer
from kubebyon.db.database import Database
from kubebyon.domain.authz import VERBS, Access, Role, Subjects, allowed, patterns_match

ROLES = 1_000
USERS, USER_ROLES = 800, 10
GROUPS, GROUP_ROLES, GROUPS_PER_USER = 200, 10, 2
PRINCIPALS = 200  # users the workload asks about
DECISIONS = 10_000
UNCACHED_DECISIONS = 1_000
TARGET_CACHED_P99_US = 50.0

TEAMS = [f"team{t:02d}" for t in range(60)]
ENVS = ("dev", "staging", "prod")
CLUSTERS = [f"{team}-{env}-{n}" for team in TEAMS for env in ENVS for n in (1, 2)]
NAMESPACES = [*(f"{team}-app{n}" for team in TEAMS for n in range(1, 6)), "default"]
NAMESPACES += ["kube-system", "monitoring", "ingress"]
RESOURCES = [
    "pods",
    "deployments",
    "services",
    "configmaps",
    "secrets",
    "ingresses",
    "jobs",
    "cronjobs",
    "statefulsets",
    "daemonsets",
    "nodes",
    "namespaces",
    "persistentvolumeclaims",
    "events",
    "clusters",
]


@dataclass(frozen=True)
class Principal:
    user_id: str
    subjects: Subjects


@dataclass(frozen=True)
class Sample:
    principal: Principal
    access: Access


def _some(rng: random.Random, values: Sequence[str], low: int, high: int) -> list[str]:
    return rng.sample(list(values), rng.randint(low, high))


def random_role(rng: random.Random, role_id: int) -> Role:
    team = rng.choice(TEAMS)
    kind = rng.random()
    if kind < 0.4:  # a team's own clusters and namespaces, production often held back
        clusters = [f"{team}-*"] + ([f"!{team}-prod-*"] if rng.random() < 0.5 else [])
        namespaces = [f"{team}-*"] if rng.random() < 0.7 else ["*", "!kube-system"]
        resources = ["*"] if rng.random() < 0.3 else _some(rng, RESOURCES, 2, 6)
        verbs = rng.choice([["*", "!exec"], ["get", "list", "log"], _some(rng, VERBS, 2, 5)])
    elif kind < 0.7:  # exact names
        clusters = _some(rng, [c for c in CLUSTERS if c.startswith(team)], 1, 3)
        namespaces = _some(rng, [n for n in NAMESPACES if n.startswith(team)], 1, 3)
        resources = _some(rng, RESOURCES, 1, 4)
        verbs = _some(rng, VERBS, 1, 4)
    elif kind < 0.9:  # one environment everywhere, read-only
        env = rng.choice(ENVS)
        clusters = [f"*-{env}-*"] if rng.random() < 0.5 else ["*", "!*-prod-*"]
        namespaces = ["*"]
        resources = _some(rng, RESOURCES, 3, 8)
        verbs = ["get", "list"]
    else:  # wide, with denies
        clusters = ["*"]
        namespaces = ["*", "!kube-system", "!monitoring"]
        resources = ["*", "!secrets"]
        verbs = ["get", "list", "log"]
    name = f"role-{role_id:04d}"
    return Role(role_id, name, tuple(clusters), tuple(namespaces), tuple(resources), tuple(verbs))


def _pick(rng: random.Random, patterns: Sequence[str], universe: Sequence[str]) -> str:
    """A value the patterns name (as a user who holds the role would ask for), if any."""
    named = [p for p in patterns if not p.startswith("!")]
    pattern = rng.choice(named) if named else "*"
    candidates = [v for v in universe if patterns_match([pattern], v)] or list(universe)
    return rng.choice(candidates)


@dataclass
class World:
    roles: list[Role]
    user_roles: dict[str, list[int]]
    group_roles: dict[str, list[int]]
    user_groups: dict[str, list[str]]

    def roles_of(self, user_id: str) -> list[Role]:
        ids = set(self.user_roles[user_id])
        for group in self.user_groups[user_id]:
            ids.update(self.group_roles[group])
        return [self.roles[i - 3] for i in sorted(ids)]  # ids start at 3 (1, 2: system)


def build_world(rng: random.Random) -> World:
    roles = [random_role(rng, 3 + i) for i in range(ROLES)]
    ids = [r.id for r in roles]
    users = [f"usr_bench{i:04d}" for i in range(USERS)]
    groups = [f"group-{g:03d}" for g in range(GROUPS)]
    return World(
        roles,
        {u: rng.sample(ids, USER_ROLES) for u in users},
        {g: rng.sample(ids, GROUP_ROLES) for g in groups},
        {u: rng.sample(groups, GROUPS_PER_USER) for u in users},
    )


async def store(db: Database, world: World) -> int:
    """The roles and assignments, as the Kite and bk-bcs dialects would have written them."""
    assignments = [(rid, "user", u) for u, rids in world.user_roles.items() for rid in rids]
    assignments += [(rid, "group", g) for g, rids in world.group_roles.items() for rid in rids]
    async with db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO roles (id, name, clusters, namespaces, resources, verbs) "
            "OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6)",
            [
                (
                    r.id,
                    r.name,
                    list(r.clusters),
                    list(r.namespaces),
                    list(r.resources),
                    list(r.verbs),
                )
                for r in world.roles
            ],
        )
        await conn.executemany(
            "INSERT INTO role_assignments (role_id, subject_type, subject) VALUES ($1, $2, $3)",
            assignments,
        )
        await conn.execute("ANALYZE roles")
        await conn.execute("ANALYZE role_assignments")
    return len(assignments)


def workload(rng: random.Random, world: World) -> list[Sample]:
    users = rng.sample(sorted(world.user_roles), PRINCIPALS)
    principals = [
        Principal(u, Subjects(frozenset({u, f"{u}@example.com"}), frozenset(world.user_groups[u])))
        for u in users
    ]
    samples = []
    for _ in range(DECISIONS):
        principal = rng.choice(principals)
        if rng.random() < 0.5:
            role = rng.choice(world.roles_of(principal.user_id))
            access = Access(
                _pick(rng, role.clusters, CLUSTERS),
                _pick(rng, role.namespaces, NAMESPACES),
                _pick(rng, role.resources, RESOURCES),
                _pick(rng, role.verbs, VERBS),
            )
        else:
            access = Access(
                rng.choice(CLUSTERS),
                rng.choice(NAMESPACES),
                rng.choice(RESOURCES),
                rng.choice(VERBS),
            )
        samples.append(Sample(principal, access))
    return samples


Decide = Callable[[Sample], Awaitable[bool]]


@dataclass
class PhaseResult:
    label: str
    latencies_us: list[float]
    rate: float  # decisions per second, bare loop

    def line(self) -> str:
        lat = self.latencies_us
        return (
            f"  {self.label:<9} n={len(lat):<6} {self.rate:>12,.0f} decisions/s   "
            f"p50 {percentile(lat, 50):8.2f} us  p99 {percentile(lat, 99):8.2f} us  "
            f"max {max(lat):9.2f} us"
        )


async def measure(label: str, decide: Decide, samples: Sequence[Sample]) -> PhaseResult:
    latencies = []
    for sample in samples:
        t0 = time.perf_counter_ns()
        await decide(sample)
        latencies.append((time.perf_counter_ns() - t0) / 1000)
    started = time.perf_counter()
    for sample in samples:
        await decide(sample)
    rate = len(samples) / (time.perf_counter() - started)
    return PhaseResult(label, latencies, rate)


def best(results: list[PhaseResult]) -> PhaseResult:
    return min(results, key=lambda r: percentile(r.latencies_us, 99))


async def run(pg: Postgres, rounds: int) -> Outcome:
    outcome = Outcome("authorization decisions", "cached / dict decisions/s")
    rng = random.Random(20261125)
    world = build_world(rng)
    samples = workload(rng, world)
    uncached_samples = samples[:UNCACHED_DECISIONS]
    async with contextlib.AsyncExitStack() as stack:
        dsn = await pg.fresh_database("authz")
        stack.push_async_callback(pg.drop_database, dsn)
        db = await Database.open(dsn, min_size=1, max_size=2)
        stack.push_async_callback(db.close)
        count = await store(db, world)
        roles_in_memory = {
            p.principal.user_id: world.roles_of(p.principal.user_id) for p in samples
        }
        expected = {s: allowed(roles_in_memory[s.principal.user_id], s.access) for s in samples}
        share = sum(expected.values()) / len(expected)
        per_principal = sum(len(r) for r in roles_in_memory.values()) / len(roles_in_memory)
        out(
            f"{ROLES} roles, {count} assignments ({USERS} users x {USER_ROLES} direct, "
            f"{GROUPS} groups x {GROUP_ROLES}, {GROUPS_PER_USER} groups per user: "
            f"{per_principal:.1f} roles per principal)"
        )
        out(
            f"{len(samples)} decisions over {PRINCIPALS} principals, {share:.0%} allowed; "
            f"uncached phase: the first {len(uncached_samples)}"
        )

        authorizer = Authorizer(db)
        uncached_authorizer = Authorizer(db)

        async def by_dict(sample: Sample) -> bool:
            return expected[sample]

        async def by_engine(sample: Sample) -> bool:
            return allowed(roles_in_memory[sample.principal.user_id], sample.access)

        async def cached(sample: Sample) -> bool:
            p = sample.principal
            return await authorizer.allowed(p.subjects, p.user_id, sample.access)

        async def uncached(sample: Sample) -> bool:
            uncached_authorizer.invalidate()
            p = sample.principal
            return await uncached_authorizer.allowed(p.subjects, p.user_id, sample.access)

        phases: list[tuple[str, Decide, Sequence[Sample]]] = [
            ("dict", by_dict, samples),
            ("engine", by_engine, samples),
            ("cached", cached, samples),
            ("uncached", uncached, uncached_samples),
        ]
        # The answers must agree before any of them is timed.
        for label, decide, subset in phases:
            wrong = [s for s in subset if await decide(s) != expected[s]]
            if wrong:
                raise RuntimeError(f"{label}: {len(wrong)} decisions differ from the engine's")
        if not 0.2 <= share <= 0.8:
            raise RuntimeError(f"the workload is lopsided: {share:.0%} allowed")

        results: dict[str, list[PhaseResult]] = {label: [] for label, _, _ in phases}
        for i in range(rounds):
            out(f" round {i + 1}/{rounds}")
            # Rotate the order so that a drift in machine load favours no phase.
            for label, decide, subset in phases[i % 4 :] + phases[: i % 4]:
                results[label].append(await measure(label, decide, subset))
                out(results[label][-1].line())
    rates = {label: max(r.rate for r in rs) for label, rs in results.items()}
    p99s = {label: percentile(best(rs).latencies_us, 99) for label, rs in results.items()}
    out(f"  best of {rounds}: decisions/s (ratio to dict) and the lowest p99 of each phase")
    for label in results:
        out(
            f"  {label:<9} {rates[label]:>12,.0f} decisions/s ({rates[label] / rates['dict']:.4f}x)"
            f"   p99 {p99s[label]:8.2f} us"
        )
    outcome.ratio = rates["cached"] / rates["dict"]
    p99 = p99s["cached"]
    out(
        f"  cached vs uncached: {rates['cached'] / rates['uncached']:.0f}x the decisions per "
        f"second, p99 {p99:.2f} us vs {p99s['uncached']:.0f} us; cached vs engine alone: "
        f"{rates['cached'] / rates['engine']:.1f}x"
    )
    outcome.target(
        f"cached p99 < {TARGET_CACHED_P99_US:g} us", p99 < TARGET_CACHED_P99_US, f"{p99:.2f} us"
    )
    return outcome
