"""The console kubectl proxy's rules (seed §3.7): which argument vectors may run.

An allow-list, not a deny-list: read-only subcommands, each with the flags it may take.
Everything else is refused — writes, interaction, tunnels, local files, raw API access,
impersonation, connection overrides, watch/follow streams, plugins — because an unknown
flag is refused whatever it does. Flags are parsed the way kubectl's flag library
(spf13/pflag) parses them: ``--name=value``, ``--name value``, ``-n value``, ``-nvalue``,
``-n=value`` and combined short switches (``-Ar``); a flag that takes a value consumes the
next argument whatever it looks like, as pflag does.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class KubectlResult:
    stdout: str
    stderr: str
    exit_code: int
    truncated: bool  # some output was dropped at the size cap


class KubectlUnavailable(Exception):
    """The kubectl binary is missing or cannot be started."""


class KubectlTimedOut(Exception):
    """kubectl ran past its time limit and was killed."""


@dataclass(frozen=True)
class Denial:
    argument: str  # the offending argument, as the caller wrote it
    reason: str


@dataclass(frozen=True)
class _Flags:
    values: frozenset[str] = frozenset()  # long names that take a value
    switches: frozenset[str] = frozenset()  # boolean long names
    short: Mapping[str, str] = field(default_factory=dict)  # letter -> long name

    def __or__(self, other: _Flags) -> _Flags:
        return _Flags(
            self.values | other.values,
            self.switches | other.switches,
            {**self.short, **other.short},
        )


def _flags(values: str = "", switches: str = "", **short: str) -> _Flags:
    return _Flags(frozenset(values.split()), frozenset(switches.split()), short)


# Allowed anywhere, before or after the subcommand.
_GLOBAL = _flags("namespace request-timeout", n="namespace")

_SUBCOMMANDS: dict[str, _Flags] = {
    "get": _flags(
        "output selector field-selector label-columns sort-by template chunk-size subresource",
        "all-namespaces show-labels show-kind no-headers ignore-not-found server-print "
        "show-managed-fields allow-missing-template-keys",
        A="all-namespaces",
        o="output",
        l="selector",
        L="label-columns",
    ),
    "describe": _flags(
        "selector chunk-size", "all-namespaces show-events", A="all-namespaces", l="selector"
    ),
    "logs": _flags(
        "container tail since since-time selector limit-bytes max-log-requests pod-running-timeout",
        "all-containers all-pods timestamps previous prefix ignore-errors",
        c="container",
        p="previous",
        l="selector",
    ),
    "top": _flags(
        "selector field-selector sort-by",
        "all-namespaces containers no-headers use-protocol-buffers sum show-capacity",
        A="all-namespaces",
        l="selector",
    ),
    "api-resources": _flags(
        "output api-group verbs sort-by categories", "namespaced no-headers cached", o="output"
    ),
    "api-versions": _flags(),
    "version": _flags("output", "client", o="output"),
    "explain": _flags("output api-version", "recursive", o="output"),
    "events": _flags(
        "output for types chunk-size template",
        "all-namespaces no-headers allow-missing-template-keys",
        A="all-namespaces",
        o="output",
    ),
    "auth": _flags(
        "subresource", "all-namespaces list no-headers quiet", A="all-namespaces", q="quiet"
    ),
}
# Subcommands that need a second word: `auth can-i`, `top pod|node`.
_SECOND_WORD = {
    "auth": frozenset({"can-i"}),
    "top": frozenset({"pod", "pods", "po", "node", "nodes", "no"}),
}
# Output formats that print what the server sent; the *-file forms read local files.
_OUTPUT_FORMATS = frozenset(
    {
        "json",
        "yaml",
        "wide",
        "name",
        "custom-columns",
        "jsonpath",
        "jsonpath-as-json",
        "go-template",
        "template",
        "plaintext",
        "plaintext-openapiv2",
    }
)
_ALLOWED = (
    "get, describe, logs, top, api-resources, api-versions, version, explain, events, auth can-i"
)


def split_command(command: str) -> list[str]:
    """``"get pods -A"`` -> argv, split like a POSIX shell would but never run by one.
    A leading ``kubectl`` is dropped. Raises ValueError (e.g. an unclosed quote)."""
    argv = shlex.split(command)
    return argv[1:] if argv[:1] == ["kubectl"] else argv


def check_kubectl_args(argv: Sequence[str]) -> Denial | None:
    """None when ``argv`` (without ``kubectl`` itself) may run, else the first offender."""
    if not argv:
        return Denial("", f"give a read-only subcommand: {_ALLOWED}")
    subcommand: str | None = None
    second: frozenset[str] | None = None  # the word still expected after the subcommand
    flags = _GLOBAL
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if "\x00" in arg:
            return Denial(arg.replace("\x00", "\\0"), "arguments must not contain NUL bytes")
        if arg == "-":
            return Denial(arg, "reading from standard input is not allowed")
        if not arg.startswith("-"):
            if subcommand is None:
                if arg not in _SUBCOMMANDS:
                    return Denial(arg, f"not a read-only subcommand; allowed: {_ALLOWED}")
                subcommand = arg
                flags = _GLOBAL | _SUBCOMMANDS[arg]
                second = _SECOND_WORD.get(arg)
            elif second is not None:
                if arg not in second:
                    return _second_word_denial(arg, subcommand)
                second = None
            continue
        parsed = _parse_flag(arg, flags, subcommand)
        if isinstance(parsed, Denial):
            return parsed
        name, value, needs_value = parsed
        if needs_value and i < len(argv):
            value = argv[i]
            i += 1
        if name == "output" and value is not None:
            output = value.partition("=")[0]
            if output not in _OUTPUT_FORMATS:
                return Denial(arg, f"output format {output!r} is not allowed")
    if subcommand is None:
        return Denial(argv[0], f"give a read-only subcommand: {_ALLOWED}")
    if second is not None:
        return _second_word_denial(subcommand, subcommand)
    return None


def _second_word_denial(arg: str, subcommand: str) -> Denial:
    forms = ", ".join(f"{subcommand} {word}" for word in sorted(_SECOND_WORD[subcommand]))
    return Denial(arg, f"allowed: {forms}")


def _parse_flag(
    arg: str, flags: _Flags, subcommand: str | None
) -> Denial | tuple[str, str | None, bool]:
    """(long name, inline value, takes the next argument as its value) or a denial."""
    where = f"kubectl {subcommand}" if subcommand else "before the subcommand"
    if arg.startswith("--"):
        name, eq, value = arg[2:].partition("=")
        if name in flags.values:
            return name, value if eq else None, not eq
        if name in flags.switches:
            return name, None, False
        return Denial(arg, f"flag --{name} is not allowed with {where}")
    letters = arg[1:]
    for j, letter in enumerate(letters):
        name = flags.short.get(letter, "")
        if name in flags.values:
            rest = letters[j + 1 :].removeprefix("=")
            return name, rest or None, not rest
        if name not in flags.switches:
            return Denial(arg, f"flag -{letter} is not allowed with {where}")
        if letters[j + 1 : j + 2] == "=":  # -A=true
            return name, None, False
    return flags.short[letters[-1]], None, False
