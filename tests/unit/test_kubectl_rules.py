"""The console kubectl proxy's allow-list (seed §3.7), on argument vectors alone."""

from __future__ import annotations

import pytest

from kubebyon.domain.kubectl import check_kubectl_args, split_command

ALLOWED = [
    "get namespaces",
    "get pods -A",
    "get pods --all-namespaces -o wide",
    "get pods -n kube-system -o=json",
    "-n kube-system get pods",
    "--namespace=kube-system get pods",
    "get pods -nkube-system -ojson",
    "get deploy,svc -l app=web --show-labels --sort-by=.metadata.name",
    "get pods -o jsonpath={.items[*].metadata.name}",
    "get pods -o custom-columns=NAME:.metadata.name --no-headers",
    "get pods -o go-template --template={{.kind}}",
    "describe pod web-0 -n default",
    "logs web-0 -c app --tail=100 --since=1h --timestamps",
    "logs deploy/web -p",
    "top pods -A --containers",
    "top node",
    "api-resources --namespaced=true -o name",
    "api-versions",
    "version -o json",
    "explain pods.spec.containers --recursive",
    "events -A --types=Warning",
    "auth can-i list pods -A",
    "auth can-i --list",
    "get pods -l -w",  # -w is the selector's value here, exactly as kubectl reads it
]


@pytest.mark.parametrize("command", ALLOWED)
def test_read_only_commands_pass(command: str) -> None:
    assert check_kubectl_args(split_command(command)) is None


DENIED = [
    # the seed's deny list, each in its plain, --flag=value and short forms
    ("apply -f app.yaml", "apply"),
    ("delete pod web-0", "delete"),
    ("patch pod web-0 -p {}", "patch"),
    ("exec -it web-0 -- sh", "exec"),
    ("port-forward web-0 8080:80", "port-forward"),
    ("cp web-0:/etc/passwd passwd", "cp"),
    ("drain node-1", "drain"),
    ("cordon node-1", "cordon"),
    ("wait --for=condition=ready pod/web-0", "wait"),
    ("get --raw /api", "--raw"),
    ("get --raw=/api", "--raw=/api"),
    ("get pods --as admin", "--as"),
    ("get pods --as=admin", "--as=admin"),
    ("get pods --as-group=system:masters", "--as-group=system:masters"),
    ("get pods --server=https://evil.example.com", "--server=https://evil.example.com"),
    ("get pods -s https://evil.example.com", "-s"),
    ("get pods --token=abc", "--token=abc"),
    ("get pods --kubeconfig=/etc/kubernetes/admin.conf", "--kubeconfig=/etc/kubernetes/admin.conf"),
    ("get -f pod.yaml", "-f"),
    ("get --filename=pod.yaml", "--filename=pod.yaml"),
    ("get -k ./overlay", "-k"),
    ("get pods -w", "-w"),
    ("get pods --watch", "--watch"),
    ("get pods --watch-only", "--watch-only"),
    ("get pods -Aw", "-Aw"),
    ("get pods --output-watch-events", "--output-watch-events"),
    ("logs -f web-0", "-f"),
    ("logs --follow web-0", "--follow"),
    ("logs web-0 --follow=true", "--follow=true"),
    ("logs web-0 -pf", "-pf"),
    ("events -w", "-w"),
    # connection and identity overrides beyond the seed's list
    ("get pods --context=other", "--context=other"),
    ("get pods --cluster=other", "--cluster=other"),
    ("get pods --user=other", "--user=other"),
    ("get pods --certificate-authority=/tmp/ca", "--certificate-authority=/tmp/ca"),
    ("get pods --client-key=/tmp/key", "--client-key=/tmp/key"),
    ("get pods --client-certificate=/tmp/crt", "--client-certificate=/tmp/crt"),
    ("get pods --insecure-skip-tls-verify", "--insecure-skip-tls-verify"),
    ("get pods --username=u", "--username=u"),
    ("get pods --password=p", "--password=p"),
    ("get pods --cache-dir=/tmp/x", "--cache-dir=/tmp/x"),
    ("--kubeconfig /tmp/x get pods", "--kubeconfig"),
    ("-A get pods", "-A"),  # not a flag kubectl takes before the subcommand
    # other subcommands that write, interact or tunnel; plugins; anything unknown
    ("proxy", "proxy"),
    ("attach web-0", "attach"),
    ("run shell --image=busybox", "run"),
    ("edit pod web-0", "edit"),
    ("replace -f pod.yaml", "replace"),
    ("create namespace x", "create"),
    ("scale deploy/web --replicas=0", "scale"),
    ("label node n1 a=b", "label"),
    ("annotate node n1 a=b", "annotate"),
    ("taint node n1 a=b:NoSchedule", "taint"),
    ("rollout restart deploy/web", "rollout"),
    ("set image deploy/web app=evil", "set"),
    ("plugin list", "plugin"),
    ("config view --raw", "config"),
    ("debug node/n1 -it --image=busybox", "debug"),
    ("auth reconcile -f rbac.yaml", "reconcile"),
    ("auth whoami", "whoami"),
    ("auth", "auth"),
    ("top", "top"),
    ("my-plugin", "my-plugin"),
    # output forms that read local files
    ("get pods -o go-template-file=/etc/passwd", "-o"),
    ("get pods -ojsonpath-file=/etc/passwd", "-ojsonpath-file=/etc/passwd"),
    (
        "get pods --output=custom-columns-file=/etc/passwd",
        "--output=custom-columns-file=/etc/passwd",
    ),
    ("get pods --output templatefile", "--output"),
    # arguments kubectl would read from stdin, or that end option parsing
    ("get -", "-"),
    ("get pods -- -w", "--"),
    ("get pods --help", "--help"),
]


@pytest.mark.parametrize(("command", "offender"), DENIED)
def test_everything_else_is_refused_naming_the_argument(command: str, offender: str) -> None:
    denial = check_kubectl_args(split_command(command))
    assert denial is not None, command
    assert denial.argument == offender


def test_nothing_to_run_is_refused() -> None:
    denial = check_kubectl_args([])
    assert denial is not None
    assert "get" in denial.reason
    assert check_kubectl_args(["-n", "default"]) is not None


def test_nul_bytes_are_refused() -> None:
    denial = check_kubectl_args(["get", "pods\x00"])
    assert denial is not None
    assert "\x00" not in denial.argument


def test_a_command_line_is_split_without_a_shell() -> None:
    assert split_command("get pods -l 'app in (a, b)'") == ["get", "pods", "-l", "app in (a, b)"]
    assert split_command("kubectl get pods") == ["get", "pods"]
    # shell syntax is just text: no expansion, no second command
    assert split_command("get pods; rm -rf /") == ["get", "pods;", "rm", "-rf", "/"]
    assert split_command("get $(id) `id`") == ["get", "$(id)", "`id`"]
    with pytest.raises(ValueError, match="quotation"):
        split_command("get pods -l 'app=web")
