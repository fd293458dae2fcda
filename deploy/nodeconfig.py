"""Command-line and config-file conventions shared by every cellstack node.

Every node (``twistd cellserver``, ``twistd permalinkd``, ``twistd
edgeproxy``) runs with sensible defaults and no config file, and any option
can also come from one TOML file (``--config FILE``).  TOML because it is in
the standard library (``tomllib``), has comments and real types, and a cluster
file stays readable by people; see the README.

Layout of the file: one table per kind of node, holding that node's long
option names as keys, and optional per-node tables below it that override
them for the node named with ``--node``::

    [cellserver]
    ready-kernels = 4
    listen = ["tcp:8101:interface=127.0.0.1"]

    [cellserver.nodes.c2]
    listen = ["tcp:8102:interface=127.0.0.1"]

Precedence: command line > per-node table > node-kind table > defaults.
Values from the file go through the same coercion and validation as the
command line (they are fed to the same ``opt_``/``optParameters`` handlers),
so a bad value in the file gets the same clear message.

Subclasses set ``section`` and list repeatable options (such as ``listen``)
in ``repeatable``; a repeatable option given on the command line replaces
the file's list instead of adding to it.
"""
from __future__ import annotations

import re
import tomllib
from typing import Any, Iterable

from twisted.python import usage

NODE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


class ConfigError(usage.UsageError):
    """A problem with the config file, reported like a command-line error."""


def load_node_table(path: str, section: str, node: str | None) -> dict[str, Any]:
    """Read ``path`` and return the option table for ``section`` (and ``node``).

    Per-node tables live under ``[section.nodes.<node>]`` and override the
    section's own keys.  Unknown sections are ignored (one file describes
    the whole cluster); a missing section gives an empty table.
    """
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path!r}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path!r} is not valid TOML: {e}") from e
    table = doc.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path!r}: [{section}] must be a table")
    merged = {k: v for k, v in table.items() if k != "nodes"}
    nodes = table.get("nodes", {})
    if node is not None and isinstance(nodes, dict) and isinstance(nodes.get(node), dict):
        merged.update(nodes[node])
    return merged


def _scan(argv: Iterable[str], names: tuple[str, ...]) -> str | None:
    """Find the value of the last ``--name VALUE`` / ``--name=VALUE`` in argv."""
    found = None
    argv = list(argv)
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                found = argv[i + 1]
            elif arg.startswith(name + "="):
                found = arg[len(name) + 1:]
    return found


class NodeOptions(usage.Options):
    """Base options for a node: ``--config``, ``--node``, repeatable ``--listen``.

    Subclasses add their own ``optParameters``/``optFlags``/``opt_`` methods,
    set ``section`` (the TOML table name) and ``default_listen``, and turn
    the parsed options into a frozen settings dataclass in ``postOptions``.
    """

    section = "node"
    default_listen: list[str] = []
    repeatable: tuple[str, ...] = ("listen",)

    optParameters = [
        ["config", "c", None, "TOML config file (one format for all nodes; see the README)."],
        ["node", None, None, "This node's name: lowercase letters, digits and '-', at most 31."],
    ]

    def __init__(self) -> None:
        super().__init__()
        # Repeatable options whose current list came from the file or the
        # defaults: the first use on the command line replaces that list.
        self._replaceable: set[str] = set()
        for name in self.repeatable:
            self[name] = []
        if "listen" in self.repeatable:
            self["listen"] = list(self.default_listen)
            self._replaceable.add("listen")

    def add_repeatable(self, name: str, value: str) -> None:
        """Append to a repeatable option, replacing file/default values first."""
        if name in self._replaceable:
            self[name] = []
            self._replaceable.discard(name)
        self[name].append(value)

    def opt_listen(self, endpoint: str) -> None:
        """A Twisted endpoint string to listen on (repeatable), e.g. tcp:8101:interface=127.0.0.1"""
        self.add_repeatable("listen", endpoint)

    def parseOptions(self, options=None):
        import sys

        argv = list(sys.argv[1:] if options is None else options)
        path = _scan(argv, ("--config", "-c"))
        if path is not None:
            node = _scan(argv, ("--node",))
            self.apply_table(load_node_table(path, self.section, node), path)
        super().parseOptions(options)

    def apply_table(self, table: dict[str, Any], path: str) -> None:
        """Feed a config table through the same handlers as the command line."""
        for key, value in table.items():
            mangled = key.replace("-", "_")
            if mangled in self.repeatable:
                values = value if isinstance(value, list) else [value]
                self[mangled] = [_as_text(v) for v in values]
                self._replaceable.add(mangled)
                continue
            name = self.synonyms.get(key) or self.synonyms.get(mangled)
            if name is None or name in ("config", "help", "version"):
                raise ConfigError(f"config file {path!r}: [{self.section}] has unknown option {key!r}")
            handler = self._dispatch[name]
            try:
                if isinstance(handler, usage.CoerceParameter):
                    handler.dispatch(name, _as_text(value))
                elif name in self._flag_names():
                    if not isinstance(value, bool):
                        raise ConfigError(f"{key} must be true or false, not {value!r}")
                    self.opts[name] = 1 if value else 0
                else:
                    handler(name, _as_text(value))
            except usage.UsageError as e:
                raise ConfigError(f"config file {path!r}: {key}: {e}") from e

    def _flag_names(self) -> set[str]:
        flags = set()
        for cls in type(self).__mro__:
            for flag in cls.__dict__.get("optFlags", []) or []:
                flags.add(flag[0])
        return flags

    def node_name(self, default: str) -> str:
        """The validated ``--node`` name (or ``default``)."""
        name = self["node"] or default
        if not NODE_NAME_RE.match(name):
            raise usage.UsageError(
                f"--node {name!r}: use lowercase letters, digits and '-' (at most 31, starting with a letter or digit)"
            )
        return name


def _as_text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def positive_int(name: str, minimum: int = 1, maximum: int | None = None):
    """A coerce function for optParameters with a clear message."""

    def coerce(text: str) -> int:
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a whole number, not {text!r}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise ValueError(f"{name} must be {bound}, not {value}")
        return value

    coerce.coerceDoc = f"(whole number >= {minimum})"
    return coerce


def positive_float(name: str, minimum: float = 0.0):
    def coerce(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, not {text!r}")
        if value < minimum or value != value:
            raise ValueError(f"{name} must be at least {minimum}, not {value}")
        return value

    coerce.coerceDoc = f"(number >= {minimum})"
    return coerce


HTTP_IDLE_TIMEOUT = 75.0     # above the edge's pool idle time (30 s), so the edge never reuses one being closed


def http_idle_timeout_parameter() -> list:
    """The ``--http-idle-timeout`` option of the nodes that serve HTTP with
    twisted.web: Twisted's own default leaves a silent connection open for
    12 hours, so clients that open connections and send nothing (or half a
    request) would hold the node's file descriptors."""
    return ["http-idle-timeout", None, HTTP_IDLE_TIMEOUT,
            "Seconds an HTTP connection may stay silent (an idle keep-alive, or a request head or body "
            "that stopped coming) before it is closed; websockets are not affected.",
            positive_float("http-idle-timeout", 0.1)]


def check_endpoints(reactor, descriptions: list[str]) -> None:
    """Parse each endpoint string now, so a typo is a usage error, not a traceback."""
    from twisted.internet import endpoints

    for desc in descriptions:
        try:
            endpoints.serverFromString(reactor, desc)
        except (ValueError, KeyError, TypeError) as e:
            raise usage.UsageError(f"--listen {desc!r} is not a valid endpoint: {e}")
