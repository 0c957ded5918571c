"""Whether a model's rows are independent: row i of every output depends on row i of the inputs only.

Dynamic batching (supervisor/workers/batching.py) runs the concurrent calls of one tenant
on one model as one, stacking their rows. That answers each call as if it ran alone only
when no operator mixes rows: a model that normalises over the batch, reshapes rows
together or reads the batch size would answer differently. ``workers.dynamic_batching =
"auto"`` batches a model only when this proof succeeds.

The proof is conservative. It follows which tensors carry the batch on their first axis
from the graph inputs through the nodes, in order, and accepts only the default-domain
operators listed below, each used in a way that keeps rows apart (a ``Softmax`` over any
axis but the first, a ``MatMul`` by a constant or of two batched stacks of matrices
(attention), a ``Reshape`` that keeps the first dimension or whose new shape, -1 first,
holds exactly one row of a shape it knows (from the declared inputs, through element-wise
operators, convolutions and pooling, ...), a ``Slice``, ``Pad``, ``Split`` or ``Tile``
that leaves the first axis alone, ...). Anything else, a custom domain, a subgraph, an
operator not listed, a shape it cannot know, is "not proven", and the model runs call by
call. Of the ``ai.onnx.ml`` domain (models converted from scikit-learn and the like) it
accepts the predictors and transformers that read an [N, F] input one row at a time. No
library answers this question: ONNX's shape inference gives shapes, not which axis mixes
rows.

The batch size itself may flow only into the first dimension of a ``Reshape``'s new shape
or of an ``Expand``'s: PyTorch exports ``x.view(x.size(0), -1)`` as ``Shape`` ->
``Gather`` -> ``Unsqueeze`` -> ``Concat`` -> ``Reshape``, and a ViT's
``cls_token.expand(x.size(0), -1, -1)`` as such a vector whose -1s ``Equal``, ``Where``
and ``ConstantOfShape`` replace by 1s before ``Expand``. Such shape vectors are followed
element by element through ``Shape``, ``Gather``, ``Slice``, ``Unsqueeze``, ``Squeeze``,
``Concat``, ``Reshape``, ``Cast``, ``Identity``, ``Equal`` (the batch size, at least 1,
is never equal to a negative constant) and ``Where``, and small integer constants are
worked out on the way; any other use of a value computed from the batch size
(``x * x.size(0)``, a comparison of it with 2) is not proven, since it would change with
the number of rows merged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy

from protos import onnx_subset_pb2 as pb

__all__ = ["RowProof", "prove_rows_independent"]

# fmt: off
# Operators that act on each element alone: rows stay apart whatever the shape.
_ELEMENTWISE = frozenset((
    "Abs", "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "BitwiseNot", "Cast", "CastLike", "Ceil", "Celu",
    "Cos", "Cosh", "Dropout", "Elu", "Erf", "Exp", "Floor", "Gelu", "HardSigmoid", "HardSwish", "Identity",
    "IsInf", "IsNaN", "LeakyRelu", "Log", "Mish", "Neg", "Not", "Reciprocal", "Relu", "Round", "Selu",
    "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Softplus", "Softsign", "Sqrt", "Tan", "Tanh",
    "ThresholdedRelu",
))
# Element-wise with numpy broadcasting over two or more inputs.
_BROADCAST = frozenset((
    "Add", "And", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "Clip", "Div", "Equal", "Greater",
    "GreaterOrEqual", "Less", "LessOrEqual", "Max", "Mean", "Min", "Mod", "Mul", "Or", "Pow", "PRelu", "Sub",
    "Sum", "Where", "Xor",
))
# Operators on [N, C, ...] that treat each item of the first axis alone.
_PER_ITEM = frozenset((
    "AveragePool", "BatchNormalization", "Conv", "ConvTranspose", "GlobalAveragePool", "GlobalLpPool",
    "GlobalMaxPool", "InstanceNormalization", "LpNormalization", "LpPool", "LRN", "MaxPool",
))
_REDUCE = frozenset((
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
    "ReduceProd", "ReduceSum", "ReduceSumSquare",
))
# fmt: on
# Operators whose axis moved from an attribute to an input at this default-domain opset.
_AXES_INPUT_SINCE = {"ReduceSum": 13, "Squeeze": 13, "Unsqueeze": 13, **dict.fromkeys(_REDUCE - {"ReduceSum"}, 18)}


class _NotProvenError(Exception):
    pass


@dataclass(frozen=True)
class RowProof:
    """``independent`` when every output's rows follow from the same rows of the inputs;
    otherwise ``reason`` names the first node or tensor the proof could not pass."""

    independent: bool
    reason: str = ""


@dataclass(frozen=True)
class _Batched:
    rank: int  # the batch is axis 0
    # The dimensions after the first, where the proof knows them (from the graph's declared
    # inputs, through the operators that keep or compute them); None: not known.
    dims: tuple[int, ...] | None = None


@dataclass(frozen=True)
class _Static:
    shape: tuple[int, ...] | None  # None: not known
    values: tuple[int, ...] | None = None  # an integer constant's values, when small


# The elements of a shape vector that are not integer constants.
_N = "the batch size"
# A dimension of a batched tensor after the first, or another value worked out from shapes
# (an Equal of two such): not known, but the same whatever the batch size.
_DIM = "a dimension of a batched tensor after the first"


@dataclass(frozen=True)
class _Dims:
    """A small integer vector (a scalar when ``scalar``) computed from a batched tensor's
    shape: each element an integer constant, ``_N`` or ``_DIM``."""

    elems: tuple[int | str, ...]
    scalar: bool = False


_Value = _Batched | _Static | _Dims


class _Op(NamedTuple):
    node: pb.NodeProto
    attrs: dict[str, pb.AttributeProto]
    ins: list[_Value]
    opset: int
    where: str  # names the node in a reason


def prove_rows_independent(model: pb.ModelProto) -> RowProof:
    """Prove, for a parsed model, that its rows never mix; see the module docstring."""
    try:
        _prove(model)
    except _NotProvenError as exc:
        return RowProof(False, str(exc))
    return RowProof(True)


def _prove(model: pb.ModelProto) -> None:
    opset = 0
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            opset = entry.version
    if not opset:
        raise _NotProvenError("no default-domain opset")
    graph = model.graph
    values: dict[str, _Value] = {"": _Static(None)}  # '' names an absent optional input
    for tensor in graph.initializer:
        values[tensor.name] = _constant(tensor)
    if graph.sparse_initializer:
        raise _NotProvenError("sparse initializers")
    for value in graph.input:
        if value.name in values:
            continue
        dims = value.type.tensor_type.shape.dim
        if not dims or dims[0].HasField("dim_value"):
            raise _NotProvenError(f"input {value.name!r} has no dynamic first dimension")
        known = all(d.HasField("dim_value") for d in dims[1:])
        values[value.name] = _Batched(len(dims), tuple(d.dim_value for d in dims[1:]) if known else None)
    for index, node in enumerate(graph.node):
        where = f"node {index} ({node.op_type} {node.name!r})"
        if node.domain not in ("", "ai.onnx", _ML):
            raise _NotProvenError(f"{where}: operator domain {node.domain!r}")
        try:
            ins = [values[name] for name in node.input]
        except KeyError as exc:
            raise _NotProvenError(f"{where}: input {exc.args[0]!r} is not defined before it") from None
        try:
            outs = _node(node, ins, opset, where)
        except (IndexError, ValueError) as exc:  # a node missing an input it needs, say
            raise _NotProvenError(f"{where}: malformed node ({type(exc).__name__}: {exc})") from None
        if len(outs) < len(node.output):
            raise _NotProvenError(f"{where}: more outputs than the proof knows")
        for name, out in zip(node.output, outs, strict=False):
            values[name] = out
    for value in graph.output:
        if not isinstance(values.get(value.name), _Batched):
            raise _NotProvenError(f"output {value.name!r} does not carry the batch on its first axis")


def _node(node: pb.NodeProto, ins: list[_Value], opset: int, where: str) -> list[_Value]:
    op = node.op_type
    attrs = {a.name: a for a in node.attribute}
    if any(a.HasField("g") or len(a.graphs) for a in node.attribute):
        raise _NotProvenError(f"{where}: subgraphs")
    if node.domain == _ML:
        ins = [_as_static(v, op, where) for v in ins]
        if not any(isinstance(v, _Batched) for v in ins):
            return [_Static(None)] * max(1, len(node.output))
        ml_rule = _ML_RULES.get(op)
        if ml_rule is None:
            raise _NotProvenError(f"{where}: operator {_ML}.{op} is not one the proof knows keeps rows apart")
        return ml_rule(_Op(node, attrs, ins, opset, where))
    if op == "Constant":
        if "value" in attrs:
            return [_constant(attrs["value"].t)]
        if "value_ints" in attrs:
            ints = tuple(attrs["value_ints"].ints)
            return [_Static((len(ints),), ints)]
        return [_Static(None)]
    batched = [v for v in ins if isinstance(v, _Batched)]
    if op == "Shape" and batched:
        return [_shape_of(_Op(node, attrs, ins, opset, where))]
    if op == "Expand" and len(ins) == 2 and isinstance(ins[1], _Dims):
        return [_expand_to_batch(_Op(node, attrs, ins, opset, where))]
    if any(isinstance(v, _Dims) for v in ins):
        if not batched and op in _DIMS_RULES:
            return [_DIMS_RULES[op](_Op(node, attrs, ins, opset, where))]
        if not (batched and op == "Reshape" and len(ins) == 2 and isinstance(ins[1], _Dims)):
            ins = [_as_static(v, op, where) for v in ins]
    if not batched:
        if op in ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"):
            raise _NotProvenError(f"{where}: random values")
        # A computation on constants alone; small integer ones are worked out, as shape
        # computations need them (PyTorch's expand(B, -1, -1) builds its -1s so).
        folded = _fold(_Op(node, attrs, ins, opset, where))
        return [folded] if folded is not None else [_Static(None)] * max(1, len(node.output))
    rule = _RULES.get(op)
    if rule is None:
        raise _NotProvenError(f"{where}: operator {op} is not one the proof knows keeps rows apart")
    return rule(_Op(node, attrs, ins, opset, where))


def _given(n: _Op, index: int) -> bool:
    """Whether the node's optional input ``index`` is given (absent, or named '')."""
    return len(n.node.input) > index and bool(n.node.input[index])


def _int(attrs: dict[str, pb.AttributeProto], name: str, default: int) -> int:
    return attrs[name].i if name in attrs else default


def _axis(axis: int, rank: int, where: str) -> int:
    if not -rank <= axis < rank:
        raise _NotProvenError(f"{where}: axis {axis} outside rank {rank}")
    return axis + rank if axis < 0 else axis


def _only_first_batched(ins: list[_Value], where: str) -> _Batched:
    first = ins[0] if ins else None
    if not isinstance(first, _Batched) or any(isinstance(v, _Batched) for v in ins[1:]):
        raise _NotProvenError(f"{where}: the batch reaches an input other than the first")
    return first


def _elementwise(n: _Op) -> list[_Value]:
    node, ins, where = n.node, n.ins, n.where
    x = _only_first_batched(ins, where)
    return [_Batched(x.rank, x.dims)] * len(node.output)


def _broadcast(n: _Op) -> list[_Value]:
    ins, where = n.ins, n.where
    ranks = {v.rank for v in ins if isinstance(v, _Batched)}
    if len(ranks) != 1:
        raise _NotProvenError(f"{where}: batched inputs of different ranks {sorted(ranks)}")
    rank = ranks.pop()
    for v in ins:
        # A constant shallower than the batch broadcasts over the rows; one as deep only
        # if its first axis is 1 (else each row would meet a different row of it); one
        # deeper would put its own axes in front of the batch.
        if isinstance(v, _Static) and (
            v.shape is None or len(v.shape) > rank or (len(v.shape) == rank and v.shape[0] != 1)
        ):
            raise _NotProvenError(f"{where}: a constant of shape {v.shape} meets the batch axis")
    return [_Batched(rank, _broadcast_dims(ins))]


def _broadcast_dims(ins: list[_Value]) -> tuple[int, ...] | None:
    """The output's row dimensions when every batched input has the same known ones and no
    constant widens them (each of its dimensions is 1 or the same as theirs)."""
    dims = {v.dims for v in ins if isinstance(v, _Batched)}
    known = dims.pop() if len(dims) == 1 else None
    if known is None:
        return None
    for v in ins:
        if isinstance(v, _Static):
            if v.shape is None:
                return None
            tail = v.shape[len(v.shape) - min(len(v.shape), len(known)) :]  # aligned with the row's dimensions
            if any(c not in (1, d) for c, d in zip(tail, known[len(known) - len(tail) :], strict=True)):
                return None
    return known


def _matmul(n: _Op) -> list[_Value]:
    ins, where = n.ins, n.where
    a, b = ins[0], ins[1]
    if isinstance(a, _Batched) and isinstance(b, _Batched):
        # A stack of matrices per item times another (attention's Q @ K^T, say): matmul
        # broadcasts over the leading axes, so with equal ranks of 3 or more the batch
        # axis of one meets the same axis of the other, item by item. At rank 2 each
        # would be one matrix of all the batch's rows.
        if a.rank != b.rank or a.rank < 3:
            raise _NotProvenError(f"{where}: MatMul of two batched tensors of ranks {a.rank} and {b.rank}")
        return [_Batched(a.rank)]
    a = _only_first_batched(ins, where)
    if a.rank < 2 or not isinstance(b, _Static) or b.shape is None or len(b.shape) != 2:
        raise _NotProvenError(f"{where}: only a batched matrix times a constant matrix keeps rows apart")
    return [_Batched(a.rank, (*a.dims[:-1], b.shape[1]) if a.dims is not None else None)]


def _gemm(n: _Op) -> list[_Value]:
    attrs, ins, where = n.attrs, n.ins, n.where
    a = _only_first_batched(ins, where)
    if a.rank != 2 or _int(attrs, "transA", 0):
        raise _NotProvenError(f"{where}: Gemm with a transposed or non-matrix batched input")
    if len(ins) > 2:
        c = ins[2]
        assert isinstance(c, _Static)
        if c.shape is None or len(c.shape) > 2 or (len(c.shape) == 2 and c.shape[0] != 1):
            raise _NotProvenError(f"{where}: Gemm's C of shape {c.shape} meets the batch axis")
    b = ins[1]
    if isinstance(b, _Static) and b.shape is not None and len(b.shape) == 2:
        return [_Batched(2, (b.shape[0] if _int(attrs, "transB", 0) else b.shape[1],))]
    return [_Batched(2)]


def _per_item(n: _Op) -> list[_Value]:
    node, attrs, ins, where = n.node, n.attrs, n.ins, n.where
    x = _only_first_batched(ins, where)
    if len(node.output) != 1 or _int(attrs, "training_mode", 0):
        # MaxPool's indices count across the whole batch; training statistics mix rows.
        raise _NotProvenError(f"{where}: {node.op_type} with more than one output or in training mode")
    if x.rank < 3 and node.op_type not in ("BatchNormalization", "LpNormalization"):
        raise _NotProvenError(f"{where}: {node.op_type} on rank {x.rank}")
    if node.op_type == "LpNormalization" and _axis(_int(attrs, "axis", -1), x.rank, where) == 0:
        raise _NotProvenError(f"{where}: normalised over the batch axis")
    return [_Batched(x.rank, _per_item_dims(n, x))]


# Operators on [N, C, ...] whose output has the input's shape.
_SAME_SHAPE = frozenset(("BatchNormalization", "InstanceNormalization", "LpNormalization", "LRN"))


def _per_item_dims(n: _Op, x: _Batched) -> tuple[int, ...] | None:
    """A per-item operator's row dimensions, from its input's and its attributes, as the
    ONNX operator definitions give them; None where the proof does not work them out
    (a pool with ``ceil_mode``, an unknown kernel or input, ``ConvTranspose`` with an
    ``output_shape`` that is not one size per spatial axis)."""
    op, attrs, dims = n.node.op_type, n.attrs, x.dims
    if dims is None:
        return None
    if op in _SAME_SHAPE:
        return dims
    if op.startswith("Global"):  # [C, 1, 1, ...]
        return (dims[0], *([1] * (len(dims) - 1)))
    if op == "ConvTranspose":
        return _conv_transpose_dims(n, dims)
    spatial = dims[1:]
    if op == "Conv":
        weight = _weight_shape(n, dims)
        if weight is None:
            return None
        channels, kernel = weight[0], weight[2:]
    elif op in ("MaxPool", "AveragePool", "LpPool") and not _int(attrs, "ceil_mode", 0) and "kernel_shape" in attrs:
        channels, kernel = dims[0], tuple(attrs["kernel_shape"].ints)
    else:
        return None
    window = _window(attrs, kernel, len(spatial))
    if window is None:
        return None
    strides, dilations, pads, auto_pad = window
    k = len(spatial)
    out = []
    for i, size in enumerate(spatial):
        reach = dilations[i] * (kernel[i] - 1) + 1  # the input span one output element reads
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out.append(-(-size // strides[i]))
        elif auto_pad == "VALID":
            out.append((size - reach) // strides[i] + 1)
        elif auto_pad == "NOTSET":
            out.append((size + pads[i] + pads[i + k] - reach) // strides[i] + 1)
        else:
            return None
    if any(d < 1 for d in out):
        return None
    return (channels, *out)


def _weight_shape(n: _Op, dims: tuple[int, ...]) -> tuple[int, ...] | None:
    """The shape of a (transposed) convolution's constant weights, when it fits the input
    and the ``kernel_shape`` attribute."""
    weight = n.ins[1] if len(n.ins) > 1 else None
    if not isinstance(weight, _Static) or weight.shape is None or len(weight.shape) != len(dims) + 1:
        return None
    if "kernel_shape" in n.attrs and tuple(n.attrs["kernel_shape"].ints) != weight.shape[2:]:
        return None
    return weight.shape


def _window(
    attrs: dict[str, pb.AttributeProto], kernel: tuple[int, ...], k: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], str] | None:
    """A convolution's or pool's strides, dilations, pads and auto_pad over ``k`` spatial
    axes, with ONNX's defaults; None when they do not fit ``kernel`` or are out of range."""
    strides = tuple(attrs["strides"].ints) if "strides" in attrs else (1,) * k
    dilations = tuple(attrs["dilations"].ints) if "dilations" in attrs else (1,) * k
    pads = tuple(attrs["pads"].ints) if "pads" in attrs else (0,) * (2 * k)
    auto_pad = attrs["auto_pad"].s.decode() if "auto_pad" in attrs else "NOTSET"
    if len(kernel) != k or len(strides) != k or len(dilations) != k or len(pads) != 2 * k:
        return None
    if any(v < 1 for v in (*kernel, *strides, *dilations)) or any(p < 0 for p in pads):
        return None
    return strides, dilations, pads, auto_pad


def _conv_transpose_dims(n: _Op, dims: tuple[int, ...]) -> tuple[int, ...] | None:
    """ConvTranspose's row dimensions, as the ONNX operator definition gives them:
    ``stride * (in - 1) + output_padding + dilation * (kernel - 1) + 1 - pads``, ``in *
    stride`` with a SAME ``auto_pad``, or its ``output_shape``."""
    attrs, spatial = n.attrs, dims[1:]
    weight = _weight_shape(n, dims)
    if weight is None:
        return None
    channels, kernel = weight[1] * _int(attrs, "group", 1), weight[2:]
    k = len(spatial)
    if "output_shape" in attrs:
        shape = tuple(attrs["output_shape"].ints)
        return (channels, *shape) if len(shape) == k and all(d >= 1 for d in shape) else None
    window = _window(attrs, kernel, k)
    extra = tuple(attrs["output_padding"].ints) if "output_padding" in attrs else (0,) * k
    if window is None or len(extra) != k or any(v < 0 for v in extra):
        return None
    strides, dilations, pads, auto_pad = window
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [size * strides[i] for i, size in enumerate(spatial)]
    elif auto_pad in ("NOTSET", "VALID"):
        if auto_pad == "VALID":
            pads = (0,) * (2 * k)
        out = [
            strides[i] * (size - 1) + extra[i] + dilations[i] * (kernel[i] - 1) + 1 - pads[i] - pads[i + k]
            for i, size in enumerate(spatial)
        ]
    else:
        return None
    if any(d < 1 for d in out):
        return None
    return (channels, *out)


def _softmax(n: _Op) -> list[_Value]:
    node, attrs, ins, opset, where = n.node, n.attrs, n.ins, n.opset, n.where
    x = _only_first_batched(ins, where)
    # Before opset 13 the input was flattened to [prod(d[:axis]), prod(d[axis:])]: any
    # axis after the first still leaves each row in its own row.
    if _axis(_int(attrs, "axis", 1 if opset < 13 else -1), x.rank, where) == 0:
        raise _NotProvenError(f"{where}: {node.op_type} over the batch axis")
    return [_Batched(x.rank, x.dims)]


def _layer_norm(n: _Op) -> list[_Value]:
    node, attrs, ins, where = n.node, n.attrs, n.ins, n.where
    x = _only_first_batched(ins, where)
    if len(node.output) != 1 or _axis(_int(attrs, "axis", -1), x.rank, where) == 0:
        raise _NotProvenError(f"{where}: LayerNormalization over the batch axis or with statistics outputs")
    return [_Batched(x.rank, x.dims)]


def _flatten(n: _Op) -> list[_Value]:
    attrs, ins, where = n.attrs, n.ins, n.where
    x = _only_first_batched(ins, where)
    # The output is [prod(d[:axis]), prod(d[axis:])]: its rows are the batch's only at axis
    # 1 (axis may be -rank..rank, a negative one counted from the end).
    axis = _int(attrs, "axis", 1)
    if (axis + x.rank if axis < 0 else axis) != 1:
        raise _NotProvenError(f"{where}: Flatten at axis {axis} of rank {x.rank}, not at the batch's rows")
    return [_Batched(2, (math.prod(x.dims),) if x.dims is not None else None)]


def _transpose(n: _Op) -> list[_Value]:
    attrs, ins, where = n.attrs, n.ins, n.where
    x = _only_first_batched(ins, where)
    perm = list(attrs["perm"].ints) if "perm" in attrs else list(reversed(range(x.rank)))
    if len(perm) != x.rank or not perm or perm[0] != 0:
        raise _NotProvenError(f"{where}: Transpose moves the batch axis (perm {perm})")
    if x.dims is None or sorted(perm) != list(range(x.rank)):
        return [_Batched(x.rank)]
    return [_Batched(x.rank, tuple(x.dims[axis - 1] for axis in perm[1:]))]


def _axes(n: _Op) -> list[int] | None:
    """The axes of a Reduce, Squeeze or Unsqueeze, from its attribute or its constant input."""
    node, attrs, ins, opset, where = n.node, n.attrs, n.ins, n.opset, n.where
    if opset >= _AXES_INPUT_SINCE.get(node.op_type, 10**6):
        if len(node.input) < 2 or not node.input[1]:
            return None
        axes = ins[1]
        if not isinstance(axes, _Static) or axes.values is None:
            raise _NotProvenError(f"{where}: axes that are not a constant")
        return list(axes.values)
    return list(attrs["axes"].ints) if "axes" in attrs else None


def _reduce(n: _Op) -> list[_Value]:
    node, attrs, ins, where = n.node, n.attrs, n.ins, n.where
    x = _only_first_batched(ins, where)
    axes = _axes(n)
    if not axes:  # no axes: every axis (or none, with noop_with_empty_axes)
        raise _NotProvenError(f"{where}: {node.op_type} over all axes")
    normal = {_axis(a, x.rank, where) for a in axes}
    if 0 in normal:
        raise _NotProvenError(f"{where}: {node.op_type} over the batch axis")
    keep = bool(_int(attrs, "keepdims", 1))
    return [_Batched(x.rank if keep else x.rank - len(normal), _reduced_dims(x, normal, keep))]


def _reduced_dims(x: _Batched, axes: set[int], keep: bool) -> tuple[int, ...] | None:
    """The row dimensions after reducing ``axes`` (of the whole tensor, all after the first)."""
    if x.dims is None:
        return None
    if keep:
        return tuple(1 if i + 1 in axes else d for i, d in enumerate(x.dims))
    return tuple(d for i, d in enumerate(x.dims) if i + 1 not in axes)


def _arg(n: _Op) -> list[_Value]:
    node, attrs, ins, where = n.node, n.attrs, n.ins, n.where
    x = _only_first_batched(ins, where)
    axis = _axis(_int(attrs, "axis", 0), x.rank, where)
    if axis == 0:
        raise _NotProvenError(f"{where}: {node.op_type} over the batch axis")
    keep = bool(_int(attrs, "keepdims", 1))
    return [_Batched(x.rank if keep else x.rank - 1, _reduced_dims(x, {axis}, keep))]


def _squeeze(n: _Op) -> list[_Value]:
    node, ins, where = n.node, n.ins, n.where
    x = _only_first_batched(ins, where)
    axes = _axes(n)
    if not axes:
        raise _NotProvenError(f"{where}: {node.op_type} without axes (a batch of one would lose its axis)")
    unsqueeze = node.op_type == "Unsqueeze"
    rank = x.rank + len(axes) if unsqueeze else x.rank - len(axes)
    normal = {_axis(a, rank if unsqueeze else x.rank, where) for a in axes}
    if 0 in normal:
        raise _NotProvenError(f"{where}: {node.op_type} on the batch axis")
    if x.dims is None or len(normal) != len(axes):
        return [_Batched(rank)]
    if unsqueeze:
        dims = list(x.dims)
        for axis in sorted(normal):
            dims.insert(axis - 1, 1)
        return [_Batched(rank, tuple(dims))]
    if any(x.dims[axis - 1] != 1 for axis in normal):
        return [_Batched(rank)]  # ONNX Runtime refuses it; the proof need not know the shape
    return [_Batched(rank, tuple(d for i, d in enumerate(x.dims) if i + 1 not in normal))]


def _reshape(n: _Op) -> list[_Value]:
    attrs, ins, where = n.attrs, n.ins, n.where
    x = _only_first_batched(ins, where)
    shape = ins[1]
    if isinstance(shape, _Dims):
        # [N, ...]: the first dimension is the batch size and the rest does not depend on
        # it, so each row is reshaped within itself.
        rest = shape.elems[1:]
        if shape.scalar or not shape.elems or shape.elems[0] != _N or _N in rest:
            raise _NotProvenError(f"{where}: Reshape whose shape does not start with the batch size alone")
        return [_Batched(len(shape.elems))]
    if _int(attrs, "allowzero", 0) or not isinstance(shape, _Static) or not shape.values:
        raise _NotProvenError(f"{where}: Reshape that does not keep the first dimension")
    first, rest = shape.values[0], shape.values[1:]
    if first == 0:
        # 0 copies the input's dimension: a first dimension of 0 keeps each row a row, and
        # the rest of the new shape applies within the row.
        return [_Batched(len(shape.values))]
    if first == -1:
        # [-1, d1, d2...] where the d's hold exactly one row (Keras's Flatten, a label
        # reshaped to [-1, 1]): the -1 is then the batch size, and each row stays a row.
        row = () if x.rank == 1 else x.dims  # a rank-1 tensor's rows are single values
        target = list(shape.values)
        if row is None:
            raise _NotProvenError(f"{where}: Reshape to {target} of rows whose shape the proof does not know")
        if any(d <= 0 for d in rest) or math.prod(rest) != math.prod(row):
            raise _NotProvenError(f"{where}: Reshape to {target} of rows shaped {list(row)}: not one row each")
        return [_Batched(len(shape.values), rest)]
    raise _NotProvenError(f"{where}: Reshape that does not keep the first dimension")


def _expand_to_batch(n: _Op) -> _Value:
    """``Expand`` to a shape vector that starts with the batch size alone: each row of the
    output is the input's row (a batched input of the same rank) or the input itself (a
    constant whose first dimension is 1 or that has fewer dimensions), as PyTorch's
    ``cls_token.expand(x.size(0), -1, -1)`` exports it."""
    data, shape, where = n.ins[0], n.ins[1], n.where
    assert isinstance(shape, _Dims)
    elems = shape.elems
    if shape.scalar or not elems or elems[0] != _N or _N in elems[1:]:
        raise _NotProvenError(f"{where}: Expand whose shape does not start with the batch size alone")
    if isinstance(data, _Batched):
        if data.rank != len(elems):
            raise _NotProvenError(f"{where}: Expand that moves the batch axis")
        rows = data.dims
    elif isinstance(data, _Static) and data.shape is not None:
        if len(data.shape) > len(elems) or (len(data.shape) == len(elems) and data.shape[0] != 1):
            raise _NotProvenError(f"{where}: Expand of a constant whose first dimension is not 1")
        padded = (1,) * (len(elems) - len(data.shape)) + data.shape
        rows = padded[1:]
    else:
        raise _NotProvenError(f"{where}: Expand of a value the proof cannot read")
    return _Batched(len(elems), _expanded_dims(rows, elems[1:]))


def _expanded_dims(rows: tuple[int, ...] | None, target: tuple[int | str, ...]) -> tuple[int, ...] | None:
    """Rows of ``rows`` broadcast to ``target`` as Expand does; None where not known."""
    sizes = [t for t in target if isinstance(t, int)]
    if rows is None or len(rows) != len(target) or len(sizes) != len(target):
        return None
    out = []
    for r, t in zip(rows, sizes, strict=True):
        if r != t and 1 not in (r, t):
            return None  # ONNX Runtime refuses it; the proof need not know the shape
        out.append(r if t == 1 else t)
    return tuple(out)


def _expand(n: _Op) -> list[_Value]:
    """``Expand`` of a batched input to a constant shape that leaves its first axis alone."""
    x, shape, where = _only_first_batched(n.ins, n.where), n.ins[1], n.where
    if not isinstance(shape, _Static) or shape.values is None:
        raise _NotProvenError(f"{where}: Expand to a shape the proof cannot read")
    if len(shape.values) != x.rank or shape.values[0] != 1:
        raise _NotProvenError(f"{where}: Expand to {list(shape.values)}, which reaches the batch axis")
    return [_Batched(x.rank, _expanded_dims(x.dims, shape.values[1:]))]


def _concat(n: _Op) -> list[_Value]:
    attrs, ins, where = n.attrs, n.ins, n.where
    if not all(isinstance(v, _Batched) for v in ins) or len({v.rank for v in ins if isinstance(v, _Batched)}) != 1:
        raise _NotProvenError(f"{where}: Concat of a constant or of different ranks with the batch")
    rank = ins[0].rank  # type: ignore[union-attr]
    axis = _axis(_int(attrs, "axis", 0), rank, where)
    if axis == 0:
        raise _NotProvenError(f"{where}: Concat along the batch axis")
    dims = [v.dims for v in ins if isinstance(v, _Batched)]
    known = [d for d in dims if d is not None]
    if len(known) != len(dims) or any(len(d) != rank - 1 for d in known):
        return [_Batched(rank)]
    joined = [sum(d[axis - 1] for d in known) if i == axis - 1 else known[0][i] for i in range(rank - 1)]
    if any(d[i] != joined[i] for d in known for i in range(rank - 1) if i != axis - 1):
        return [_Batched(rank)]  # ONNX Runtime refuses it; the proof need not know the shape
    return [_Batched(rank, tuple(joined))]


def _split(n: _Op) -> list[_Value]:
    node, attrs, ins, where = n.node, n.attrs, n.ins, n.where
    x = _only_first_batched(ins, where)
    axis = _axis(_int(attrs, "axis", 0), x.rank, where)
    if axis == 0:
        raise _NotProvenError(f"{where}: Split along the batch axis")
    count = len(node.output)
    sizes = _split_sizes(n, x.dims[axis - 1] if x.dims is not None else None, count)
    if x.dims is None or sizes is None:
        return [_Batched(x.rank)] * count
    return [_Batched(x.rank, (*x.dims[: axis - 1], size, *x.dims[axis:])) for size in sizes]


def _split_sizes(n: _Op, size: int | None, count: int) -> list[int] | None:
    """The sizes a Split cuts an axis of ``size`` into, as ONNX defines them; None where
    the proof does not know them (ONNX Runtime refuses sizes that do not add up)."""
    if n.opset < 13:
        given = list(n.attrs["split"].ints) if "split" in n.attrs else []
    else:
        given = list(_known_ints(n.ins[1])) if _given(n, 1) else []
        if _given(n, 1) and not given:
            return None
    if size is None:
        return None
    if not given:
        # Equal parts; since opset 18 the last may be smaller.
        part = -(-size // count)
        given = [part] * (count - 1) + [size - part * (count - 1)] if n.opset >= 18 else [size // count] * count
    if len(given) != count or sum(given) != size or any(g < 0 for g in given):
        return None
    return given


def _tile(n: _Op) -> list[_Value]:
    ins, where = n.ins, n.where
    x = _only_first_batched(ins, where)
    repeats = _known_ints(ins[1])
    if len(repeats) != x.rank:
        raise _NotProvenError(f"{where}: Tile whose repeats are not a constant, one per axis")
    # Repeating the batch axis would put copies of one call's rows among the others'.
    if repeats[0] != 1 or any(r < 0 for r in repeats):
        raise _NotProvenError(f"{where}: Tile that repeats the batch axis (repeats {list(repeats)})")
    dims = tuple(d * r for d, r in zip(x.dims, repeats[1:], strict=True)) if x.dims is not None else None
    return [_Batched(x.rank, dims)]


def _depth_space(n: _Op) -> list[_Value]:
    """DepthToSpace and SpaceToDepth: [N, C, H, W] rearranged within each item."""
    node, attrs, ins, where = n.node, n.attrs, n.ins, n.where
    x = _only_first_batched(ins, where)
    block = _int(attrs, "blocksize", 0)
    if x.rank != 4 or block < 1:
        raise _NotProvenError(f"{where}: {node.op_type} on rank {x.rank} or with blocksize {block}")
    if x.dims is None:
        return [_Batched(4)]
    c, h, w = x.dims
    if node.op_type == "DepthToSpace":
        dims = (c // block**2, h * block, w * block) if c % block**2 == 0 else None
    else:
        dims = (c * block**2, h // block, w // block) if h % block == 0 and w % block == 0 else None
    return [_Batched(4, dims)]


def _gather(n: _Op) -> list[_Value]:
    attrs, ins, where = n.attrs, n.ins, n.where
    data, indices = ins[0], ins[1]
    if isinstance(data, _Static) and isinstance(indices, _Batched) and data.shape is not None:
        # Rows of a constant table picked by each row's indices (an embedding).
        if _axis(_int(attrs, "axis", 0), len(data.shape), where) == 0:
            dims = indices.dims + data.shape[1:] if indices.dims is not None else None
            return [_Batched(indices.rank + len(data.shape) - 1, dims)]
    elif isinstance(data, _Batched) and isinstance(indices, _Static) and indices.shape is not None:
        axis = _axis(_int(attrs, "axis", 0), data.rank, where)
        if axis != 0:
            # The axis (of a row: axis - 1) is replaced by the indices' shape.
            dims = data.dims[: axis - 1] + indices.shape + data.dims[axis:] if data.dims is not None else None
            return [_Batched(data.rank + len(indices.shape) - 1, dims)]
    raise _NotProvenError(f"{where}: Gather that moves or indexes the batch axis")


def _slice(n: _Op) -> list[_Value]:
    attrs, ins, opset, where = n.attrs, n.ins, n.opset, n.where
    x = _only_first_batched(ins, where)
    if opset < 10:
        starts = list(attrs["starts"].ints) if "starts" in attrs else []
        ends = list(attrs["ends"].ints) if "ends" in attrs else []
        axes = list(attrs["axes"].ints) if "axes" in attrs else list(range(len(starts)))
        steps = [1] * len(starts)
    else:
        starts = list(_constant_ints(ins[1], where))
        axes = list(_constant_ints(ins[3], where)) if _given(n, 3) else list(range(len(starts)))
        # Ends and steps only size the rows: when they are not constants, the rows' shape
        # is unknown, and the slice still keeps them apart.
        ends = list(_known_ints(ins[2]))
        steps = list(_known_ints(ins[4])) if _given(n, 4) else [1] * len(starts)
    normal = [_axis(a, x.rank, where) for a in axes]
    if 0 in normal:
        raise _NotProvenError(f"{where}: Slice along the batch axis")
    if x.dims is None or not len(starts) == len(ends) == len(normal) == len(steps) or 0 in steps:
        return [_Batched(x.rank)]
    dims = list(x.dims)
    for axis, start, end, step in zip(normal, starts, ends, steps, strict=True):
        # ONNX clamps starts and ends to the axis as Python's slices do.
        dims[axis - 1] = len(range(*slice(start, end, step).indices(dims[axis - 1])))
    return [_Batched(x.rank, tuple(dims))]


def _pad(n: _Op) -> list[_Value]:
    attrs, ins, opset, where = n.attrs, n.ins, n.opset, n.where
    x = _only_first_batched(ins, where)
    pads = list(attrs["pads"].ints) if opset < 11 else list(_constant_ints(ins[1], where))
    given = opset >= 18 and _given(n, 3)
    axes = [_axis(a, x.rank, where) for a in _constant_ints(ins[3], where)] if given else list(range(x.rank))
    if len(pads) != 2 * len(axes):
        raise _NotProvenError(f"{where}: Pad with {len(pads)} pads for {len(axes)} axes")
    if any(axis == 0 and (pads[i] or pads[i + len(axes)]) for i, axis in enumerate(axes)):
        raise _NotProvenError(f"{where}: Pad along the batch axis")
    if x.dims is None:
        return [_Batched(x.rank)]
    dims = list(x.dims)
    for i, axis in enumerate(axes):
        if axis:
            dims[axis - 1] += pads[i] + pads[i + len(axes)]
    if any(d < 0 for d in dims):
        return [_Batched(x.rank)]  # ONNX Runtime refuses it; the proof need not know the shape
    return [_Batched(x.rank, tuple(dims))]


_RULES: dict[str, Callable[[_Op], list[_Value]]] = {
    **dict.fromkeys(_ELEMENTWISE, _elementwise),
    **dict.fromkeys(_BROADCAST, _broadcast),
    **dict.fromkeys(_PER_ITEM, _per_item),
    **dict.fromkeys(_REDUCE, _reduce),
    "ArgMax": _arg,
    "ArgMin": _arg,
    "Concat": _concat,
    "DepthToSpace": _depth_space,
    "Expand": _expand,
    "Flatten": _flatten,
    "Gather": _gather,
    "Gemm": _gemm,
    "Hardmax": _softmax,
    "LayerNormalization": _layer_norm,
    "LogSoftmax": _softmax,
    "MatMul": _matmul,
    "Pad": _pad,
    "Reshape": _reshape,
    "Slice": _slice,
    "Softmax": _softmax,
    "SpaceToDepth": _depth_space,
    "Split": _split,
    "Squeeze": _squeeze,
    "Tile": _tile,
    "Transpose": _transpose,
    "Unsqueeze": _squeeze,
}


def _as_static(value: _Value, op: str, where: str) -> _Value:
    """A shape vector used as an ordinary tensor: allowed only if the batch size is not in it."""
    if not isinstance(value, _Dims):
        return value
    if _N in value.elems:
        raise _NotProvenError(f"{where}: {op} uses the batch size")
    shape = () if value.scalar else (len(value.elems),)
    ints = tuple(e for e in value.elems if isinstance(e, int))
    return _Static(shape, ints if len(ints) == len(value.elems) else None)


def _shape_of(n: _Op) -> _Dims:
    attrs, ins, where = n.attrs, n.ins, n.where
    x = _only_first_batched(ins, where)
    elems: tuple[int | str, ...] = (_N, *[_DIM] * (x.rank - 1))
    start, end = _int(attrs, "start", 0), _int(attrs, "end", x.rank)  # opset 15; slicing clamps them
    return _Dims(elems[slice(start, end)])


def _dims_vector(value: _Value, where: str) -> tuple[int | str, ...]:
    """The elements of a 1-D shape vector or small integer constant."""
    if isinstance(value, _Dims) and not value.scalar:
        return value.elems
    if isinstance(value, _Static) and value.values is not None and value.shape is not None and len(value.shape) == 1:
        return value.values
    raise _NotProvenError(f"{where}: a shape computation on a value the proof cannot read")


def _known_ints(value: _Value) -> tuple[int, ...]:
    """A small integer constant's values; () when the value is not one."""
    return value.values if isinstance(value, _Static) and value.values is not None else ()


def _constant_ints(value: _Value, where: str) -> tuple[int, ...]:
    if isinstance(value, _Static) and value.values is not None:
        return value.values
    raise _NotProvenError(f"{where}: indices that are not a constant")


def _dims_gather(n: _Op) -> _Dims:
    attrs, ins, where = n.attrs, n.ins, n.where
    data = _dims_vector(ins[0], where)
    indices = ins[1]
    if _int(attrs, "axis", 0) not in (0, -1) or not isinstance(indices, _Static) or indices.shape is None:
        raise _NotProvenError(f"{where}: Gather from a shape with indices the proof cannot read")
    if len(indices.shape) > 1:
        raise _NotProvenError(f"{where}: Gather from a shape with indices of rank {len(indices.shape)}")
    picked = []
    for i in _constant_ints(indices, where):
        if not -len(data) <= i < len(data):
            raise _NotProvenError(f"{where}: index {i} outside a shape of {len(data)}")
        picked.append(data[i])
    return _Dims(tuple(picked), scalar=not indices.shape)


def _dims_slice(n: _Op) -> _Dims:
    ins, where = n.ins, n.where
    data = _dims_vector(ins[0], where)
    if n.opset < 10:
        raise _NotProvenError(f"{where}: Slice with attributes")
    starts, ends = (_constant_ints(v, where) for v in ins[1:3])
    axes = _constant_ints(ins[3], where) if _given(n, 3) else (0,)
    steps = _constant_ints(ins[4], where) if _given(n, 4) else (1,)
    if len(starts) != 1 or len(ends) != 1 or axes not in ((0,), (-1,)) or steps != (1,):
        raise _NotProvenError(f"{where}: Slice of a shape other than one range with step 1")
    return _Dims(data[slice(starts[0], ends[0])])


def _dims_unsqueeze(n: _Op) -> _Dims:
    value, where = n.ins[0], n.where
    axes = _axes(n)
    if not isinstance(value, _Dims) or axes is None:
        raise _NotProvenError(f"{where}: {n.node.op_type} of a shape without axes")
    if n.node.op_type == "Unsqueeze" and value.scalar and axes in ([0], [-1]):
        return _Dims(value.elems)
    if n.node.op_type == "Squeeze" and not value.scalar and len(value.elems) == 1 and axes in ([0], [-1]):
        return _Dims(value.elems, scalar=True)
    raise _NotProvenError(f"{where}: {n.node.op_type} of a shape on axes {axes}")


def _dims_concat(n: _Op) -> _Dims:
    if _int(n.attrs, "axis", 0) not in (0, -1):
        raise _NotProvenError(f"{n.where}: Concat of shapes along axis {_int(n.attrs, 'axis', 0)}")
    return _Dims(tuple(e for v in n.ins for e in _dims_vector(v, n.where)))


def _dims_same(n: _Op) -> _Value:
    value = n.ins[0]
    if not isinstance(value, _Dims) or len(n.node.output) != 1:
        raise _NotProvenError(f"{n.where}: {n.node.op_type} of a shape")
    if n.node.op_type == "Cast" and _int(n.attrs, "to", 0) not in (pb.TensorProto.INT64, pb.TensorProto.INT32):
        return _as_static(value, "Cast to a non-integer type", n.where)  # no longer a shape: data
    return value


def _dims_shape(n: _Op) -> _Value:
    """The shape of a shape vector: its length, a constant."""
    value = n.ins[0]
    if not isinstance(value, _Dims):
        raise _NotProvenError(f"{n.where}: Shape of a shape")
    full: tuple[int, ...] = () if value.scalar else (len(value.elems),)
    picked = full[slice(_int(n.attrs, "start", 0), _int(n.attrs, "end", len(full)))]
    return _Static((len(picked),), picked)


def _dims_reshape(n: _Op) -> _Value:
    """A shape vector reshaped to one dimension ([-1] or its length), or a one-element one
    to a scalar; anything else is not followed."""
    value, shape = n.ins[0], n.ins[1]
    if not isinstance(value, _Dims) or not isinstance(shape, _Static) or shape.values is None:
        raise _NotProvenError(f"{n.where}: Reshape of a shape by a shape the proof cannot read")
    if shape.values in ((-1,), (len(value.elems),)):
        return _Dims(value.elems)
    if not shape.values and len(value.elems) == 1:
        return _Dims(value.elems, scalar=True)
    raise _NotProvenError(f"{n.where}: Reshape of a shape to {list(shape.values)}")


def _dims_pairs(n: _Op, count: int) -> list[tuple[int | str, ...]]:
    """The inputs' elements, each input a shape vector or a small integer constant, with a
    single element broadcast to the others' length."""
    vectors = []
    for value in n.ins[:count]:
        if isinstance(value, _Dims):
            vectors.append(value.elems)
        elif (
            isinstance(value, _Static)
            and value.values is not None
            and value.shape is not None
            and len(value.shape) <= 1
        ):
            vectors.append(value.values)
        else:
            raise _NotProvenError(f"{n.where}: {n.node.op_type} of a shape and a value the proof cannot read")
    length = max(len(v) for v in vectors)
    if any(len(v) not in (1, length) for v in vectors):
        raise _NotProvenError(f"{n.where}: {n.node.op_type} of shapes of different lengths")
    return [tuple(v * length if len(v) == 1 else v) for v in vectors]


def _dims_equal(n: _Op) -> _Value:
    """Element by element: 1 or 0 where it is known, else a value that does not depend on
    the batch size. The batch size is at least 1, so it never equals a negative constant
    (PyTorch's expand compares its sizes with -1); equal to any other is not proven."""
    a, b = _dims_pairs(n, 2)
    out: list[int | str] = []
    for x, y in zip(a, b, strict=True):
        if isinstance(x, int) and isinstance(y, int):
            out.append(int(x == y))
        elif _N in (x, y):
            other = y if x == _N else x
            if other == _N:
                out.append(1)
            elif isinstance(other, int) and other < 0:
                out.append(0)
            else:
                raise _NotProvenError(f"{n.where}: Equal of the batch size to {other!r} uses the batch size")
        else:
            out.append(_DIM)
    return _Dims(tuple(out), scalar=all(_is_scalar(v) for v in n.ins[:2]))


def _is_scalar(value: _Value) -> bool:
    return (isinstance(value, _Dims) and value.scalar) or (isinstance(value, _Static) and value.shape == ())


def _dims_where(n: _Op) -> _Value:
    """Element by element: the chosen element where the condition is known; where it is
    not, an element that does not depend on the batch size when neither choice does."""
    cond, a, b = _dims_pairs(n, 3)
    out: list[int | str] = []
    for c, x, y in zip(cond, a, b, strict=True):
        if isinstance(c, int):
            out.append(x if c else y)
        elif x == y:
            out.append(x)
        elif _N in (x, y):
            raise _NotProvenError(f"{n.where}: Where that may choose the batch size")
        else:
            out.append(_DIM)
    return _Dims(tuple(out))


# Operators that compute a shape vector from another, element by element.
_DIMS_RULES: dict[str, Callable[[_Op], _Value]] = {
    "Cast": _dims_same,
    "Concat": _dims_concat,
    "Equal": _dims_equal,
    "Gather": _dims_gather,
    "Identity": _dims_same,
    "Reshape": _dims_reshape,
    "Shape": _dims_shape,
    "Slice": _dims_slice,
    "Squeeze": _dims_unsqueeze,
    "Unsqueeze": _dims_unsqueeze,
    "Where": _dims_where,
}

# The traditional-ML operators (scikit-learn, XGBoost and LightGBM models converted to
# ONNX): each predicts or transforms one row of an [N, F] input at a time.
_ML = "ai.onnx.ml"
_ML_PREDICTORS = frozenset((
    "LinearClassifier", "LinearRegressor", "SVMClassifier", "SVMRegressor", "TreeEnsemble",
    "TreeEnsembleClassifier", "TreeEnsembleRegressor",
))  # fmt: skip


def _ml_predictor(n: _Op) -> list[_Value]:
    node, ins, where = n.node, n.ins, n.where
    x = _only_first_batched(ins, where)
    if x.rank != 2:
        # Given [F], these read one sample of F features: the batch would be that sample.
        raise _NotProvenError(f"{where}: {node.op_type} on rank {x.rank}, not one [N, F] row at a time")
    if node.op_type.endswith("Classifier"):
        return [_Batched(1), _Batched(2)]  # the labels [N] and the scores [N, E]
    return [_Batched(2)] * len(node.output)


def _ml_normalizer(n: _Op) -> list[_Value]:
    x = _only_first_batched(n.ins, n.where)
    if x.rank != 2:
        raise _NotProvenError(f"{n.where}: Normalizer on rank {x.rank} normalises over the batch axis")
    return [_Batched(2)]


def _ml_one_hot(n: _Op) -> list[_Value]:
    x = _only_first_batched(n.ins, n.where)
    return [_Batched(x.rank + 1)]  # each element becomes a vector of the categories


def _ml_feature_extractor(n: _Op) -> list[_Value]:
    x = _only_first_batched(n.ins, n.where)
    if x.rank < 2:
        raise _NotProvenError(f"{n.where}: ArrayFeatureExtractor on rank 1 picks along the batch axis")
    return [_Batched(x.rank)]  # the indices pick along the last axis


def _ml_feature_vectorizer(n: _Op) -> list[_Value]:
    if not n.ins or any(not isinstance(v, _Batched) or v.rank != 2 for v in n.ins):
        raise _NotProvenError(f"{n.where}: FeatureVectorizer of inputs other than batched [N, F] tensors")
    return [_Batched(2)]  # the rows' features side by side


_ML_RULES: dict[str, Callable[[_Op], list[_Value]]] = {
    **dict.fromkeys(_ML_PREDICTORS, _ml_predictor),
    **dict.fromkeys(("Binarizer", "CategoryMapper", "Imputer", "LabelEncoder", "Scaler"), _elementwise),
    "ArrayFeatureExtractor": _ml_feature_extractor,
    "FeatureVectorizer": _ml_feature_vectorizer,
    "Normalizer": _ml_normalizer,
    "OneHotEncoder": _ml_one_hot,
}

# Integer constants up to this many values are read (shapes and axes are a few).
_MAX_CONSTANT_VALUES = 64
_INT_TYPES: dict[int, str] = {pb.TensorProto.INT64: "<i8", pb.TensorProto.INT32: "<i4"}
# Computations on small integer constants the proof works out (with numpy), for the shape
# computations exporters emit.
_FOLDED: dict[str, Callable[..., numpy.ndarray]] = {
    "Add": numpy.add,
    "Sub": numpy.subtract,
    "Mul": numpy.multiply,
    "Neg": numpy.negative,
    "Identity": numpy.asarray,
}


def _fold(n: _Op) -> _Static | None:
    """A node's output when it computes from small integer constants only, else None."""
    op, ins = n.node.op_type, n.ins
    if len(n.node.output) != 1 or not all(isinstance(v, _Static) and v.values is not None for v in ins):
        return None
    arrays = [
        numpy.array(v.values, dtype=numpy.int64).reshape(v.shape)
        for v in ins
        if isinstance(v, _Static) and v.shape is not None
    ]
    if len(arrays) != len(ins):
        return None
    if op == "ConstantOfShape":
        value = n.attrs["value"].t if "value" in n.attrs else None
        filler = _constant(value) if value is not None else None
        if filler is None or filler.values is None or len(filler.values) != 1 or len(arrays) != 1:
            return None
        shape = tuple(int(d) for d in arrays[0].reshape(-1))
        if any(d < 0 for d in shape) or math.prod(shape) > _MAX_CONSTANT_VALUES:
            return None
        return _Static(shape, filler.values * math.prod(shape))
    try:
        if op in _FOLDED:
            out = numpy.asarray(_FOLDED[op](*arrays))
        elif op in ("Unsqueeze", "Squeeze"):
            axes = _axes(n)
            if axes is None:
                return None
            out = numpy.expand_dims(arrays[0], axes) if op == "Unsqueeze" else numpy.squeeze(arrays[0], tuple(axes))
        elif op == "Concat":
            out = numpy.concatenate(arrays, axis=_int(n.attrs, "axis", 0))
        elif op == "Reshape" and not _int(n.attrs, "allowzero", 0) and 0 not in arrays[1]:
            out = arrays[0].reshape(tuple(int(d) for d in arrays[1]))
        elif op == "Gather":
            out = numpy.take(arrays[0], arrays[1], axis=_int(n.attrs, "axis", 0))
        elif op == "Shape":
            full = arrays[0].shape
            out = numpy.array(
                full[slice(_int(n.attrs, "start", 0), _int(n.attrs, "end", len(full)))], dtype=numpy.int64
            )
        elif op == "Cast" and _int(n.attrs, "to", 0) in _INT_TYPES:
            out = arrays[0]
        else:
            return None
    except (ValueError, IndexError):  # ONNX Runtime refuses such a model (numpy's AxisError is both)
        return None
    if out.size > _MAX_CONSTANT_VALUES:
        return None
    return _Static(tuple(out.shape), tuple(int(v) for v in out.reshape(-1)))


def _constant(tensor: pb.TensorProto) -> _Static:
    shape = tuple(tensor.dims)
    dtype = _INT_TYPES.get(tensor.data_type)
    count = math.prod(shape)
    if dtype is None or count > _MAX_CONSTANT_VALUES or tensor.data_location == pb.TensorProto.EXTERNAL:
        return _Static(shape)
    if tensor.raw_data:
        if len(tensor.raw_data) != count * numpy.dtype(dtype).itemsize:
            return _Static(shape)
        values: Sequence[int] = numpy.frombuffer(tensor.raw_data, dtype=dtype).tolist()
    else:
        values = list(tensor.int64_data if tensor.data_type == pb.TensorProto.INT64 else tensor.int32_data)
        if len(values) != count:
            return _Static(shape)
    return _Static(shape, tuple(int(v) for v in values))
