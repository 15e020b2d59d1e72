"""Label and taint keys KubeBYON puts on host objects (reference §7: the node model)."""

from __future__ import annotations

# On a joined host Node (label and NoSchedule taint), its namespace and its webhooks.
CLUSTER_LABEL = "kubebyon.io/cluster-id"
# On a joined host Node: which join token brought it in.
JOIN_TOKEN_LABEL = "kubebyon.io/join-token-id"  # noqa: S105 - a label key, not a secret
