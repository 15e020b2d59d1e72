"""bk-bcs rules: tokens and their lifetimes, names, API server addresses, error envelopes,
and the mapping of bk-bcs permissions onto roles of the authorization engine."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from kubebyon.domain.authz import VERBS, Access, Role, allowed
from kubebyon.domain.bcs import (
    ACTION_VERBS,
    ANONYMOUS_MESSAGE,
    UserType,
    cluster_id_problem,
    credentials_problem,
    error_envelope,
    grant_role,
    is_user_token,
    new_register_token,
    new_user_token,
    parse_grant_role,
    plain_refresh,
    refresh_days_problem,
    resource_problem,
    server_addresses_problem,
    token_expiry,
    user_name_problem,
    verify_access,
)

NOW = datetime(2020, 4, 16, 15, 21, 52, tzinfo=UTC)


def test_tokens_are_random_alphanumerics_of_the_bk_bcs_lengths() -> None:
    users = {new_user_token() for _ in range(50)}
    assert len(users) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9]{32}", token) for token in users)
    assert all(is_user_token(token) for token in users)
    register = new_register_token()
    assert re.fullmatch(r"[A-Za-z0-9]{128}", register)
    for bad in ("", "a" * 31, "a" * 33, "kbk_" + "a" * 28, "a" * 31 + "-", register):
        assert not is_user_token(bad)


def test_admin_and_saas_tokens_live_ten_years_as_in_the_seed_and_plain_ones_a_day() -> None:
    # Seed: created 2020-04-16T15:21:52, expires 2030-04-14T15:21:52.
    expected = datetime(2030, 4, 14, 15, 21, 52, tzinfo=UTC)
    assert token_expiry(UserType.ADMIN, NOW) == expected
    assert token_expiry(UserType.SAAS, NOW) == expected
    assert token_expiry(UserType.PLAIN, NOW) == NOW + timedelta(hours=24)


def test_refreshing_a_plain_token_replaces_it_only_once_expired() -> None:
    live = NOW + timedelta(minutes=1)
    assert plain_refresh(live, NOW, 2) == (False, NOW + timedelta(days=2))
    expired = NOW - timedelta(seconds=1)
    assert plain_refresh(expired, NOW, 2) == (True, NOW + timedelta(days=2))
    assert plain_refresh(NOW, NOW, 1) == (True, NOW + timedelta(days=1))


@pytest.mark.parametrize("days", ["1", "2", "365"])
def test_refresh_days_within_bounds_are_accepted(days: str) -> None:
    assert refresh_days_problem(days) is None


@pytest.mark.parametrize("days", ["0", "-1", "366", "1.5", "two", "", "\u0663", "99999999999"])
def test_refresh_days_outside_bounds_or_not_integers_are_refused(days: str) -> None:
    assert refresh_days_problem(days) == "days must be an integer from 1 to 365"


def test_user_and_cluster_names() -> None:
    for good in ("admin1", "saas1", "xx", "alice@example.com", "a.b-c_d+e"):
        assert user_name_problem(good) is None
    for bad in ("", "-x", "a b", "a/b", "a:b", "x" * 129, "*"):
        assert user_name_problem(bad) is not None
    for good in ("BCS-K8S-001", "a", "cluster_1", "CL_01h"):
        assert cluster_id_problem(good) is None
    for bad in ("", "BCS K8S", "BCS/1", "dev-*", "!x", "x" * 101, "BCS-K8S-001\n"):
        assert cluster_id_problem(bad) is not None
    # KubeBYON's own cluster ids: a bk-bcs cluster is a KubeBYON cluster with its bk-bcs id.
    assert cluster_id_problem("cl_01h") == "cluster ids starting with cl_ are KubeBYON's own"
    assert user_name_problem("admin1\n") is not None


@pytest.mark.parametrize(
    "value",
    [
        "https://x.x.x.x:8443",
        "https://10.0.0.1:6443;https://10.0.0.2:6443",
        "https://api.example.com",
        "https://[2001:db8::1]:6443/",
        # Private ranges: where on-premises clusters live.
        "https://192.168.1.10",
        "https://172.16.5.4:443",
        "https://[fd00::2]:6443",
        "https://100.64.0.1:6443",
    ],
)
def test_server_addresses_accepts_https_hosts_with_ports(value: str) -> None:
    assert server_addresses_problem(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "http://10.0.0.1:6443",
        "10.0.0.1:6443",
        "https://",
        "https://10.0.0.1:99999",
        "https://user:pw@10.0.0.1:6443",
        "https://10.0.0.1:6443/api",
        "https://10.0.0.1:6443?x=1",
        "https://10.0.0.1:6443#f",
        "https://a:6443; https://b:6443",
        "https://a:6443,https://b:6443",
        "https://a:6443;",
        "https://a:6443;;https://b:6443",
    ],
)
def test_server_addresses_refuses_anything_else(value: str) -> None:
    assert server_addresses_problem(value) is not None


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.0.0.53",
        "0x7f.0x1",  # what the C resolver reads as 127.0.0.1
        "localhost",
        "api.localhost",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "0.0.0.0",  # noqa: S104 - an address refused, not one bound
        "0.1.2.3",
        "[::]",
        "169.254.169.254",
        "169.254.0.23",
        "[fe80::1]",
        "[fe80::1%25eth0]",
        "[fd00:ec2::254]",
        "100.100.100.200",
        "224.0.0.1",
        "[ff02::1]",
        "240.0.0.1",
    ],
)
def test_server_addresses_at_this_machine_or_metadata_services_are_refused(host: str) -> None:
    problem = server_addresses_problem(f"https://{host}:6443")
    assert problem is not None
    assert "points at this machine or a link-local or metadata address" in problem
    # Anywhere in the list.
    assert server_addresses_problem(f"https://10.0.0.1:6443;https://{host}:6443") == problem


def test_a_ca_that_is_not_pem_certificates_cannot_be_used() -> None:
    for ca in ("xxxx", "-----BEGIN CERTIFICATE-----\nxxxx\n-----END CERTIFICATE-----\n", "é"):
        assert credentials_problem(ca, "token") == (
            "the CA in the bk-bcs credentials is not a PEM certificate"
        )


@pytest.mark.parametrize("host", ["127.1", "2130706433", "017700000001", "bad_host"])
def test_server_address_hosts_must_be_dns_names_or_canonical_ip_addresses(host: str) -> None:
    assert server_addresses_problem(f"https://{host}:6443") == (
        f"server address 'https://{host}:6443' must be an https URL with a host"
    )


def test_errors_carry_bk_bcs_codes_and_the_exact_anonymous_message() -> None:
    assert error_envelope(401, "whatever") == (
        1405059,
        "errcode: 1405059,  anonymous requests is forbidden, please provide a valid token",
    )
    assert ANONYMOUS_MESSAGE.count("  ") == 1
    assert error_envelope(400, "bad") == (1405061, "errcode: 1405061, bad")
    assert error_envelope(404, "user x not found") == (
        1405061,
        "errcode: 1405061, user x not found",
    )
    assert error_envelope(409, "exists")[0] == 1405061
    assert error_envelope(500, "internal error") == (1405062, "errcode: 1405062, internal error")


@pytest.mark.parametrize(
    ("resource_type", "resource"),
    [
        ("cluster", "BCS-K8S-001"),
        ("cluster", "*"),
        ("storage", "BCS-K8S-001"),
        ("namespace", "BCS-K8S-001/default"),
        ("namespace", "BCS-K8S-001/*"),
        ("namespace_scoped", "*/default"),
        ("namespace_scoped", "*"),
    ],
)
def test_resources_that_can_be_granted(resource_type: str, resource: str) -> None:
    assert resource_problem(resource_type, resource) is None


@pytest.mark.parametrize(
    ("resource_type", "resource"),
    [
        ("cluster", "BCS-*"),  # no globs: names become engine patterns
        ("cluster", "!BCS-K8S-001"),
        ("cluster", "BCS-K8S-001/default"),
        ("cluster", ""),
        ("namespace", "BCS-K8S-001"),
        ("namespace", "BCS-K8S-001/Default"),
        ("namespace", "BCS-K8S-001/dev-*"),
        ("namespace_scoped", "BCS-K8S-001/default/x"),
        ("storage", "a:b"),
    ],
)
def test_resources_that_cannot_be_granted(resource_type: str, resource: str) -> None:
    assert resource_problem(resource_type, resource) is not None


def _engine_role(resource_type: str, resource: str, role: str) -> Role:
    made = grant_role(role, resource_type, resource)
    return Role(1, made.name, made.clusters, made.namespaces, made.resources, made.verbs)


def test_a_viewer_grant_on_a_cluster_reads_everything_in_it_and_writes_nothing() -> None:
    role = _engine_role("cluster", "BCS-K8S-001", "viewer")
    assert role.name == "bcs:viewer:cluster:BCS-K8S-001"
    for verb in ("get", "list", "log"):
        assert allowed([role], Access("BCS-K8S-001", "default", "pods", verb))
        assert allowed([role], Access("BCS-K8S-001", "*", "*", verb))
    for verb in ("create", "update", "delete", "exec"):
        assert not allowed([role], Access("BCS-K8S-001", "default", "pods", verb))
    assert not allowed([role], Access("BCS-K8S-002", "default", "pods", "get"))


def test_a_manager_grant_holds_every_engine_verb() -> None:
    role = _engine_role("cluster", "*", "manager")
    assert set(role.verbs) == set(VERBS)
    for verb in VERBS:
        assert allowed([role], Access("any-cluster", "ns", "deployments", verb))


def test_namespace_grants_split_the_namespace_object_from_what_is_inside_it() -> None:
    inside = _engine_role("namespace_scoped", "BCS-K8S-001/team-a", "manager")
    assert allowed([inside], Access("BCS-K8S-001", "team-a", "pods", "delete"))
    assert not allowed([inside], Access("BCS-K8S-001", "team-a", "namespaces", "delete"))
    assert not allowed([inside], Access("BCS-K8S-001", "team-b", "pods", "get"))
    namespace = _engine_role("namespace", "BCS-K8S-001/team-a", "manager")
    assert allowed([namespace], Access("BCS-K8S-001", "team-a", "namespaces", "delete"))
    assert not allowed([namespace], Access("BCS-K8S-001", "team-a", "pods", "get"))
    storage = _engine_role("storage", "BCS-K8S-001", "viewer")
    assert allowed([storage], Access("BCS-K8S-001", "x", "storage", "get"))
    assert not allowed([storage], Access("BCS-K8S-001", "x", "pods", "get"))


def test_verify_asks_the_engine_the_first_verb_of_the_action_on_the_whole_scope() -> None:
    assert verify_access("cluster", "BCS-K8S-001", "GET") == Access("BCS-K8S-001", "*", "*", "get")
    assert verify_access("namespace", "C/ns", "DELETE") == Access("C", "ns", "namespaces", "delete")
    assert verify_access("namespace_scoped", "C/ns", "PATCH") == Access("C", "ns", "*", "update")
    assert verify_access("storage", "C", "POST") == Access("C", "*", "storage", "create")
    # A namespace-wide grant does not answer a cluster-wide question.
    inside = _engine_role("namespace_scoped", "C/ns", "manager")
    assert not allowed([inside], verify_access("cluster", "C", "GET"))
    assert allowed([inside], verify_access("namespace_scoped", "C/ns", "DELETE"))
    cluster = _engine_role("cluster", "C", "viewer")
    assert allowed([cluster], verify_access("namespace", "C/ns", "GET"))
    assert set(ACTION_VERBS) == {"GET", "POST", "PUT", "PATCH", "DELETE"}


def test_grant_role_names_parse_back() -> None:
    for args in (
        ("viewer", "cluster", "BCS-K8S-001"),
        ("manager", "namespace_scoped", "*/default"),
    ):
        assert parse_grant_role(grant_role(*args).name) == args
    for other in ("admin", "viewer", "bcs:", "bcs:owner:cluster:x", "bcs:viewer:pods:x"):
        assert parse_grant_role(other) is None


def test_loopback_server_addresses_only_when_the_operator_allows_them() -> None:
    assert server_addresses_problem("https://127.0.0.1:6443") is not None
    assert server_addresses_problem("https://127.0.0.1:6443", allow_loopback=True) is None
    assert server_addresses_problem("https://localhost:6443", allow_loopback=True) is None
    assert server_addresses_problem("https://169.254.169.254", allow_loopback=True) is not None
