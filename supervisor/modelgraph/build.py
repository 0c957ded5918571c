"""Build small, valid ONNX models as bytes, for the demo, the tests and the benchmarks.

They are written with IRE's protobuf subset of ONNX's schema, so the ``onnx`` package is
not needed at run time. Every model is IR version 8 with default-domain opset 17.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy
from numpy.typing import NDArray

from protos import onnx_subset_pb2 as pb
from supervisor.modelgraph.dtypes import OIP_TO_NUMPY, OIP_TO_ONNX

__all__ = [
    "build_batch_centred",
    "build_custom_domain_model",
    "build_identity",
    "build_int64_model",
    "build_large_mlp",
    "build_mlp",
    "build_view_flatten",
]

IR_VERSION = 8
OPSET = 17
_BATCH = "batch"
_NUMPY_TO_ONNX = {OIP_TO_NUMPY[oip]: onnx for oip, onnx in OIP_TO_ONNX.items()}


def build_mlp(
    layers: Sequence[int] = (64, 256, 256, 10),
    *,
    seed: int = 0,
    input_name: str = "input",
    output_name: str = "output",
) -> bytes:
    """An FP32 MLP: ``Gemm`` per layer, ``Relu`` between, input ``[batch, layers[0]]``.

    Weights are ``normal / sqrt(fan_in)`` from ``numpy.random.default_rng(seed)``.
    """
    if len(layers) < 2 or any(width < 1 for width in layers):
        raise ValueError(f"layers must be two or more positive widths, got {tuple(layers)}")
    if input_name == output_name or not input_name or not output_name:
        raise ValueError(f"input and output names must differ and be non-empty, got {input_name!r} and {output_name!r}")
    rng = numpy.random.default_rng(seed)
    graph = pb.GraphProto(name="mlp")
    current = input_name
    last = len(layers) - 2
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(layers)):
        weight = rng.standard_normal((fan_in, fan_out)) / numpy.sqrt(fan_in)
        bias = rng.standard_normal(fan_out) * 0.1
        graph.initializer.append(_tensor(f"/layer{i}/weight", weight.astype("<f4")))
        graph.initializer.append(_tensor(f"/layer{i}/bias", bias.astype("<f4")))
        gemm_out = output_name if i == last else f"/layer{i}/gemm"
        graph.node.append(_node("Gemm", [current, f"/layer{i}/weight", f"/layer{i}/bias"], [gemm_out]))
        current = gemm_out
        if i != last:
            current = f"/layer{i}/relu"
            graph.node.append(_node("Relu", [gemm_out], [current]))
    graph.input.append(_value(input_name, "FP32", (-1, layers[0])))
    graph.output.append(_value(output_name, "FP32", (-1, layers[-1])))
    return _model(graph)


def build_large_mlp(hidden: int = 2048, layers: int = 4, *, seed: int = 0) -> bytes:
    """A square FP32 MLP of ``layers`` Gemms, ``hidden x hidden`` each."""
    if layers < 1:
        raise ValueError(f"layers must be at least 1, got {layers}")
    return build_mlp((hidden,) * (layers + 1), seed=seed)


def build_int64_model(width: int = 4) -> bytes:
    """``tokens`` INT64 ``[batch, width]`` -> ``scores = tokens * 3 + 1`` (INT64) and
    ``total`` = the row sum as FP32 ``[batch, 1]``."""
    graph = pb.GraphProto(name="int64_model")
    graph.initializer.extend(
        [
            _tensor("three", numpy.array(3, dtype="<i8")),
            _tensor("one", numpy.array(1, dtype="<i8")),
            _tensor("axes", numpy.array([1], dtype="<i8")),
        ]
    )
    graph.node.extend(
        [
            _node("Mul", ["tokens", "three"], ["tripled"]),
            _node("Add", ["tripled", "one"], ["scores"]),
            _node("Cast", ["tokens"], ["tokens_fp32"], to=pb.TensorProto.FLOAT),
            _node("ReduceSum", ["tokens_fp32", "axes"], ["total"], keepdims=1),
        ]
    )
    graph.input.append(_value("tokens", "INT64", (-1, width)))
    graph.output.append(_value("scores", "INT64", (-1, width)))
    graph.output.append(_value("total", "FP32", (-1, 1)))
    return _model(graph)


def build_identity(datatype: str, shape: Sequence[int] = (-1, 3)) -> bytes:
    """One ``Identity`` from ``x`` to ``y`` of OIP ``datatype``; -1 is a dynamic dim."""
    if datatype not in OIP_TO_ONNX:
        raise ValueError(f"datatype {datatype!r} is not one of {sorted(OIP_TO_ONNX)}")
    graph = pb.GraphProto(name="identity", node=[_node("Identity", ["x"], ["y"])])
    graph.input.append(_value("x", datatype, shape))
    graph.output.append(_value("y", datatype, shape))
    return _model(graph)


def build_tile(width: int = 64, times: int = 4096, *, input_name: str = "x", output_name: str = "y") -> bytes:
    """``Tile`` of FP32 ``x [batch, width]`` ``times`` over along its rows: ``y [batch,
    width * times]``. A small input and a large output, for the output region's benchmark."""
    if width < 1 or times < 1:
        raise ValueError(f"width and times must be positive, got {width} and {times}")
    graph = pb.GraphProto(name="tile", node=[_node("Tile", [input_name, "repeats"], [output_name])])
    graph.initializer.append(_tensor("repeats", numpy.array([1, times], dtype="<i8")))
    graph.input.append(_value(input_name, "FP32", (-1, width)))
    graph.output.append(_value(output_name, "FP32", (-1, width * times)))
    return _model(graph)


def build_batch_centred(width: int = 4) -> bytes:
    """``y = x - mean(x over the batch)``, FP32 ``[batch, width]``: a model whose rows are
    not independent (a call of one row alone always gets zeros), for dynamic batching tests."""
    graph = pb.GraphProto(name="batch_centred")
    mean = _node("ReduceMean", ["x"], ["mean"], keepdims=1)
    mean.attribute.append(pb.AttributeProto(name="axes", type=pb.AttributeProto.INTS, ints=[0]))
    graph.node.extend([mean, _node("Sub", ["x", "mean"], ["y"])])
    graph.input.append(_value("x", "FP32", (-1, width)))
    graph.output.append(_value("y", "FP32", (-1, width)))
    return _model(graph)


def build_view_flatten(channels: int = 2, width: int = 6, outputs: int = 4, *, seed: int = 0) -> bytes:
    """``x.view(x.size(0), -1) @ w``, FP32 ``[batch, channels, width]`` -> ``[batch, outputs]``,
    with the nodes PyTorch exports for the view: the batch size is read from the input's
    shape (Shape, Gather, Unsqueeze, Concat) and becomes the Reshape's first dimension."""
    rng = numpy.random.default_rng(seed)
    graph = pb.GraphProto(name="view_flatten")
    graph.node.extend(
        [
            _node("Shape", ["x"], ["shape_x"]),
            _node("Gather", ["shape_x", "zero"], ["n"], axis=0),
            _node("Unsqueeze", ["n", "axes0"], ["n1"]),
            _node("Concat", ["n1", "minus_one"], ["rows_shape"], axis=0),
            _node("Reshape", ["x", "rows_shape"], ["rows"]),
            _node("MatMul", ["rows", "w"], ["y"]),
        ]
    )
    graph.initializer.extend(
        [
            _tensor("zero", numpy.array(0, dtype=numpy.int64)),
            _tensor("axes0", numpy.array([0], dtype=numpy.int64)),
            _tensor("minus_one", numpy.array([-1], dtype=numpy.int64)),
            _tensor("w", rng.standard_normal((channels * width, outputs)).astype(numpy.float32)),
        ]
    )
    graph.input.append(_value("x", "FP32", (-1, channels, width)))
    graph.output.append(_value("y", "FP32", (-1, outputs)))
    return _model(graph)


def build_custom_domain_model() -> bytes:
    """One node ``Evil`` of domain ``com.example.custom``, for admission-policy tests.

    No runtime implements that operator, so the model parses but does not load.
    """
    domain = "com.example.custom"
    graph = pb.GraphProto(name="custom_domain")
    graph.node.append(_node("Evil", ["x"], ["y"], domain=domain))
    graph.input.append(_value("x", "FP32", (-1, 3)))
    graph.output.append(_value("y", "FP32", (-1, 3)))
    return _model(graph, extra_opsets={domain: 1})


def _model(graph: pb.GraphProto, extra_opsets: dict[str, int] | None = None) -> bytes:
    model = pb.ModelProto(ir_version=IR_VERSION, producer_name="ire", producer_version="0.1", graph=graph)
    model.opset_import.append(pb.OperatorSetIdProto(domain="", version=OPSET))
    for domain, version in (extra_opsets or {}).items():
        model.opset_import.append(pb.OperatorSetIdProto(domain=domain, version=version))
    return model.SerializeToString()


def _node(
    op_type: str,
    inputs: list[str],
    outputs: list[str],
    *,
    domain: str = "",
    **ints: int,
) -> pb.NodeProto:
    node = pb.NodeProto(op_type=op_type, input=inputs, output=outputs, domain=domain)
    node.name = f"{op_type}:{outputs[0]}"
    for name, value in ints.items():
        node.attribute.append(pb.AttributeProto(name=name, type=pb.AttributeProto.INT, i=value))
    return node


def _tensor(name: str, array: NDArray[Any]) -> pb.TensorProto:
    """An initializer holding ``array`` as little-endian ``raw_data``."""
    return pb.TensorProto(
        name=name,
        dims=array.shape,
        data_type=_NUMPY_TO_ONNX[array.dtype],
        raw_data=array.tobytes(),
    )


def _value(name: str, datatype: str, shape: Sequence[int]) -> pb.ValueInfoProto:
    dims: list[pb.TensorShapeProto.Dimension] = []
    for i, size in enumerate(shape):
        if size == -1:
            dims.append(pb.TensorShapeProto.Dimension(dim_param=_BATCH if i == 0 else f"d{i}"))
        elif size >= 0:
            dims.append(pb.TensorShapeProto.Dimension(dim_value=size))
        else:
            raise ValueError(f"dimension {i} of {name!r} is {size}; expected >= 0 or -1")
    tensor_type = pb.TypeProto.Tensor(elem_type=OIP_TO_ONNX[datatype], shape=pb.TensorShapeProto(dim=dims))
    return pb.ValueInfoProto(name=name, type=pb.TypeProto(tensor_type=tensor_type))
