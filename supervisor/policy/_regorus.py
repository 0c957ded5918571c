"""Everything that touches regorus, behind small typed functions.

Regorus objects are thread-affine (PyO3 ``unsendable``): an ``Engine`` or ``Rvm`` must be
created, used and dropped on one thread, or the process panics. Callers keep each one in
the thread that made it; only plain data (text, program bytes) crosses threads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import regorus  # type: ignore[import-untyped]

from supervisor.policy.policyset import PolicyFile

__all__ = ["Interpreter", "Vm", "compile_program", "error_text", "normalize"]

# The RVM reports an undefined result as this JSON string.
_RVM_UNDEFINED = "<undefined>"
# Made once: json.dumps with options builds a new encoder on every call.
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def error_text(exc: BaseException) -> str:
    """Regorus's message without its Rust backtrace, bounded."""
    text = str(exc).split("Stack backtrace:", 1)[0].strip()
    return text[:2000] or type(exc).__name__


def normalize(value: Any) -> Any:
    """Rego sets come back as Python sets: make them sorted lists, as OPA's JSON does."""
    if isinstance(value, set | frozenset):
        items = [normalize(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalize(v) for v in value]
    return value


class Interpreter:
    """A regorus ``Engine`` (the tree-walking interpreter) holding some policy files."""

    def __init__(self, files: Iterable[PolicyFile], *, coverage: bool = False) -> None:
        self._engine = regorus.Engine()
        if coverage:
            self._engine.set_enable_coverage(True)
        for f in files:
            try:
                self._engine.add_policy(f.path, f.text)
            except Exception as exc:
                raise SyntaxError(f"{f.path}: {error_text(exc)}") from exc

    def packages(self) -> set[str]:
        return {str(p) for p in self._engine.get_packages()}

    def eval_json(self, rule: str, document_json: str) -> Any:
        self._engine.set_input_json(document_json)
        return normalize(self._engine.eval_rule(rule))

    def eval_rule(self, rule: str, document: Mapping[str, Any] | None = None) -> Any:
        """The rule's value (sets as sorted lists), None when undefined; errors raise."""
        if document is not None:
            self._engine.set_input(dict(document))
        return normalize(self._engine.eval_rule(rule))

    def ast(self) -> list[dict[str, Any]]:
        modules: list[dict[str, Any]] = json.loads(self._engine.get_ast_as_json())
        return modules

    def coverage(self) -> dict[str, Any]:
        report: dict[str, Any] = json.loads(self._engine.get_coverage_report_as_json())
        return report


def compile_program(files: Iterable[PolicyFile], entry_points: Iterable[str]) -> bytes:
    """Compile ``files`` for the RVM; the serialized program may be loaded in any thread."""
    program = regorus.Program.compile_from_modules("{}", [(f.path, f.text) for f in files], list(entry_points))
    data: bytes = program.serialize_binary()
    return data


class Vm:
    """A regorus ``Rvm`` running one compiled program."""

    def __init__(self, program: bytes) -> None:
        loaded, partial = regorus.Program.deserialize_binary(program)
        if partial:
            raise ValueError("the compiled policy program deserialized partially")
        self._vm = regorus.Rvm()
        self._vm.load_program(loaded)
        self._vm.set_data_json("{}")
        # Bound once: each is looked up on every decision otherwise.
        self._set_input = self._vm.set_input_json
        self._execute = self._vm.execute_entry_point

    def eval_rule(self, rule: str, document: Mapping[str, Any]) -> Any:
        return self.eval_json(rule, _ENCODE(document))

    def eval_json(self, rule: str, document_json: str) -> Any:
        """Evaluate on an input already encoded as JSON text."""
        self._set_input(document_json)
        value = orjson.loads(self._execute(rule))
        return None if value == _RVM_UNDEFINED else value
