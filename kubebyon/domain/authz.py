"""The authorization engine: may these subjects do this verb on this resource in this
cluster and namespace? Pure functions; ``kubebyon/db/authz.py`` loads roles and caches
decisions, ``api/authz.py`` adds platform admins and owners for console routes.

A role holds four pattern lists (clusters, namespaces, resources, verbs). A request is
allowed when ONE role assigned to the principal (directly or through a group) matches
all four. Patterns are exact names, ``*``, or anchored globs (``dev-*`` matches
``dev-a`` but never ``my-dev-a``: a pattern never matches a substring); ``!name``
denies. Safer than Kite on purpose: a deny wins wherever it stands in the list, rather
than only when it comes before the allow that would match (docs/authorization.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import translate
from functools import lru_cache

# Kite's verbs, plus "*" for every verb.
VERBS = ("get", "list", "create", "update", "delete", "log", "exec")
WILDCARD = "*"
SUBJECT_TYPES = ("user", "group")
SYSTEM_ROLE_IDS = (1, 2)  # admin, viewer: created by migration 0003, never edited
ADMIN_ROLE = "admin"

# NOTIFY payload that invalidates cached authorization decisions on every replica.
AUTHZ_CHANNEL_PAYLOAD = "authz"


@dataclass(frozen=True)
class Role:
    id: int
    name: str
    clusters: tuple[str, ...]
    namespaces: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]


@dataclass(frozen=True)
class Subjects:
    """Every name a principal answers to in role assignments."""

    users: frozenset[str]
    groups: frozenset[str] = frozenset()

    @property
    def cache_key(self) -> tuple[frozenset[str], frozenset[str]]:
        return self.users, self.groups


def subjects_of(
    user_id: str, email: str, groups: Iterable[str] = (), aliases: Iterable[str] = ()
) -> Subjects:
    """A KubeBYON account answers to its id, its email (case-insensitive) and the names
    of the bk-bcs users linked to it (one person, one principal)."""
    users = {user_id, email.lower(), *aliases}
    return Subjects(frozenset(users), frozenset(groups))


@dataclass(frozen=True)
class Access:
    cluster: str
    namespace: str
    resource: str
    verb: str


def pattern_problem(pattern: str) -> str | None:
    """Why a pattern cannot be stored, or None."""
    body = pattern[1:] if pattern.startswith("!") else pattern
    if not body or body != body.strip() or len(pattern) > 253:
        return f"invalid pattern {pattern!r}"
    if body.startswith("!"):
        return f"invalid pattern {pattern!r}: a single '!' negates"
    return None


Matcher = Callable[[str], object]  # truthy when the value matches


def _nothing(value: str) -> bool:
    return False


def _anything(value: str) -> bool:
    return True


def _any_of(patterns: list[str]) -> Matcher:
    if not patterns:
        return _nothing
    if WILDCARD in patterns:
        return _anything
    if not any(c in p for p in patterns for c in "*?["):
        return frozenset(patterns).__contains__
    # fnmatch.translate anchors each glob at both ends; re.match anchors the start too.
    return re.compile("|".join(translate(p) for p in patterns)).match


@lru_cache(maxsize=4096)
def _compiled(patterns: tuple[str, ...]) -> tuple[Matcher, Matcher]:
    """(allow, deny) matchers of one dimension of a role, built once per pattern list."""
    denies = [p[1:] for p in patterns if p.startswith("!")]
    return _any_of([p for p in patterns if not p.startswith("!")]), _any_of(denies)


def patterns_match(patterns: Sequence[str], value: str) -> bool:
    """True when a positive pattern matches and no ``!`` pattern does, in any order."""
    allow, deny = _compiled(tuple(patterns))
    return bool(allow(value)) and not deny(value)


def role_allows(role: Role, access: Access) -> bool:
    return (
        patterns_match(role.verbs, access.verb)
        and patterns_match(role.resources, access.resource)
        and patterns_match(role.namespaces, access.namespace)
        and patterns_match(role.clusters, access.cluster)
    )


def allowed(roles: Iterable[Role], access: Access) -> bool:
    return any(role_allows(role, access) for role in roles)
