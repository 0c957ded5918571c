"""Threat catalogue for ONNX graph facts, and checks of the model builders.

The supervisor reads untrusted model bytes with its own ONNX protobuf subset. These
tests check that subset against the real ``onnx`` schema, check the facts against what
onnx and ONNX Runtime see, and throw malformed and crafted models at the reader.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from protos import onnx_subset_pb2 as pb
from supervisor.errors import ModelFormatError
from supervisor.modelgraph import (
    OIP_TO_NUMPY,
    OIP_TO_ONNX,
    ONNX_TO_OIP,
    GraphFacts,
    read_graph_facts,
)
from supervisor.modelgraph.build import (
    build_batch_centred,
    build_custom_domain_model,
    build_identity,
    build_int64_model,
    build_large_mlp,
    build_mlp,
    build_view_flatten,
)
from supervisor.modelgraph.facts import MAX_SUBGRAPH_DEPTH

OIP_TYPES = sorted(OIP_TO_ONNX)

ORT_TYPE = {
    "BOOL": "tensor(bool)",
    "UINT8": "tensor(uint8)",
    "UINT16": "tensor(uint16)",
    "UINT32": "tensor(uint32)",
    "UINT64": "tensor(uint64)",
    "INT8": "tensor(int8)",
    "INT16": "tensor(int16)",
    "INT32": "tensor(int32)",
    "INT64": "tensor(int64)",
    "FP16": "tensor(float16)",
    "FP32": "tensor(float)",
    "FP64": "tensor(double)",
}


def _ir3_model_with_initializer_inputs() -> bytes:
    """IR 3 style: every initializer is also listed among the graph inputs."""
    weight = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "ir3",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        [weight],
    )
    model = helper.make_model(graph, ir_version=3, opset_imports=[helper.make_opsetid("", 8)])
    return model.SerializeToString()


RUNNABLE_BUILDERS: dict[str, Callable[[], bytes]] = {
    "mlp": build_mlp,
    "mlp_custom_names": lambda: build_mlp((5, 7, 3), seed=4, input_name="a", output_name="b"),
    "int64": build_int64_model,
    "identity_fp32": lambda: build_identity("FP32"),
    "identity_scalar": lambda: build_identity("INT32", ()),
    "identity_two_dynamic": lambda: build_identity("UINT8", (-1, 2, -1)),
    "large_mlp": build_large_mlp,
    "batch_centred": build_batch_centred,
    "view_flatten": build_view_flatten,
}


@pytest.fixture(scope="module")
def built() -> dict[str, bytes]:
    """Every runnable builder's bytes, built once (the large MLP takes a moment)."""
    return {name: build() for name, build in RUNNABLE_BUILDERS.items()}


def _session(data: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _onnx_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from _onnx_nodes(sub)


# --- the subset schema itself ------------------------------------------------------


def _messages(d: Any) -> Iterator[Any]:
    yield d
    for nested in d.nested_types:
        yield from _messages(nested)


def test_subset_field_numbers_match_onnx_schema() -> None:
    """A renumbered field would silently misread real models (and write broken ones)."""
    theirs = {
        m.full_name.removeprefix("onnx."): m
        for top in onnx.ModelProto.DESCRIPTOR.file.message_types_by_name.values()
        for m in _messages(top)
    }
    checked = 0
    for top in pb.DESCRIPTOR.message_types_by_name.values():
        for ours in _messages(top):
            name = ours.full_name.removeprefix("ire.onnx.")
            other = theirs[name]
            for field in ours.fields:
                ref = other.fields_by_name[field.name]
                assert (field.number, field.type, field.is_repeated) == (
                    ref.number,
                    ref.type,
                    ref.is_repeated,
                ), f"{name}.{field.name}"
                if field.message_type is not None:
                    assert field.message_type.name == ref.message_type.name
                checked += 1
            for enum in ours.enum_types:
                ref_values = {v.name: v.number for v in other.enum_types_by_name[enum.name].values}
                assert {v.name: v.number for v in enum.values}.items() <= ref_values.items()
    assert checked > 60


def test_dtype_tables_agree_with_onnx() -> None:
    assert {ONNX_TO_OIP[v]: v for v in ONNX_TO_OIP} == dict(OIP_TO_ONNX)
    assert len(OIP_TO_ONNX) == len(OIP_TO_NUMPY) == 12
    for oip, onnx_type in OIP_TO_ONNX.items():
        assert helper.tensor_dtype_to_np_dtype(onnx_type) == OIP_TO_NUMPY[oip]
        assert OIP_TO_NUMPY[oip].byteorder in "<|="
        assert OIP_TO_NUMPY[oip].newbyteorder("<") == OIP_TO_NUMPY[oip]


# --- builders ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(RUNNABLE_BUILDERS))
def test_builder_output_passes_onnx_checker(built: dict[str, bytes], name: str) -> None:
    model = onnx.load_from_string(built[name])
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]


def test_custom_domain_model_parses_with_onnx() -> None:
    model = onnx.load_from_string(build_custom_domain_model())
    assert [(n.domain, n.op_type) for n in model.graph.node] == [("com.example.custom", "Evil")]
    assert ("com.example.custom", 1) in [(o.domain, o.version) for o in model.opset_import]


@pytest.mark.parametrize("name", ["mlp", "mlp_custom_names", "large_mlp"])
def test_mlp_matches_numpy_reference(built: dict[str, bytes], name: str) -> None:
    data = built[name]
    model = onnx.load_from_string(data)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    session = _session(data)
    (spec,) = session.get_inputs()
    x = np.random.default_rng(1).standard_normal((5, spec.shape[1])).astype(np.float32)

    expected = x.astype(np.float64)
    for node in model.graph.node:
        if node.op_type == "Gemm":
            expected = expected @ weights[node.input[1]] + weights[node.input[2]]
        else:
            assert node.op_type == "Relu"
            expected = np.maximum(expected, 0)
    (got,) = session.run(None, {spec.name: x})
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert np.abs(got).max() < 100  # weights are scaled by 1/sqrt(fan_in)


def test_mlp_is_reproducible_from_seed() -> None:
    assert build_mlp(seed=3) == build_mlp(seed=3)
    assert build_mlp(seed=3) != build_mlp(seed=4)


def test_int64_model_exact(built: dict[str, bytes]) -> None:
    tokens = np.array([[1, -2, 3, 2**40], [0, 0, 0, 7]], dtype=np.int64)
    scores, total = _session(built["int64"]).run(["scores", "total"], {"tokens": tokens})
    np.testing.assert_array_equal(scores, tokens * 3 + 1)
    assert scores.dtype == np.int64
    np.testing.assert_array_equal(total, tokens.astype(np.float32).sum(axis=1, keepdims=True))
    assert total.dtype == np.float32
    assert total.shape == (2, 1)


@pytest.mark.parametrize("datatype", OIP_TYPES)
def test_identity_all_oip_datatypes_round_trip(datatype: str) -> None:
    data = build_identity(datatype)
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    dtype = OIP_TO_NUMPY[datatype]
    x = np.arange(12).reshape(4, 3) % 2 if datatype == "BOOL" else np.arange(12).reshape(4, 3)
    x = x.astype(dtype)
    session = _session(data)
    assert session.get_inputs()[0].type == ORT_TYPE[datatype]
    (y,) = session.run(None, {"x": x})
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, x)
    facts = read_graph_facts(data)
    assert [(s.name, s.datatype, s.shape) for s in facts.inputs] == [("x", datatype, (-1, 3))]


def test_builder_bad_arguments_rejected() -> None:
    with pytest.raises(ValueError, match="STRING"):
        build_identity("STRING")
    with pytest.raises(ValueError, match="-2"):
        build_identity("FP32", (-2, 3))
    with pytest.raises(ValueError, match="two or more"):
        build_mlp((4,))
    with pytest.raises(ValueError, match="differ"):
        build_mlp(input_name="same", output_name="same")


# --- facts agree with onnx and ONNX Runtime -------------------------------------------


def _assert_facts_agree(data: bytes, facts: GraphFacts) -> None:
    model = onnx.load_from_string(data)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    assert facts.ir_version == model.ir_version
    assert facts.opsets == tuple(sorted((o.domain, o.version) for o in model.opset_import))
    assert facts.byte_size == len(data)
    assert facts.external_data == ()
    nodes = list(_onnx_nodes(graph))
    assert facts.node_count == len(nodes)
    assert facts.operator_domains == {n.domain for n in nodes}

    for specs, values in [
        (facts.inputs, [v for v in graph.input if v.name not in initializers]),
        (facts.outputs, list(graph.output)),
    ]:
        assert [s.name for s in specs] == [v.name for v in values]
        for spec, value in zip(specs, values, strict=True):
            tensor = value.type.tensor_type
            assert OIP_TO_ONNX[spec.datatype] == tensor.elem_type
            assert spec.shape == tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)

    session = _session(data)
    for specs, args in [
        (facts.inputs, session.get_inputs()),
        (facts.outputs, session.get_outputs()),
    ]:
        assert [(s.name, ORT_TYPE[s.datatype]) for s in specs] == [(a.name, a.type) for a in args]
        assert [s.shape for s in specs] == [tuple(d if isinstance(d, int) else -1 for d in a.shape) for a in args]


@pytest.mark.parametrize("name", list(RUNNABLE_BUILDERS))
def test_facts_agree_with_onnx_and_onnxruntime(built: dict[str, bytes], name: str) -> None:
    _assert_facts_agree(built[name], read_graph_facts(built[name]))


def test_initializers_listed_as_inputs_are_not_inputs() -> None:
    """IR 3 models list weights among inputs; clients must not be asked to send them."""
    data = _ir3_model_with_initializer_inputs()
    facts = read_graph_facts(data)
    assert [s.name for s in facts.inputs] == ["x"]
    assert facts.ir_version == 3
    _assert_facts_agree(data, facts)


ONNX_TEST_MODELS = sorted((Path(onnx.__file__).parent / "backend" / "test" / "data").rglob("model.onnx"))


def test_real_onnx_models_read_like_onnx() -> None:
    """The subset must parse models it did not write: onnx's own backend test models."""
    read = 0
    for path in ONNX_TEST_MODELS:
        data = path.read_bytes()
        model = onnx.load_from_string(data)
        values = [*model.graph.input, *model.graph.output]
        if any(v.type.tensor_type.elem_type == TensorProto.STRING for v in values):
            with pytest.raises(ModelFormatError, match="STRING"):
                read_graph_facts(data)
            continue
        facts = read_graph_facts(data)
        initializers = {t.name for t in model.graph.initializer}
        graph_inputs = [v.name for v in model.graph.input if v.name not in initializers]
        assert [s.name for s in facts.inputs] == graph_inputs, path
        assert [s.name for s in facts.outputs] == [v.name for v in model.graph.output]
        nodes = list(_onnx_nodes(model.graph))
        assert facts.node_count == len(nodes), path
        assert facts.operator_domains == {n.domain for n in nodes}, path
        read += 1
    assert read > 100


# --- malformed and hostile models --------------------------------------------------


def _onnx_model(
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    nodes: list[onnx.NodeProto] | None = None,
    **kwargs: Any,
) -> bytes:
    graph = helper.make_graph(nodes or [], "g", inputs, outputs, **kwargs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def _info(name: str, elem: int = TensorProto.FLOAT, shape: list[Any] | None = None) -> Any:
    return helper.make_tensor_value_info(name, elem, ["n", 3] if shape is None else shape)


def _reject(data: bytes, match: str | None, **kwargs: Any) -> None:
    with pytest.raises(ModelFormatError, match=match):
        read_graph_facts(data, **kwargs)


MLP = build_mlp((4, 8, 2))


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(len(MLP) // 2, id="half"),
        pytest.param(len(MLP) - 1, id="last-byte-missing"),
        pytest.param(3, id="three-bytes"),
        pytest.param(0, id="empty"),
    ],
)
def test_truncated_model_rejected(cut: int) -> None:
    with pytest.raises(ModelFormatError):
        read_graph_facts(MLP[:cut])


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xff" * 64, id="all-ff"),
        pytest.param(b"not an onnx model at all", id="text"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + bytes(range(256)), id="png-header"),
        pytest.param(b"\x3a\xff\xff\xff\xff\x0f", id="graph-length-past-end"),
        pytest.param(b"PK\x03\x04" + b"\x00" * 40, id="zip-header"),
    ],
)
def test_garbage_bytes_rejected(data: bytes) -> None:
    with pytest.raises(ModelFormatError):
        read_graph_facts(data)


@pytest.mark.parametrize(
    ("elem", "label"),
    [
        pytest.param(TensorProto.STRING, "8 (STRING)", id="string"),
        pytest.param(TensorProto.BFLOAT16, "16 (BFLOAT16)", id="bfloat16"),
        pytest.param(TensorProto.COMPLEX64, "14 (COMPLEX64)", id="complex64"),
        pytest.param(TensorProto.FLOAT8E4M3FN, "17 (FLOAT8E4M3FN)", id="float8"),
        pytest.param(TensorProto.UNDEFINED, "0 (UNDEFINED)", id="undefined"),
        pytest.param(999, "999 (unknown)", id="out-of-range"),
    ],
)
def test_unsupported_element_type_rejected(elem: int, label: str) -> None:
    data = _onnx_model([_info("x", elem)], [_info("y")])
    _reject(data, rf"input 'x' has ONNX element type {re.escape(label)}.*supported: BOOL")


def test_string_input_rejected() -> None:
    data = _onnx_model(
        [_info("text", TensorProto.STRING)],
        [_info("y")],
        [helper.make_node("Size", ["text"], ["y"])],
    )
    _reject(
        data,
        r"input 'text' has ONNX element type 8 \(STRING\), which IRE does not serve",
    )


def test_string_output_rejected() -> None:
    data = _onnx_model([_info("x")], [_info("y", TensorProto.STRING)])
    _reject(data, r"output 'y' has ONNX element type 8 \(STRING\)")


def test_missing_shape_rejected() -> None:
    shapeless = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    assert not shapeless.type.tensor_type.HasField("shape")
    _reject(_onnx_model([shapeless], [_info("y")]), "input 'x' has no shape")
    _reject(
        _onnx_model([_info("x")], [helper.make_tensor_value_info("y", 1, None)]),
        "output 'y'",
    )


def test_unknown_dims_and_scalars_accepted() -> None:
    unknown = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])
    scalar = _info("y", shape=[])
    facts = read_graph_facts(_onnx_model([unknown], [scalar]))
    assert facts.inputs[0].shape == (-1, 3)
    assert facts.outputs[0].shape == ()


def test_negative_dim_rejected() -> None:
    _reject(_onnx_model([_info("x", shape=[2, -5])], [_info("y")]), "dimension 1 is -5")


def test_duplicate_input_name_rejected() -> None:
    _reject(
        _onnx_model([_info("x"), _info("x")], [_info("y")]),
        "input name 'x' appears more",
    )


def test_duplicate_output_name_rejected() -> None:
    _reject(
        _onnx_model([_info("x")], [_info("y"), _info("y")]),
        "output name 'y' appears more",
    )


def test_non_tensor_input_rejected() -> None:
    seq = helper.make_tensor_sequence_value_info("x", TensorProto.FLOAT, ["n"])
    _reject(_onnx_model([seq], [_info("y")]), "input 'x' is not a tensor")


def test_empty_input_name_rejected() -> None:
    _reject(_onnx_model([_info("")], [_info("y")]), "empty name")


def test_model_without_graph_rejected() -> None:
    model = helper.make_model(helper.make_graph([], "g", [], []))
    model.ClearField("graph")
    _reject(model.SerializeToString(), "no graph")


def test_no_inputs_rejected() -> None:
    _reject(_onnx_model([], [_info("y")]), "no inputs")


def test_only_initializer_inputs_rejected() -> None:
    weight = numpy_helper.from_array(np.zeros((3,), np.float32), "x")
    _reject(
        _onnx_model([_info("x", shape=[3])], [_info("y")], initializer=[weight]),
        "no inputs",
    )


def test_no_outputs_rejected() -> None:
    _reject(_onnx_model([_info("x")], []), "no outputs")


def test_invalid_utf8_name_rejected() -> None:
    """upb returns invalid UTF-8 in a proto2 string as bytes; that must not leak out."""
    model = pb.ModelProto.FromString(build_identity("FP32"))
    raw = model.SerializeToString().replace(b"\x0a\x01x", b"\x0a\x01\xff")
    assert raw != model.SerializeToString()
    _reject(raw, "not valid UTF-8")


def test_duplicate_opset_domain_rejected() -> None:
    model = onnx.load_from_string(build_identity("FP32"))
    model.opset_import.append(helper.make_opsetid("ai.onnx", 11))
    _reject(model.SerializeToString(), r"domain '' twice: versions 17 and 11")


def test_oversized_model_rejected() -> None:
    _reject(
        MLP,
        rf"{len(MLP)} bytes, over the limit of {len(MLP) - 1}",
        max_bytes=len(MLP) - 1,
    )
    assert read_graph_facts(MLP, max_bytes=len(MLP)).byte_size == len(MLP)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field; concatenated messages merge when parsed."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _nested_if_model(depth: int) -> bytes:
    """A model whose If nodes nest ``depth`` subgraphs deep, assembled as raw bytes.

    Raw bytes, because protobuf itself refuses to build or parse past 100 levels.
    """
    graph = pb.GraphProto(name="leaf").SerializeToString()
    for _ in range(depth):
        attr = pb.AttributeProto(name="then_branch", type=pb.AttributeProto.GRAPH)
        attr_bytes = attr.SerializeToString() + _field(6, graph)
        node = pb.NodeProto(op_type="If", input=["c"], output=["y"]).SerializeToString()
        graph = _field(1, node + _field(5, attr_bytes))
    top = pb.ModelProto.FromString(build_identity("BOOL", (1,)))
    return top.SerializeToString() + _field(7, graph)


def test_nesting_at_the_limit_accepted() -> None:
    facts = read_graph_facts(_nested_if_model(MAX_SUBGRAPH_DEPTH))
    assert facts.node_count == 1 + MAX_SUBGRAPH_DEPTH


@pytest.mark.parametrize(
    ("depth", "match"),
    [
        pytest.param(MAX_SUBGRAPH_DEPTH + 1, "over the limit", id="just-past-the-limit"),
        pytest.param(40, None, id="past-protobuf-limit"),
        pytest.param(5_000, None, id="stack-exhaustion"),
    ],
)
def test_deeply_nested_subgraph_rejected(depth: int, match: str | None) -> None:
    _reject(_nested_if_model(depth), match)


def _if_node(branch_nodes: list[onnx.NodeProto], **kwargs: Any) -> onnx.NodeProto:
    out = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])
    then = helper.make_graph(branch_nodes, "then", [], [out], **kwargs)
    other = helper.make_graph([helper.make_node("Constant", [], ["b"], value_float=0.0)], "e", [], [out])
    return helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)


def test_custom_domain_reported() -> None:
    facts = read_graph_facts(build_custom_domain_model())
    assert facts.operator_domains == {"com.example.custom"}
    assert ("com.example.custom", 1) in facts.opsets


def test_custom_domain_inside_if_subgraph_reported() -> None:
    evil = helper.make_node("Evil", [], ["b"], domain="com.example.custom")
    data = _onnx_model([_info("c", TensorProto.BOOL, [])], [_info("y", shape=[1])], [_if_node([evil])])
    facts = read_graph_facts(data)
    assert facts.operator_domains == {"", "com.example.custom"}
    assert facts.node_count == 3


def test_custom_domain_inside_function_reported() -> None:
    evil = helper.make_node("Evil", ["a"], ["b"], domain="com.example.custom")
    function = helper.make_function(
        "local",
        "Wrapper",
        ["a"],
        ["b"],
        [evil],
        [helper.make_opsetid("com.example.custom", 1)],
    )
    call = helper.make_node("Wrapper", ["x"], ["y"], domain="local")
    graph = helper.make_graph([call], "g", [_info("x")], [_info("y")])
    model = helper.make_model(graph, functions=[function])
    assert read_graph_facts(model.SerializeToString()).operator_domains == {
        "local",
        "com.example.custom",
    }


def test_default_domain_alias_folded() -> None:
    """'ai.onnx' is the default domain; a policy on '' must see it as ''."""
    node = helper.make_node("Identity", ["x"], ["y"], domain="ai.onnx")
    graph = helper.make_graph([node], "g", [_info("x")], [_info("y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx", 17)])
    facts = read_graph_facts(model.SerializeToString())
    assert facts.operator_domains == {""}
    assert facts.opsets == (("", 17),)


def test_external_data_reported(tmp_path: Path) -> None:
    weight = numpy_helper.from_array(np.ones((64, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [_info("x", shape=["n", 64])],
        [_info("y")],
        [weight],
    )
    path = tmp_path / "model.onnx"
    onnx.save_model(
        helper.make_model(graph),
        path,
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (tmp_path / "weights.bin").exists()
    assert read_graph_facts(path.read_bytes()).external_data == ("weights.bin",)


def test_external_data_in_subgraph_and_attribute_reported() -> None:
    """A worker must never be pointed at host files, wherever the reference hides."""

    def external(name: str, location: str) -> TensorProto:
        tensor = numpy_helper.from_array(np.zeros((1,), np.float32), name)
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        tensor.external_data.add(key="location", value=location)
        return tensor

    constant = helper.make_node("Constant", [], ["b"], value=external("k", "/etc/shadow"))
    node = _if_node([constant], initializer=[external("i", "../../secret")])
    data = _onnx_model([_info("c", TensorProto.BOOL, [])], [_info("y", shape=[1])], [node])
    facts = read_graph_facts(data)
    assert sorted(facts.external_data) == ["../../secret", "/etc/shadow"]


# --- property tests ----------------------------------------------------------------


def _facts_or_format_error(data: bytes) -> None:
    try:
        facts = read_graph_facts(data)
    except ModelFormatError:
        return
    assert isinstance(facts, GraphFacts)
    assert facts.inputs
    assert facts.outputs
    assert all(isinstance(s.name, str) for s in facts.inputs + facts.outputs)


@given(st.binary(max_size=4096))
def test_arbitrary_bytes_give_facts_or_format_error(data: bytes) -> None:
    _facts_or_format_error(data)


SMALL_MODELS = [
    build_int64_model(),
    build_identity("FP16"),
    _ir3_model_with_initializer_inputs(),
]


@settings(max_examples=300)
@given(
    st.sampled_from(SMALL_MODELS),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    st.integers(0, 10**6),
)
def test_mutated_models_give_facts_or_format_error(model: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    """Valid models with bytes flipped and cut reach deeper than random bytes do."""
    data = bytearray(model)
    for index, value in edits:
        data[index % len(data)] = value
    _facts_or_format_error(bytes(data[: len(data) - cut % 16]))
