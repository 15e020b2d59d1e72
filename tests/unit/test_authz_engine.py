"""The pattern rules of the authorization engine, including the two places where it is
deliberately stricter than Kite (docs/authorization.md): a deny wins wherever it stands,
and a pattern never matches a substring."""

from __future__ import annotations

import random
from fnmatch import fnmatchcase

import pytest

from kubebyon.domain.authz import (
    Access,
    Role,
    allowed,
    pattern_problem,
    patterns_match,
    role_allows,
    subjects_of,
)

# The system roles exactly as migration 0003 seeds them (tests/integration/test_authz_cache.py
# checks the seeded rows against these).
ADMIN = Role(1, "admin", ("*",), ("*",), ("*",), ("*",))
VIEWER = Role(2, "viewer", ("*",), ("*",), ("*",), ("get", "log"))


def role(
    clusters: tuple[str, ...] = ("*",),
    namespaces: tuple[str, ...] = ("*",),
    resources: tuple[str, ...] = ("*",),
    verbs: tuple[str, ...] = ("*",),
    name: str = "custom",
) -> Role:
    return Role(3, name, clusters, namespaces, resources, verbs)


def access(
    cluster: str = "cl_demo", namespace: str = "dev", resource: str = "pods", verb: str = "get"
) -> Access:
    return Access(cluster, namespace, resource, verb)


# --- single patterns ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "value", "expected"),
    [
        (["dev"], "dev", True),
        (["dev"], "prod", False),
        (["*"], "anything-at-all", True),
        (["dev", "test"], "test", True),
        # anchored globs
        (["dev-*"], "dev-a", True),
        (["dev-*"], "dev-", True),
        (["dev-*"], "dev", False),
        (["*-system"], "kube-system", True),
        (["*-system"], "kube-system-2", False),
        (["team-?"], "team-a", True),
        (["team-?"], "team-ab", False),
        (["team-?"], "team-", False),
        (["node[0-9]"], "node7", True),
        (["node[0-9]"], "nodex", False),
        (["node[!0-9]"], "nodex", True),
        (["node[!0-9]"], "node7", False),
        # empty lists match nothing, not everything
        ([], "dev", False),
        ([], "", False),
        # case matters: Kubernetes names are lower case, patterns are taken as written
        (["Dev"], "dev", False),
    ],
)
def test_pattern_forms(patterns: list[str], value: str, expected: bool) -> None:
    assert patterns_match(patterns, value) is expected


@pytest.mark.parametrize(
    ("pattern", "value"),
    [
        ("dev", "my-dev-a"),  # Kite: an unanchored regexp, so "dev" matches inside
        ("dev", "devops"),
        ("prod", "nonprod"),
        ("dev-*", "my-dev-a"),
        ("*-system", "kube-system-extra"),
        ("dev.*", "dev-a"),  # a glob, not a regexp: "." is a literal dot here
        ("d.v", "dev"),
    ],
)
def test_a_pattern_never_matches_a_substring(pattern: str, value: str) -> None:
    assert not patterns_match([pattern], value)
    assert patterns_match(["*", "!" + pattern], value)  # nor does a deny


def test_lists_of_patterns_decide_as_each_pattern_would_on_its_own() -> None:
    """The engine compiles a list into one matcher; it must decide exactly as judging
    every pattern by itself does: some allow matches (the whole value) and no deny."""

    def one_by_one(patterns: list[str], value: str) -> bool:
        allows = [p for p in patterns if not p.startswith("!")]
        denies = [p[1:] for p in patterns if p.startswith("!")]
        return any(fnmatchcase(value, p) for p in allows) and not any(
            fnmatchcase(value, p) for p in denies
        )

    rng = random.Random(5)
    atoms = ["a", "b", "ab", "a-b", "*", "a*", "*b", "?", "a?", "[ab]", "[!a]b", "a.b"]
    values = ["", "a", "b", "ab", "ba", "aab", "a-b", "a.b", "axb", "bb", "*"]
    for _ in range(3000):
        patterns = [("!" if rng.random() < 0.3 else "") + rng.choice(atoms) for _ in range(4)]
        patterns = patterns[: rng.randint(0, 4)]
        for value in values:
            assert patterns_match(patterns, value) is one_by_one(patterns, value), (
                patterns,
                value,
            )


# --- denies -------------------------------------------------------------------------


def test_a_deny_wins_wherever_it_stands_in_the_list() -> None:
    # Kite honours "!prod" only when it comes before the allow that matches.
    assert not patterns_match(["!prod", "*"], "prod")
    assert not patterns_match(["*", "!prod"], "prod")
    assert not patterns_match(["prod", "!prod"], "prod")
    assert not patterns_match(["prod-*", "!prod-eu"], "prod-eu")
    assert patterns_match(["*", "!prod"], "dev")
    assert patterns_match(["prod-*", "!prod-eu"], "prod-us")


def test_a_deny_takes_the_same_pattern_forms_and_never_a_substring() -> None:
    assert not patterns_match(["*", "!kube-*"], "kube-system")
    assert patterns_match(["*", "!kube-*"], "my-kube-system")
    assert patterns_match(["*", "!prod"], "nonprod")
    assert not patterns_match(["*", "!*"], "anything")


def test_a_deny_alone_grants_nothing() -> None:
    assert not patterns_match(["!prod"], "dev")
    assert not patterns_match(["!prod"], "prod")


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("dev", False),
        ("*", False),
        ("!prod", False),
        ("!dev-*", False),
        ("team-[a-c]?", False),
        ("", True),
        ("!", True),
        ("!!prod", True),
        (" dev", True),
        ("dev ", True),
        ("x" * 254, True),
    ],
)
def test_pattern_problems(pattern: str, problem: bool) -> None:
    assert (pattern_problem(pattern) is not None) is problem


# --- roles: all four dimensions of one role -------------------------------------------


def test_a_role_must_match_all_four_dimensions() -> None:
    editor = role(("cl_demo",), ("dev",), ("pods", "deployments"), ("get", "create"))
    assert role_allows(editor, access())
    assert role_allows(editor, access(resource="deployments", verb="create"))
    assert not role_allows(editor, access(cluster="cl_other"))
    assert not role_allows(editor, access(namespace="prod"))
    assert not role_allows(editor, access(resource="secrets"))
    assert not role_allows(editor, access(verb="delete"))


def test_the_verb_wildcard_allows_every_verb_and_verbs_can_be_denied() -> None:
    every = role(verbs=("*",))
    for verb in ("get", "list", "create", "update", "delete", "log", "exec"):
        assert role_allows(every, access(verb=verb))
    no_exec = role(verbs=("*", "!exec"))
    assert role_allows(no_exec, access(verb="delete"))
    assert not role_allows(no_exec, access(verb="exec"))


def test_a_role_with_an_empty_dimension_allows_nothing() -> None:
    assert not role_allows(role(namespaces=()), access())
    assert not role_allows(role(verbs=()), access())


def test_roles_are_united_but_two_half_matching_roles_never_combine() -> None:
    dev_reader = role(("cl_demo",), ("dev",), ("pods",), ("get",), name="dev-reader")
    prod_writer = role(("cl_demo",), ("prod",), ("pods",), ("delete",), name="prod-writer")
    roles = [dev_reader, prod_writer]
    assert allowed(roles, access(namespace="dev", verb="get"))
    assert allowed(roles, access(namespace="prod", verb="delete"))
    # dev from the first role and delete from the second: neither role allows it alone
    assert not allowed(roles, access(namespace="dev", verb="delete"))
    assert not allowed(roles, access(namespace="prod", verb="get"))
    assert not allowed([], access())


def test_a_deny_in_one_role_does_not_cancel_another_role() -> None:
    # Union: each role is judged on its own; a deny is part of its own role only.
    not_prod = role(clusters=("*", "!cl_prod"), name="not-prod")
    prod_only = role(clusters=("cl_prod",), name="prod-only")
    assert not allowed([not_prod], access(cluster="cl_prod"))
    assert allowed([not_prod, prod_only], access(cluster="cl_prod"))


def test_system_roles() -> None:
    for verb in ("get", "list", "create", "update", "delete", "log", "exec"):
        assert role_allows(ADMIN, access(cluster="any", namespace="kube-system", verb=verb))
    assert role_allows(VIEWER, access(verb="get"))
    assert role_allows(VIEWER, access(cluster="any", namespace="*", resource="nodes", verb="log"))
    for verb in ("list", "create", "update", "delete", "exec"):
        assert not role_allows(VIEWER, access(verb=verb))


# --- subjects ---------------------------------------------------------------------------


def test_a_principal_answers_to_its_id_its_email_in_lower_case_and_its_bcs_names() -> None:
    subjects = subjects_of("usr_1", "Alice@Example.COM", ["platform-team"], ["alice"])
    assert subjects.users == {"usr_1", "alice@example.com", "alice"}
    assert subjects.groups == {"platform-team"}
    # users and groups are separate namespaces: a group called "usr_1" is not the user
    assert "platform-team" not in subjects.users
