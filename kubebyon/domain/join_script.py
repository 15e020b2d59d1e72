"""How a user's machine becomes a node of a KubeBYON cluster: the join mechanism.

A ``JoinMechanism`` answers three questions, and nothing outside it knows the answers:

- **token issuing** — which credential a join token becomes on the cluster the machine
  joins (``credential``: a bootstrap-token Secret);
- **script rendering** — what the machine runs (``script``: the POSIX sh join script);
- **node identity** — how a joined node is recognised as the cluster's and the token's
  (``node_identity``: its labels and taints).

The default, ``HostAgentJoin`` (reference §7), joins the machine to the **host** k3s
cluster as an agent, labelled and tainted for one KubeBYON cluster; that cluster's
vCluster syncs exactly those host nodes. Its credential lives in the host's
``kube-system``.

A private-nodes mode (vCluster Pro, reference §1) would be a second implementation: its
credential is a bootstrap-token Secret in the *virtual* cluster's ``kube-system`` (group
``system:bootstrappers:kubeadm:default-node-token``), its script runs ``kubeadm join``
against the vCluster's endpoint with ``--discovery-token-ca-cert-hash``, and its nodes are
watched inside the vCluster. Adding it means implementing this Protocol and teaching the
join-token reconciler which API server a mechanism's credential goes to (today: the host).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from kubebyon.domain.ids import has_prefix
from kubebyon.domain.join_tokens import BootstrapToken, secure_k3s_token
from kubebyon.domain.labels import CLUSTER_LABEL, JOIN_TOKEN_LABEL
from kubebyon.domain.vcluster_values import MANAGED_BY, MANAGED_BY_LABEL

CLUSTER_LABEL = CLUSTER_LABEL  # kubebyon.io/cluster-id=<cluster id>, also the taint's key
BOOTSTRAP_NAMESPACE = "kube-system"
BOOTSTRAP_SECRET_TYPE = "bootstrap.kubernetes.io/token"  # noqa: S105 - a Secret type
# The group `k3s token create` gives its tokens; k3s grants it what an agent needs to join.
K3S_BOOTSTRAP_GROUP = "system:bootstrappers:k3s:default-node-token"
K3S_INSTALLER_URL = "https://get.k3s.io"

K3S_VERSION = re.compile(r"v\d+\.\d+\.\d+(-rc\d+)?\+k3s\d+")
_SERVER_URL = re.compile(
    r"https://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(:\d{1,5})?"
)


def k3s_version_problem(version: str) -> str | None:
    if not K3S_VERSION.fullmatch(version):
        return "must be a k3s release such as v1.31.4+k3s1"
    return None


def server_url_problem(url: str) -> str | None:
    """K3S_URL: ``https://host[:port]``, nothing else (it goes into a shell script)."""
    if not _SERVER_URL.fullmatch(url):
        return "must be https://HOST or https://HOST:PORT (e.g. https://k3s.example.com:6443)"
    return None


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class NodeIdentity:
    labels: Mapping[str, str]
    taints: tuple[str, ...]  # key=value:Effect


@dataclass(frozen=True)
class JoinRequest:
    """Everything a join script is made of; every field is checked before rendering."""

    cluster_id: str
    join_token_id: str
    token: BootstrapToken
    expires_at: datetime
    server_url: str  # K3S_URL: the host's k3s server
    k3s_version: str  # INSTALL_K3S_VERSION: the host's own k3s version
    ca_hash: str  # of the host's server CA, for the secure K3S_TOKEN


class JoinMechanism(Protocol):
    name: str

    def credential(
        self,
        *,
        cluster_id: str,
        join_token_id: str,
        token: BootstrapToken,
        expires_at: datetime,
    ) -> dict[str, Any]:
        """The object (a bootstrap-token Secret) that lets ``token`` join a machine."""
        ...

    def node_identity(self, cluster_id: str, join_token_id: str) -> NodeIdentity: ...

    def script(self, request: JoinRequest) -> str:
        """The join script; raises ValueError if a field is not safe to put in it."""
        ...


class HostAgentJoin:
    """The machine joins the host k3s cluster as an agent (reference §7)."""

    name = "host-agent"

    def credential(
        self,
        *,
        cluster_id: str,
        join_token_id: str,
        token: BootstrapToken,
        expires_at: datetime,
    ) -> dict[str, Any]:
        data = {
            "token-id": token.id,
            "token-secret": token.secret,
            "expiration": rfc3339(expires_at),
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",  # as `k3s token create` sets it
            "auth-extra-groups": K3S_BOOTSTRAP_GROUP,
            "description": f"KubeBYON join token {join_token_id} of cluster {cluster_id}",
        }
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": BOOTSTRAP_SECRET_TYPE,
            "metadata": {
                "name": token.secret_name,
                "namespace": BOOTSTRAP_NAMESPACE,
                "labels": {
                    MANAGED_BY_LABEL: MANAGED_BY,
                    CLUSTER_LABEL: cluster_id,
                    JOIN_TOKEN_LABEL: join_token_id,
                },
            },
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }

    def node_identity(self, cluster_id: str, join_token_id: str) -> NodeIdentity:
        return NodeIdentity(
            labels={CLUSTER_LABEL: cluster_id, JOIN_TOKEN_LABEL: join_token_id},
            taints=(f"{CLUSTER_LABEL}={cluster_id}:NoSchedule",),
        )

    def script(self, request: JoinRequest) -> str:
        if not has_prefix(request.cluster_id, "cl"):
            raise ValueError("not a cluster id")
        if not has_prefix(request.join_token_id, "tok"):
            raise ValueError("not a join token id")
        for problem in (
            server_url_problem(request.server_url),
            k3s_version_problem(request.k3s_version),
        ):
            if problem:
                raise ValueError(problem)
        identity = self.node_identity(request.cluster_id, request.join_token_id)
        cluster_label, token_label = (f"{k}={v}" for k, v in identity.labels.items())
        variables = {
            "CLUSTER_ID": request.cluster_id,
            "K3S_VERSION": request.k3s_version,
            "K3S_SERVER_URL": request.server_url,
            "K3S_INSTALLER_URL": K3S_INSTALLER_URL,
            "K3S_JOIN_TOKEN": secure_k3s_token(request.ca_hash, request.token),
            "CLUSTER_LABEL": cluster_label,
            "TOKEN_LABEL": token_label,
            "NODE_TAINT": identity.taints[0],
        }
        header = _HEADER.format(
            cluster_id=request.cluster_id,
            join_token_id=request.join_token_id,
            expires_at=rfc3339(request.expires_at),
        )
        assignments = "".join(f"{name}={_quoted(value)}\n" for name, value in variables.items())
        return header + assignments + _BODY


def _quoted(value: str) -> str:
    """Single-quoted for sh. Every value is validated above; this is the last guard."""
    if "'" in value or "\n" in value:
        raise ValueError("refusing to quote a value with a quote or a newline")
    return f"'{value}'"


_HEADER = """\
#!/bin/sh
# KubeBYON join script: makes this machine a node of cluster {cluster_id}
# (a k3s agent of the KubeBYON host, labelled and tainted for that cluster).
# Made for join token {join_token_id}, valid until {expires_at}.
# It contains a secret: do not share it or keep it around.
#
#   run:        curl -sfL "<join URL>" | sudo sh -
#   dry run:    curl -sfL "<join URL>" | sh -s -- --dry-run   (prints the steps only)
#   node name:  ... | sudo sh -s -- --node-name NAME             (default: the host name)
set -eu

"""

_BODY = r"""
STEPS=5
STEP=0
DRY_RUN=0
NODE_NAME=''

say() { printf '%s\n' "$*"; }
step() { STEP=$((STEP + 1)); printf '[%s/%s] %s\n' "$STEP" "$STEPS" "$*"; }
fail() { printf 'kubebyon-join: error: %s\n' "$*" >&2; exit 1; }
usage() {
    say 'usage: sh join.sh [--dry-run] [--node-name NAME]'
    say '  --dry-run         print the steps without changing anything'
    say "  --node-name NAME  join under NAME instead of this machine's host name"
}

while [ "$#" -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --node-name) [ "$#" -ge 2 ] || fail '--node-name needs a value'; NODE_NAME=$2; shift ;;
        --node-name=*) NODE_NAME=${1#--node-name=} ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; fail "unknown option: $1" ;;
    esac
    shift
done
[ "$DRY_RUN" = 0 ] || say 'Dry run: every step is printed, nothing is changed.'

step 'Checking privileges'
if [ "$(id -u)" != 0 ]; then
    [ "$DRY_RUN" = 1 ] || fail "this script must run as root: pipe it to 'sudo sh -'"
    say '    not root: a real run needs root'
fi

step 'Checking this machine'
MACHINE=$(uname -m)
case "$MACHINE" in
    x86_64 | amd64) ARCH=amd64 ;;
    aarch64 | arm64) ARCH=arm64 ;;
    armv7* | armv8l | armhf | arm) ARCH=arm ;;
    *) fail "unsupported architecture '$MACHINE': k3s agents run on amd64, arm64 and arm" ;;
esac
say "    architecture: $ARCH"
MISSING=''
for tool in curl systemctl grep tr mktemp; do
    command -v "$tool" >/dev/null 2>&1 || MISSING="$MISSING $tool"
done
[ -z "$MISSING" ] || fail "missing commands:$MISSING (install them, then run this again)"
SYSTEMD_STATE=$(systemctl is-system-running 2>/dev/null) || true
case "$SYSTEMD_STATE" in
    running | degraded | starting | initializing) say "    systemd: $SYSTEMD_STATE" ;;
    *) fail "the k3s agent needs systemd, which is not running (${SYSTEMD_STATE:-unknown})" ;;
esac
[ -n "$NODE_NAME" ] || NODE_NAME=$(uname -n | tr '[:upper:]' '[:lower:]')
case "$NODE_NAME" in
    '' | *[!abcdefghijklmnopqrstuvwxyz0123456789.-]* | [.-]* | *[.-])
        fail "'$NODE_NAME' is not a valid node name (a-z, 0-9, '-', '.'): use --node-name NAME" ;;
esac
[ "${#NODE_NAME}" -le 63 ] || fail "node name '$NODE_NAME' is over 63 characters: use --node-name"
say "    node name: $NODE_NAME"

step 'Checking for k3s already on this machine'
if systemctl is-active --quiet k3s-agent 2>/dev/null; then
    if systemctl cat k3s-agent 2>/dev/null | grep -qF "$CLUSTER_LABEL"; then
        say "This machine already runs the k3s agent of cluster $CLUSTER_ID: nothing to do."
        exit 0
    fi
    fail 'a k3s agent of another cluster runs here (remove: /usr/local/bin/k3s-agent-uninstall.sh)'
fi
if systemctl is-active --quiet k3s 2>/dev/null; then
    fail 'this machine runs a k3s server; it cannot also join as an agent'
fi
say '    none found'

step "Downloading the k3s installer from $K3S_INSTALLER_URL"
if [ "$DRY_RUN" = 1 ]; then
    say '    (dry run) not downloaded'
else
    INSTALLER=$(mktemp) || fail 'cannot create a temporary file'
    trap 'rm -f "$INSTALLER"' EXIT
    curl -sfL "$K3S_INSTALLER_URL" -o "$INSTALLER" || fail "cannot download $K3S_INSTALLER_URL"
fi

step "Installing the k3s $K3S_VERSION agent and joining $K3S_SERVER_URL as $NODE_NAME"
if [ "$DRY_RUN" = 1 ]; then
    say "    (dry run) would run: INSTALL_K3S_VERSION='$K3S_VERSION' K3S_URL='$K3S_SERVER_URL'"
    say "      K3S_TOKEN=<secret> sh <installer> agent --node-name '$NODE_NAME'"
    say "      --node-label '$CLUSTER_LABEL' --node-label '$TOKEN_LABEL'"
    say "      --node-taint '$NODE_TAINT'"
    say 'Dry run finished: nothing was changed.'
    exit 0
fi
INSTALL_K3S_VERSION=$K3S_VERSION K3S_URL=$K3S_SERVER_URL K3S_TOKEN=$K3S_JOIN_TOKEN \
    sh "$INSTALLER" agent \
    --node-name "$NODE_NAME" \
    --node-label "$CLUSTER_LABEL" \
    --node-label "$TOKEN_LABEL" \
    --node-taint "$NODE_TAINT" ||
    fail "the k3s installer failed (exit status $?); its messages are above"
say "Done: $NODE_NAME joined cluster $CLUSTER_ID; the console shows it within a minute."
"""
