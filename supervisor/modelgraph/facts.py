"""Read a model's interface and graph facts from untrusted ONNX bytes, not running it.

The supervisor is trusted and never runs model code, yet it needs the model's inputs and
outputs (for OIP ModelMetadata and request validation) and facts for admission policy:
opsets, operator domains and external data. Parsing uses IRE's own protobuf subset of
ONNX's schema, so the ``onnx`` package stays a dev-only dependency.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from protos import onnx_subset_pb2 as pb
from supervisor.errors import ModelFormatError
from supervisor.modelgraph.dtypes import ONNX_TO_OIP, onnx_type_name
from supervisor.modelgraph.rows import prove_rows_independent

__all__ = ["MAX_SUBGRAPH_DEPTH", "GraphFacts", "TensorSpec", "read_graph_facts"]

# How deep If/Loop/Scan bodies may nest. Real models nest a few levels; a crafted model
# nests thousands to exhaust the stack of whoever walks it. (protobuf also stops parsing
# at 100 message levels, about 33 graph levels.)
MAX_SUBGRAPH_DEPTH = 16

# ONNX spells the default domain both '' and 'ai.onnx' and ONNX Runtime treats them as
# one, so they are one here too: else a policy on '' is sidestepped with 'ai.onnx'.
_DEFAULT_DOMAIN_ALIAS = "ai.onnx"

_SUPPORTED = ", ".join(sorted(ONNX_TO_OIP.values()))


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: its name, OIP datatype and shape (-1 where dynamic)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class GraphFacts:
    """What the supervisor knows about a model without running it.

    ``operator_domains`` and ``node_count`` cover the main graph, every subgraph (If,
    Loop, Scan bodies) and model-local functions. ``external_data`` holds the
    ``location`` of every tensor whose data lives outside the model bytes ('' if none).
    """

    ir_version: int
    opsets: tuple[tuple[str, int], ...]
    operator_domains: frozenset[str]
    external_data: tuple[str, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    node_count: int
    byte_size: int
    # Whether each output row follows from the same input row alone (supervisor/modelgraph/
    # rows.py), which lets dynamic batching merge calls; if not, the reason.
    rows_independent: bool = False
    rows_reason: str = ""


def read_graph_facts(data: bytes, *, max_bytes: int = 2**31 - 1) -> GraphFacts:
    """Parse untrusted ONNX model bytes and return their facts.

    Raises :class:`ModelFormatError` when the bytes are too large, do not parse, or
    describe a model IRE cannot serve (no graph, non-tensor or unsupported I/O types,
    missing shapes, duplicate names, subgraphs nested too deep).
    """
    if len(data) > max_bytes:
        raise ModelFormatError(f"model is {len(data)} bytes, over the limit of {max_bytes}")
    model = pb.ModelProto()
    try:
        model.ParseFromString(data)
    except DecodeError as exc:
        raise ModelFormatError(f"model bytes ({len(data)}) do not parse as ONNX: {exc}") from exc
    if not model.HasField("graph"):
        raise ModelFormatError("model has no graph")
    graph = model.graph
    walk = _Walk()
    walk.graph(graph, depth=0)
    for function in model.functions:
        walk.nodes(function.node, depth=1)
    initializers = {_text(t.name, "initializer name") for t in graph.initializer}
    initializers |= {_text(s.values.name, "initializer name") for s in graph.sparse_initializer}
    inputs = [v for v in graph.input if _text(v.name, "input name") not in initializers]
    rows = prove_rows_independent(model)
    return GraphFacts(
        ir_version=model.ir_version,
        opsets=_opsets(model.opset_import),
        operator_domains=frozenset(walk.domains),
        external_data=tuple(walk.external),
        inputs=_specs(inputs, "input"),
        outputs=_specs(graph.output, "output"),
        node_count=walk.node_count,
        byte_size=len(data),
        rows_independent=rows.independent,
        rows_reason=rows.reason,
    )


class _Walk:
    """Collects node domains, node count and external data of a graph and subgraphs."""

    def __init__(self) -> None:
        self.domains: set[str] = set()
        self.external: list[str] = []
        self.node_count = 0

    def graph(self, graph: pb.GraphProto, depth: int) -> None:
        if depth > MAX_SUBGRAPH_DEPTH:
            raise ModelFormatError(f"subgraphs nest {depth} deep, over the limit of {MAX_SUBGRAPH_DEPTH}")
        self.tensors(graph.initializer)
        self.tensors(_sparse_parts(graph.sparse_initializer))
        self.nodes(graph.node, depth)

    def nodes(self, nodes: Iterable[pb.NodeProto], depth: int) -> None:
        for node in nodes:
            self.node_count += 1
            self.domains.add(_domain(node.domain))
            for attr in node.attribute:
                self.tensors([attr.t] if attr.HasField("t") else [])
                self.tensors(attr.tensors)
                sparse = [attr.sparse_tensor] if attr.HasField("sparse_tensor") else []
                self.tensors(_sparse_parts([*sparse, *attr.sparse_tensors]))
                subgraphs = [attr.g] if attr.HasField("g") else []
                for sub in [*subgraphs, *attr.graphs]:
                    self.graph(sub, depth + 1)

    def tensors(self, tensors: Iterable[pb.TensorProto]) -> None:
        for tensor in tensors:
            if tensor.data_location == pb.TensorProto.EXTERNAL:
                self.external.append(_location(tensor))


def _sparse_parts(sparse: Iterable[pb.SparseTensorProto]) -> Iterator[pb.TensorProto]:
    for s in sparse:
        yield s.values
        yield s.indices


def _location(tensor: pb.TensorProto) -> str:
    for entry in tensor.external_data:
        if _text(entry.key, "external data key") == "location":
            return _text(entry.value, "external data location")
    return ""


def _domain(raw: str) -> str:
    domain = _text(raw, "domain")
    return "" if domain == _DEFAULT_DOMAIN_ALIAS else domain


def _opsets(imports: Iterable[pb.OperatorSetIdProto]) -> tuple[tuple[str, int], ...]:
    opsets: dict[str, int] = {}
    for entry in imports:
        domain = _domain(entry.domain)
        if domain in opsets:
            # Two versions for one domain is ambiguous: which one a runtime picks is
            # not something a policy should have to guess.
            raise ModelFormatError(
                f"opset_import lists domain {domain!r} twice: versions {opsets[domain]} and {entry.version}"
            )
        opsets[domain] = entry.version
    return tuple(sorted(opsets.items()))


def _specs(values: Iterable[pb.ValueInfoProto], kind: str) -> tuple[TensorSpec, ...]:
    specs = tuple(_spec(v, kind) for v in values)
    if not specs:
        raise ModelFormatError(f"graph has no {kind}s; IRE serves models with at least one")
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ModelFormatError(f"{kind} name {spec.name!r} appears more than once")
        seen.add(spec.name)
    return specs


def _spec(value: pb.ValueInfoProto, kind: str) -> TensorSpec:
    name = _text(value.name, f"{kind} name")
    if not name:
        raise ModelFormatError(f"a graph {kind} has an empty name; requests could not address it")
    if not value.type.HasField("tensor_type"):
        raise ModelFormatError(f"{kind} {name!r} is not a tensor; IRE serves tensors only")
    tensor = value.type.tensor_type
    datatype = ONNX_TO_OIP.get(tensor.elem_type)
    if datatype is None:
        raise ModelFormatError(
            f"{kind} {name!r} has ONNX element type {tensor.elem_type} "
            f"({onnx_type_name(tensor.elem_type)}), which IRE does not serve; "
            f"supported: {_SUPPORTED}"
        )
    if not tensor.HasField("shape"):
        # IRE validates every request against the declared shape, so none is refused.
        raise ModelFormatError(f"{kind} {name!r} has no shape; IRE needs one to check requests")
    shape: list[int] = []
    for i, dim in enumerate(tensor.shape.dim):
        if dim.HasField("dim_value"):
            if dim.dim_value < 0:
                raise ModelFormatError(f"{kind} {name!r} dimension {i} is {dim.dim_value}; expected >= 0")
            shape.append(dim.dim_value)
        else:
            shape.append(-1)
    return TensorSpec(name=name, datatype=datatype, shape=tuple(shape))


def _text(value: object, what: str) -> str:
    """Return a proto2 string field; refuse invalid UTF-8 (which upb gives as bytes)."""
    if not isinstance(value, str):
        raise ModelFormatError(f"{what} is not valid UTF-8: {value!r:.80}")
    return value
