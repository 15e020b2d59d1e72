"""Node health rules (kubebyon/domain/nodes.py): quantities, what a host Node says, the
snapshot after an observation, and the events of a change of status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubebyon.domain.nodes import (
    HostNode,
    NodeEvent,
    Snapshot,
    byte_count,
    events_limit,
    host_node,
    millicores,
    next_snapshot,
    reported_status,
    status_event,
)

T0 = datetime(2026, 4, 23, 7, 0, tzinfo=UTC)
GRACE = 600.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2", 2000), ("1500m", 1500), ("0.5", 500), ("250000u", 250), ("1e1", 10000), ("3k", 3000000)],
)
def test_cpu_in_millicores(text: str, expected: int) -> None:
    assert millicores(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4Gi", 4 * 2**30),
        ("4096Ki", 4 * 2**20),
        ("128974848", 128974848),
        ("129M", 129_000_000),
        ("123Mi", 123 * 2**20),
        ("1.5Gi", 3 * 2**29),
        ("1E", 10**18),
        ("1E3", 1000),
        ("100m", 1),  # a fraction of a byte rounds up
    ],
)
def test_memory_in_bytes(text: str, expected: int) -> None:
    assert byte_count(text) == expected


@pytest.mark.parametrize("text", [None, 4, "", "Gi", "4 Gi", "4GB", "four", "-1Gi", "1Ki2"])
def test_unreadable_quantities_are_none(text: Any) -> None:
    assert byte_count(text) is None
    assert millicores(text) is None


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def node_object(ready: str | None = "True", heartbeat: datetime = T0) -> dict[str, Any]:
    status: dict[str, Any] = {
        "allocatable": {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "20Gi", "pods": "110"},
        "addresses": [
            {"type": "Hostname", "address": "worker-1"},
            {"type": "InternalIP", "address": "192.168.1.20"},
        ],
        "nodeInfo": {
            "osImage": "Ubuntu 24.04 LTS",
            "kubeletVersion": "v1.31.2+k3s1",
            "containerRuntimeVersion": "containerd://1.7.22",
        },
        "conditions": [{"type": "MemoryPressure", "status": "False"}],
    }
    if ready is not None:
        status["conditions"].append(
            {
                "type": "Ready",
                "status": ready,
                "lastHeartbeatTime": stamp(heartbeat),
                "lastTransitionTime": stamp(T0 - timedelta(minutes=3)),
            }
        )
    return {
        "metadata": {
            "name": "worker-1",
            "uid": "uid-1",
            "labels": {
                "kubebyon.io/cluster-id": "cl_demo",
                "kubebyon.io/join-token-id": "tok_demo",
            },
        },
        "spec": {"unschedulable": True},
        "status": status,
    }


def test_a_host_node_is_read_from_its_object() -> None:
    assert host_node(node_object()) == HostNode(
        name="worker-1",
        uid="uid-1",
        cluster_id="cl_demo",
        join_token_id="tok_demo",
        ready="True",
        heartbeat_at=T0,
        ready_since=T0 - timedelta(minutes=3),
        unschedulable=True,
        internal_ip="192.168.1.20",
        os_image="Ubuntu 24.04 LTS",
        kubelet_version="v1.31.2+k3s1",
        container_runtime_version="containerd://1.7.22",
        cpu_allocatable_milli_cores=2000,
        memory_allocatable_bytes=4 * 2**30,
        ephemeral_storage_allocatable_bytes=20 * 2**30,
    )


def test_a_bare_node_object_is_read_without_failing() -> None:
    node = host_node({"metadata": {"name": "bare"}})
    assert (node.name, node.cluster_id, node.ready, node.heartbeat_at) == ("bare", None, None, None)
    assert (node.unschedulable, node.memory_allocatable_bytes) == (False, None)


@pytest.mark.parametrize(
    ("ready", "status"),
    [(None, "pending"), ("True", "ready"), ("False", "not_ready"), ("Unknown", "unknown")],
)
def test_the_ready_condition_gives_the_status(ready: str | None, status: str) -> None:
    assert reported_status(ready) == status


def test_first_sight_of_a_ready_node() -> None:
    snapshot = next_snapshot(None, host_node(node_object()), T0 + timedelta(seconds=5), GRACE)
    assert snapshot.status == "ready"
    assert snapshot.last_seen_at == T0  # the heartbeat, not the observation time
    assert snapshot.ready_at == T0 - timedelta(minutes=3)  # when it became ready
    assert snapshot.offline_at is None
    assert (snapshot.host_uid, snapshot.unschedulable) == ("uid-1", True)


def test_without_a_heartbeat_the_observation_time_counts_as_seen() -> None:
    snapshot = next_snapshot(None, host_node(node_object(ready=None)), T0, GRACE)
    assert (snapshot.status, snapshot.last_seen_at, snapshot.ready_at) == ("pending", T0, None)


def test_a_heartbeat_older_than_the_grace_is_offline_whatever_ready_says() -> None:
    node = host_node(node_object(ready="True", heartbeat=T0))
    just_in = next_snapshot(None, node, T0 + timedelta(seconds=GRACE), GRACE)
    assert just_in.status == "ready"
    late = T0 + timedelta(seconds=GRACE + 1)
    past = next_snapshot(just_in, node, late, GRACE)
    assert (past.status, past.offline_at, past.ready_at) == ("offline", late, just_in.ready_at)
    again = next_snapshot(past, node, late + timedelta(seconds=30), GRACE)
    assert again.offline_at == late  # when it went offline, not the latest look


def test_last_seen_never_goes_back_and_a_return_is_ready_again() -> None:
    offline = Snapshot.of(
        {
            **next_snapshot(None, host_node(node_object()), T0, GRACE).__dict__,
            "status": "offline",
            "last_seen_at": T0 + timedelta(minutes=20),
            "offline_at": T0 + timedelta(minutes=30),
        }
    )
    now = T0 + timedelta(minutes=31)
    stale_replay = next_snapshot(offline, host_node(node_object(heartbeat=T0)), now, GRACE)
    assert stale_replay.last_seen_at == T0 + timedelta(minutes=20)
    back = next_snapshot(offline, host_node(node_object(heartbeat=now)), now, GRACE)
    assert (back.status, back.last_seen_at, back.ready_at) == (
        "ready",
        now,
        T0 - timedelta(minutes=3),
    )
    assert back.offline_at == offline.offline_at  # kept: when it last went offline


def test_events_of_status_changes() -> None:
    assert status_event(None, "pending") == NodeEvent(
        "joined", None, "pending", "Node joined with status pending"
    )
    assert status_event("ready", "ready") is None
    assert status_event("ready", "not_ready") == NodeEvent(
        "not_ready", "ready", "not_ready", "Node condition Ready changed to False"
    )
    assert status_event("not_ready", "ready") == NodeEvent(
        "ready", "not_ready", "ready", "Node condition Ready changed to True"
    )
    assert status_event("ready", "unknown") == NodeEvent(
        "unknown", "ready", "unknown", "Node condition Ready changed to Unknown"
    )
    assert status_event("ready", "pending") == NodeEvent(
        "pending", "ready", "pending", "Node has no Ready condition yet"
    )
    offline = status_event("unknown", "offline", last_seen_at=T0, grace=GRACE)
    assert offline == NodeEvent(
        "offline",
        "unknown",
        "offline",
        "No heartbeat from the node since 2026-04-23T07:00:00+00:00 (grace 600s)",
    )
    deleted = status_event("offline", "deleted")
    assert deleted == NodeEvent(
        "deleted", "offline", "deleted", "Node removed from the host cluster"
    )


@pytest.mark.parametrize(
    ("raw", "limit"),
    [
        (None, 100),
        ("", 100),
        ("abc", 100),
        ("0", 100),
        ("-1", 100),
        ("1", 1),
        ("500", 500),
        ("501", 500),
        ("99999", 500),
    ],
)
def test_the_events_limit(raw: str | None, limit: int) -> None:
    assert events_limit(raw) == limit
