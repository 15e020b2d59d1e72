"""Admission of host pods for KubeBYON clusters (defence in depth, reference §7).

The cluster's vCluster already gives every pod it syncs to the host the node selector
``kubebyon.io/cluster-id=<id>`` and the toleration for the taint
``kubebyon.io/cluster-id=<id>:NoSchedule`` of the cluster's nodes. The host's admission
webhooks, registered per cluster by the vcluster reconciler, make sure of it:

- mutate: a pod that lacks the node selector or the toleration gets them (JSONPatch);
- validate: a pod in the cluster's namespace must be pinned to the cluster's nodes and
  must not tolerate another cluster's taint; a pod outside KubeBYON's namespaces must not
  tolerate a ``kubebyon.io/cluster-id`` taint at all.

"Tolerating a KubeBYON taint" means a toleration naming the key ``kubebyon.io/cluster-id``.
A key-less ``operator: Exists`` toleration (DaemonSets of log shippers, the host's own
system DaemonSets) is left alone: in a cluster's namespace the node selector still pins
the pod, and outside them it is how host add-ons run on every node.

The webhooks apply to the pods the vCluster syncs (label ``vcluster.loft.sh/managed-by``):
the namespace also holds the vCluster's own control plane and its helm job, which run on
platform nodes. The URL carries a signature, an HMAC-SHA256 of the cluster id, so only
the host that KubeBYON told it to can call a cluster's webhook.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubebyon.domain.labels import CLUSTER_LABEL
from kubebyon.domain.vcluster_values import MANAGED_BY, MANAGED_BY_LABEL

KEY_PURPOSE = "admission"  # SecretBox.derive_key(KEY_PURPOSE) signs the webhook URLs
SYNCED_POD_LABEL = "vcluster.loft.sh/managed-by"  # set by the vCluster syncer on host pods
TAINT_EFFECT = "NoSchedule"
JSON = dict[str, Any]


class MalformedReview(ValueError):
    """The AdmissionReview's pod cannot be read (a 400, never a 500)."""


def signature(key: bytes, cluster_id: str) -> str:
    return hmac.new(key, cluster_id.encode(), hashlib.sha256).hexdigest()


def signature_matches(key: bytes, cluster_id: str, given: str) -> bool:
    return hmac.compare_digest(signature(key, cluster_id).encode(), given.encode())


@dataclass(frozen=True)
class PodScheduling:
    """The parts of a pod that decide where it may run."""

    name: str
    node_selector: Mapping[str, str] | None
    tolerations: list[Mapping[str, Any]] | None

    @classmethod
    def of(cls, pod: Any) -> PodScheduling:
        if not isinstance(pod, Mapping):
            raise MalformedReview("request.object: must be a Pod object")
        meta, spec = pod.get("metadata") or {}, pod.get("spec")
        if not isinstance(meta, Mapping) or not isinstance(spec, Mapping):
            raise MalformedReview("request.object: a Pod needs metadata and spec objects")
        selector, tolerations = spec.get("nodeSelector"), spec.get("tolerations")
        if selector is not None and not (
            isinstance(selector, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in selector.items())
        ):
            raise MalformedReview("request.object.spec.nodeSelector: must map strings to strings")
        if tolerations is not None and not (
            isinstance(tolerations, list)
            and all(
                isinstance(t, Mapping) and all(isinstance(v, str | int | None) for v in t.values())
                for t in tolerations
            )
        ):
            raise MalformedReview("request.object.spec.tolerations: must be a list of objects")
        name = meta.get("name") or meta.get("generateName") or ""
        return cls(str(name), selector, tolerations)

    @property
    def label(self) -> str:
        return f"pod {self.name!r}" if self.name else "this pod"


def tolerates(toleration: Mapping[str, Any], key: str, value: str, effect: str) -> bool:
    """Kubernetes' ToleratesTaint: does ``toleration`` tolerate ``key=value:effect``?"""
    if toleration.get("effect") and toleration["effect"] != effect:
        return False
    if toleration.get("key") and toleration["key"] != key:
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == value


def _foreign_toleration(toleration: Mapping[str, Any], cluster_id: str | None) -> bool:
    """The toleration names the KubeBYON taint and tolerates it for a cluster other than
    ``cluster_id`` (None: for any cluster)."""
    if toleration.get("key") != CLUSTER_LABEL:
        return False
    if toleration.get("effect") not in (None, "", TAINT_EFFECT):
        return False
    if toleration.get("operator") == "Exists":
        return True
    return cluster_id is None or toleration.get("value") != cluster_id


def cluster_toleration(cluster_id: str) -> JSON:
    return {"key": CLUSTER_LABEL, "operator": "Equal", "value": cluster_id, "effect": TAINT_EFFECT}


def _pointer(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def mutation(cluster_id: str, pod: Any) -> list[JSON]:
    """JSONPatch operations giving the pod the cluster's node selector and toleration
    (none when it has both)."""
    scheduling = PodScheduling.of(pod)
    patch: list[JSON] = []
    selector = scheduling.node_selector
    if selector is None:
        patch.append(
            {"op": "add", "path": "/spec/nodeSelector", "value": {CLUSTER_LABEL: cluster_id}}
        )
    elif selector.get(CLUSTER_LABEL) != cluster_id:
        path = f"/spec/nodeSelector/{_pointer(CLUSTER_LABEL)}"
        patch.append({"op": "add", "path": path, "value": cluster_id})
    tolerations = scheduling.tolerations
    if tolerations is None:
        patch.append(
            {"op": "add", "path": "/spec/tolerations", "value": [cluster_toleration(cluster_id)]}
        )
    elif not any(tolerates(t, CLUSTER_LABEL, cluster_id, TAINT_EFFECT) for t in tolerations):
        patch.append(
            {"op": "add", "path": "/spec/tolerations/-", "value": cluster_toleration(cluster_id)}
        )
    return patch


def refusal(
    cluster_id: str,
    cluster_namespace: str,
    namespace: str,
    pod: Any,
    *,
    kubebyon_namespace: bool,
) -> str | None:
    """Why the pod may not be admitted, in words for the user; None when it may.
    ``kubebyon_namespace``: ``namespace`` belongs to a KubeBYON cluster."""
    scheduling = PodScheduling.of(pod)
    tolerations = scheduling.tolerations or []
    if namespace == cluster_namespace:
        pinned = (scheduling.node_selector or {}).get(CLUSTER_LABEL)
        if pinned != cluster_id:
            where = "not pinned to its nodes"
            if pinned is not None:
                where = f"pinned to the nodes of another cluster ({pinned})"
            return (
                f"{scheduling.label} is {where}: pods of KubeBYON cluster {cluster_id} may "
                f"only run on the cluster's own nodes (node selector {CLUSTER_LABEL}={cluster_id})"
            )
        if any(_foreign_toleration(t, cluster_id) for t in tolerations):
            return (
                f"{scheduling.label} tolerates the taint of other KubeBYON clusters' nodes: "
                f"pods of cluster {cluster_id} may only tolerate "
                f"{CLUSTER_LABEL}={cluster_id}:{TAINT_EFFECT}"
            )
        return None
    if not kubebyon_namespace and any(_foreign_toleration(t, None) for t in tolerations):
        return (
            f"{scheduling.label} in namespace {namespace!r} tolerates the {CLUSTER_LABEL} taint, "
            "which reserves nodes for KubeBYON clusters: only those clusters' pods may "
            "tolerate it; remove that toleration"
        )
    return None


def webhook_name(cluster_id: str) -> str:
    """The host object name (a DNS subdomain: ids contain ``_``)."""
    return "kubebyon-" + cluster_id.replace("_", "-")


def webhook_configurations(cluster_id: str, base_url: str, key: bytes) -> tuple[JSON, JSON]:
    """(MutatingWebhookConfiguration, ValidatingWebhookConfiguration) for the cluster's
    host namespace (labelled with the cluster id), calling ``base_url``'s admission
    routes. Every field the API server would default is given, so that an unchanged
    configuration compares equal and is never rewritten."""
    url = (
        f"{base_url.rstrip('/')}/api/internal/admission/clusters/{cluster_id}/"
        f"{signature(key, cluster_id)}"
    )
    name = webhook_name(cluster_id)
    dns = cluster_id.replace("_", "-")

    def webhook(kind: str, operations: list[str], failure_policy: str) -> JSON:
        rule = {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": operations,
            "resources": ["pods"],
            "scope": "Namespaced",
        }
        return {
            "name": f"{kind}-pod.{dns}.kubebyon.io",
            "clientConfig": {"url": f"{url}/{kind}-pod"},
            "rules": [rule],
            "namespaceSelector": {"matchLabels": {CLUSTER_LABEL: cluster_id}},
            "objectSelector": {
                "matchExpressions": [{"key": SYNCED_POD_LABEL, "operator": "Exists"}]
            },
            "failurePolicy": failure_policy,
            "matchPolicy": "Equivalent",
            "sideEffects": "None",
            "timeoutSeconds": 10,
            "admissionReviewVersions": ["v1"],
        }

    metadata = {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY, CLUSTER_LABEL: cluster_id}}
    # Mutating may be skipped when KubeBYON cannot answer: validation, which fails closed,
    # still refuses a pod that needed the mutation.
    mutating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": metadata,
        "webhooks": [{**webhook("mutate", ["CREATE"], "Ignore"), "reinvocationPolicy": "Never"}],
    }
    validating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": metadata,
        "webhooks": [webhook("validate", ["CREATE", "UPDATE"], "Fail")],
    }
    return mutating, validating
