"""Reading regorus's AST (JSON) for what testing and coverage need. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RuleSpan", "module_rules", "package_path"]


@dataclass(frozen=True)
class RuleSpan:
    """One rule definition: its name (the head's first term) and its lines, 1-based inclusive."""

    name: str
    kind: str  # "Spec" (a rule or function) or "Default"
    is_function: bool
    first_line: int
    last_line: int


def _ref_parts(node: Any) -> list[str]:
    """``a.b["c"]`` as ["a", "b", "c"]; a non-literal index ends the path."""
    if not isinstance(node, dict) or len(node) != 1:
        return []
    ((kind, body),) = node.items()
    if kind == "Var":
        return [str(body["value"])]
    if kind == "RefDot":
        return [*_ref_parts(body["refr"]), str(body["field"][1])]
    if kind == "RefBrack":
        index = body.get("index", {})
        literal = index.get("String", {}).get("value") if isinstance(index, dict) else None
        return [*_ref_parts(body["refr"]), str(literal)] if isinstance(literal, str) else _ref_parts(body["refr"])
    return []


def import_root(entry: dict[str, Any]) -> str:
    """'data' for ``import data.ire.authz``, 'input' for ``import input.x``."""
    parts = _ref_parts(entry.get("refr"))
    return parts[0] if parts else ""


def package_path(module: dict[str, Any]) -> str:
    """``data.ire.authz`` for a module whose source says ``package ire.authz``."""
    return ".".join(["data", *_ref_parts(module["ast"]["package"]["refr"])])


def _line_of(source: bytes, offset: int) -> int:
    return source.count(b"\n", 0, offset) + 1


def module_rules(module: dict[str, Any]) -> list[RuleSpan]:
    source = module["source"]["contents"].encode("utf-8")
    rules = []
    for entry in module["ast"]["rules"]:
        ((kind, body),) = entry.items()
        span = body["span"]
        if kind == "Default":
            name, is_function = _ref_parts(body["refr"]), False
        else:
            ((head_kind, head),) = body["head"].items()
            name, is_function = _ref_parts(head["refr"]), head_kind == "Func"
        rules.append(
            RuleSpan(
                name=name[0] if name else "",
                kind=kind,
                is_function=is_function,
                first_line=int(span["line"]),
                last_line=_line_of(source, max(int(span["end"]) - 1, int(span["start"]))),
            )
        )
    return rules


# Builtins whose value changes between two evaluations of the same input: a revision
# that calls one is never cached.
NONDETERMINISTIC = frozenset(
    {"time.now_ns", "rand.intn", "uuid.rfc4122", "http.send", "opa.runtime", "net.lookup_ip_addr"}
)


class _UnlistableReadError(Exception):
    """The module reads input in a way whose paths cannot be listed (or is not deterministic)."""


def _chain(node: Any) -> tuple[Any, list[Any], list[Any]]:
    """Unwind a.b[c] into (root, steps, index expressions); a step is a str or None (dynamic)."""
    steps: list[Any] = []
    indexes: list[Any] = []
    while isinstance(node, dict) and len(node) == 1 and next(iter(node)) in ("RefDot", "RefBrack"):
        ((kind, body),) = node.items()
        if kind == "RefDot":
            steps.append(str(body["field"][1]))
        else:
            index = body.get("index")
            literal = index.get("String", {}).get("value") if isinstance(index, dict) else None
            steps.append(literal if isinstance(literal, str) else None)
            indexes.append(index)
        node = body["refr"]
    steps.reverse()
    return node, steps, indexes


def _is_input(node: Any) -> bool:
    return isinstance(node, dict) and node.get("Var", {}).get("value") == "input"


def _literal_keys(node: Any) -> list[str] | None:
    """The key path of object.get's second argument when it is a literal string or array of strings."""
    if isinstance(node, dict) and "String" in node:
        return [str(node["String"]["value"])]
    if isinstance(node, dict) and "Array" in node:
        items = node["Array"].get("items", [])
        keys = [i["String"]["value"] for i in items if isinstance(i, dict) and "String" in i]
        return [str(k) for k in keys] if len(keys) == len(items) else None
    return None


def _static(steps: list[Any]) -> tuple[str, ...]:
    path: list[str] = []
    for step in steps:
        if step is None:
            break
        path.append(step)
    return tuple(path)


def _walk(node: Any, paths: set[tuple[str, ...]]) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, paths)
        return
    if not isinstance(node, dict):
        return
    if node.get("with_mods"):
        raise _UnlistableReadError("with")
    if len(node) == 1:
        ((kind, body),) = node.items()
        if kind in ("RefDot", "RefBrack"):
            root, steps, indexes = _chain(node)
            if _is_input(root):
                paths.add(_static(steps))
                _walk(indexes, paths)
                return
        elif kind == "Var" and isinstance(body, dict) and body.get("value") == "input":
            raise _UnlistableReadError("bare input")
        elif kind == "Call" and isinstance(body, dict):
            root, steps, _ = _chain(body.get("fcn"))
            name = ".".join([str(root.get("Var", {}).get("value", "")), *[str(s) for s in steps]])
            if name in NONDETERMINISTIC:
                raise _UnlistableReadError(name)
            params = body.get("params", [])
            if name == "object.get" and len(params) == 3:
                target, tsteps, tindexes = _chain(params[0])
                keys = _literal_keys(params[1])
                if _is_input(target) and keys is not None:
                    paths.add(_static(tsteps) + tuple(keys) if None not in tsteps else _static(tsteps))
                    _walk([tindexes, params[2]], paths)
                    return
    for key, value in node.items():
        if key not in ("span", "eidx"):
            _walk(value, paths)


def input_reads(modules: list[dict[str, Any]]) -> tuple[tuple[str, ...], ...] | None:
    """Every ``input`` path the modules can read, minimal prefixes only; None if unknowable.

    Conservative by construction: a dynamic index reads the whole subtree before it, a
    bare ``input`` (passed to a function, aliased, imported, replaced ``with``) or a
    nondeterministic builtin makes the answer None, and the caller does not cache.
    """
    paths: set[tuple[str, ...]] = set()
    try:
        for module in modules:
            for imported in module["ast"].get("imports", []):
                root, _, _ = _chain(imported.get("refr"))
                if _is_input(root):
                    raise _UnlistableReadError("import input")
            _walk(module["ast"].get("rules", []), paths)
    except _UnlistableReadError:
        return None
    if () in paths:
        return None
    minimal = sorted(p for p in paths if not any(p[: len(q)] == q for q in paths if q != p and len(q) < len(p)))
    return tuple(minimal)
