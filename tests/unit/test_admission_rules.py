"""Admission rules of host pods (kubebyon/domain/admission.py): signatures, the mutation,
the refusals and the webhook configurations the vcluster reconciler registers."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubebyon.domain.admission import (
    MalformedReview,
    mutation,
    refusal,
    signature,
    signature_matches,
    tolerates,
    webhook_configurations,
    webhook_name,
)
from tests.fakes.kube_api import json_patch

CLUSTER, OTHER = "cl_01hzx8a9b0c1d2e3f4g5h6j7k8", "cl_01hzx8a9b0c1d2e3f4g5h6j7k9"
KEY = "kubebyon.io/cluster-id"
OWN = {"key": KEY, "operator": "Equal", "value": CLUSTER, "effect": "NoSchedule"}


def pod(*, selector: Any = None, tolerations: Any = None, name: str = "web-0") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "web", "image": "nginx:1.27"}]}
    if selector is not None:
        spec["nodeSelector"] = selector
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def pinned(**extra: Any) -> dict[str, Any]:
    return pod(selector={KEY: CLUSTER}, tolerations=[OWN], **extra)


def in_cluster(obj: Any) -> str | None:
    return refusal(CLUSTER, "demo", "demo", obj, kubebyon_namespace=True)


# ---------------------------------------------------------------- signature


def test_signature_is_an_hmac_of_the_cluster_id_checked_exactly() -> None:
    key = b"k" * 32
    mine = signature(key, CLUSTER)
    assert len(mine) == 64 and mine == signature(key, CLUSTER)
    assert signature_matches(key, CLUSTER, mine)
    assert not signature_matches(key, OTHER, mine)  # another cluster's URL
    assert not signature_matches(b"x" * 32, CLUSTER, mine)  # another installation's key
    assert not signature_matches(key, CLUSTER, mine[:-1])
    assert not signature_matches(key, CLUSTER, mine.upper())
    assert not signature_matches(key, CLUSTER, "")


# ------------------------------------------------------------------ mutate


def test_a_pod_without_selector_or_tolerations_gets_both() -> None:
    original = pod()
    patch = mutation(CLUSTER, original)
    patched = json_patch(original, patch)
    assert patched["spec"]["nodeSelector"] == {KEY: CLUSTER}
    assert patched["spec"]["tolerations"] == [OWN]
    assert patched["spec"]["containers"] == original["spec"]["containers"]


def test_mutation_keeps_what_the_pod_has_and_adds_what_is_missing() -> None:
    keep = {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}
    original = pod(selector={"disktype": "ssd"}, tolerations=[keep])
    patched = json_patch(original, mutation(CLUSTER, original))
    assert patched["spec"]["nodeSelector"] == {"disktype": "ssd", KEY: CLUSTER}
    assert patched["spec"]["tolerations"] == [keep, OWN]


def test_mutation_repins_a_pod_aimed_at_another_cluster() -> None:
    original = pod(selector={KEY: OTHER}, tolerations=[OWN])
    patched = json_patch(original, mutation(CLUSTER, original))
    assert patched["spec"]["nodeSelector"] == {KEY: CLUSTER}


def test_nothing_to_patch_when_the_pod_is_pinned_and_tolerates_the_taint() -> None:
    assert mutation(CLUSTER, pinned()) == []
    # Any toleration that tolerates the taint will do.
    assert (
        mutation(CLUSTER, pod(selector={KEY: CLUSTER}, tolerations=[{"operator": "Exists"}])) == []
    )


# ----------------------------------------------------------------- validate


def test_a_pinned_pod_of_the_cluster_is_admitted() -> None:
    assert in_cluster(pinned()) is None
    everywhere = pod(selector={KEY: CLUSTER}, tolerations=[OWN, {"operator": "Exists"}])
    assert in_cluster(everywhere) is None  # key-less Exists: the selector still pins it


def test_a_pod_not_pinned_to_the_cluster_is_refused_with_a_reason() -> None:
    message = in_cluster(pod(tolerations=[OWN]))
    assert message is not None
    assert "'web-0' is not pinned to its nodes" in message
    assert f"{KEY}={CLUSTER}" in message

    message = in_cluster(pod(selector={KEY: OTHER}, tolerations=[OWN]))
    assert message is not None and f"another cluster ({OTHER})" in message


@pytest.mark.parametrize(
    "toleration",
    [
        {"key": KEY, "operator": "Equal", "value": OTHER, "effect": "NoSchedule"},
        {"key": KEY, "value": OTHER},  # operator and effect default to Equal / any
        {"key": KEY, "operator": "Exists"},
        {"key": KEY, "operator": "Exists", "effect": "NoSchedule"},
    ],
)
def test_a_pod_tolerating_another_clusters_taint_is_refused(toleration: dict[str, str]) -> None:
    message = in_cluster(pod(selector={KEY: CLUSTER}, tolerations=[OWN, toleration]))
    assert message is not None
    assert "tolerates the taint of other KubeBYON clusters' nodes" in message


def test_tolerations_that_do_not_reach_another_clusters_taint_are_fine() -> None:
    no_execute = {"key": KEY, "operator": "Exists", "effect": "NoExecute"}
    assert in_cluster(pod(selector={KEY: CLUSTER}, tolerations=[OWN, no_execute])) is None


def test_outside_kubebyon_namespaces_no_pod_may_tolerate_a_cluster_taint() -> None:
    def outside(obj: Any) -> str | None:
        return refusal(CLUSTER, "demo", "default", obj, kubebyon_namespace=False)

    message = outside(pod(tolerations=[{"key": KEY, "operator": "Exists"}], name="sneaky"))
    assert message is not None
    assert "'sneaky' in namespace 'default' tolerates the kubebyon.io/cluster-id taint" in message
    assert outside(pod(tolerations=[OWN])) is not None
    # Host add-ons run everywhere with a key-less toleration; ordinary pods are untouched.
    assert outside(pod(tolerations=[{"operator": "Exists"}])) is None
    assert outside(pod()) is None
    # Another cluster's namespace is that cluster's webhooks' business.
    assert (
        refusal(CLUSTER, "demo", "other", pod(tolerations=[OWN]), kubebyon_namespace=True) is None
    )


@pytest.mark.parametrize(
    "obj",
    [
        None,
        "a pod",
        {"metadata": {"name": "x"}},  # no spec
        {"metadata": {"name": "x"}, "spec": []},
        pod(selector=["kubebyon.io/cluster-id"]),
        pod(selector={KEY: 1}),
        pod(tolerations={"key": KEY}),
        pod(tolerations=["Exists"]),
        pod(tolerations=[{"key": {"nested": True}}]),
    ],
)
def test_a_pod_that_cannot_be_read_is_malformed(obj: Any) -> None:
    with pytest.raises(MalformedReview):
        mutation(CLUSTER, copy.deepcopy(obj))
    with pytest.raises(MalformedReview):
        in_cluster(copy.deepcopy(obj))


@pytest.mark.parametrize(
    ("toleration", "expected"),
    [
        ({"key": KEY, "operator": "Equal", "value": CLUSTER, "effect": "NoSchedule"}, True),
        ({"key": KEY, "value": CLUSTER}, True),
        ({"key": KEY, "operator": "Exists"}, True),
        ({"operator": "Exists"}, True),
        ({"key": KEY, "value": OTHER}, False),
        ({"key": "other", "operator": "Exists"}, False),
        ({"key": KEY, "operator": "Exists", "effect": "NoExecute"}, False),
        ({"key": KEY, "operator": "Bogus", "value": CLUSTER}, False),
    ],
)
def test_tolerates_follows_kubernetes(toleration: dict[str, str], expected: bool) -> None:
    assert tolerates(toleration, KEY, CLUSTER, "NoSchedule") is expected


# ----------------------------------------------------------------- webhooks


def test_webhook_configurations_call_the_signed_urls_for_the_clusters_namespace() -> None:
    key = b"k" * 32
    mutating, validating = webhook_configurations(CLUSTER, "https://kubebyon.example.com/", key)
    base = (
        f"https://kubebyon.example.com/api/internal/admission/clusters/{CLUSTER}/"
        f"{signature(key, CLUSTER)}"
    )
    assert webhook_name(CLUSTER) == "kubebyon-cl-01hzx8a9b0c1d2e3f4g5h6j7k8"
    for config, kind in ((mutating, "mutate"), (validating, "validate")):
        assert config["metadata"]["name"] == webhook_name(CLUSTER)
        assert config["metadata"]["labels"][KEY] == CLUSTER
        (hook,) = config["webhooks"]
        assert hook["clientConfig"] == {"url": f"{base}/{kind}-pod"}
        assert hook["namespaceSelector"] == {"matchLabels": {KEY: CLUSTER}}
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["rules"][0]["resources"] == ["pods"]
        # Only the pods the vCluster syncs; not its own control plane or helm job.
        assert hook["objectSelector"] == {
            "matchExpressions": [{"key": "vcluster.loft.sh/managed-by", "operator": "Exists"}]
        }
    assert mutating["kind"] == "MutatingWebhookConfiguration"
    assert validating["kind"] == "ValidatingWebhookConfiguration"
    assert validating["webhooks"][0]["failurePolicy"] == "Fail"
    assert validating["webhooks"][0]["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    assert mutating["webhooks"][0]["rules"][0]["operations"] == ["CREATE"]
