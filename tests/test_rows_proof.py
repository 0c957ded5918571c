"""The proof that a model's rows are independent, which lets dynamic batching merge calls by default.

The threat: a model whose rows depend on each other (it normalises over the batch, reshapes
rows together, reads the batch size) would answer a caller differently when its call ran
merged with others, so "auto" batching must never merge it. Each model here is built with
the ``onnx`` helpers and run by ONNX Runtime: for every model the proof accepts, the rows
run merged equal the rows run one by one; for the models it refuses because they mix rows,
they do not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from protos import onnx_subset_pb2 as pb
from supervisor.modelgraph import read_graph_facts
from supervisor.modelgraph.build import build_batch_centred, build_int64_model, build_mlp, build_view_flatten
from supervisor.modelgraph.rows import prove_rows_independent
from tests.onnx_ml_models import ML_OPSET, sklearn_pipeline

F = TensorProto.FLOAT
RNG = np.random.default_rng(11)


def _model(
    nodes: list[object],
    inputs: Sequence[tuple[str, int, list[object]]],
    outputs: Sequence[tuple[str, int, list[object]]],
    initializers: dict[str, np.ndarray] | None = None,
    opset: int = 17,
    domains: dict[str, int] | None = None,
) -> bytes:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        [numpy_helper.from_array(v, k) for k, v in (initializers or {}).items()],
    )
    imports = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, v) for d, v in (domains or {}).items())]
    return bytes(helper.make_model(graph, opset_imports=imports, ir_version=8).SerializeToString())


def _w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _matmul_softmax() -> bytes:
    return _model(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("Add", ["h", "b"], ["z"]),
            helper.make_node("Softmax", ["z"], ["y"], axis=-1),
        ],
        [("x", F, ["n", 8])],
        [("y", F, ["n", 4])],
        {"w": _w(8, 4), "b": _w(4)},
    )


def _cnn() -> bytes:
    return _model(
        [
            helper.make_node("Conv", ["x", "k", "kb"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("BatchNormalization", ["p", "s", "bb", "m", "v"], ["bn"]),
            helper.make_node("Flatten", ["bn"], ["f"], axis=1),
            helper.make_node("Gemm", ["f", "w", "b"], ["g"]),
            helper.make_node("LogSoftmax", ["g"], ["y"], axis=1),
        ],
        [("x", F, ["n", 1, 8, 8])],
        [("y", F, ["n", 5])],
        {
            "k": _w(4, 1, 3, 3),
            "kb": _w(4),
            "s": _w(4),
            "bb": _w(4),
            "m": _w(4),
            "v": np.abs(_w(4)) + 0.5,
            "w": _w(64, 5),
            "b": _w(1, 5),
        },
    )


def _embedding() -> bytes:
    return _model(
        [
            helper.make_node("Gather", ["table", "ids"], ["e"], axis=0),
            helper.make_node("ReduceMean", ["e", "axes"], ["pooled"], keepdims=0),
            helper.make_node("LayerNormalization", ["pooled", "scale", "bias"], ["y"], axis=-1),
        ],
        [("ids", TensorProto.INT64, ["n", 5])],
        [("y", F, ["n", 8])],
        {"table": _w(100, 8), "axes": np.array([1], dtype=np.int64), "scale": _w(8), "bias": _w(8)},
        opset=18,
    )


def _embedding_flattened() -> bytes:
    """Token embeddings flattened into one vector per row, Reshape(_, [-1, 5 * 8]), as a
    converted bag-of-embeddings classifier does."""
    return _model(
        [
            helper.make_node("Gather", ["table", "ids"], ["e"], axis=0),
            helper.make_node("Reshape", ["e", "flat"], ["f"]),
            helper.make_node("Gemm", ["f", "w"], ["y"]),
        ],
        [("ids", TensorProto.INT64, ["n", 5])],
        [("y", F, ["n", 3])],
        {"table": _w(100, 8), "flat": _i64(-1, 40), "w": _w(40, 3)},
    )


def _reshape_transpose() -> bytes:
    return _model(
        [
            helper.make_node("Reshape", ["x", "shape"], ["r"]),
            helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
            helper.make_node("ReduceSum", ["t", "axes"], ["s"], keepdims=0),
            helper.make_node("Unsqueeze", ["s", "one"], ["u"]),
            helper.make_node("Concat", ["u", "u"], ["y"], axis=-1),
        ],
        [("x", F, ["n", 12])],
        [("y", F, ["n", 3, 2])],
        {
            "shape": np.array([0, 4, 3], dtype=np.int64),
            "axes": np.array([2], dtype=np.int64),
            "one": np.array([2], dtype=np.int64),
        },
    )


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _view_keeping_a_dimension() -> bytes:
    """``x.view(x.size(0), x.size(1), -1)``, with opset 15's Shape(start, end) and a Slice of a shape."""
    return _model(
        [
            helper.make_node("Shape", ["x"], ["first"], end=1),
            helper.make_node("Shape", ["x"], ["s"]),
            helper.make_node("Slice", ["s", "one", "two"], ["second"]),
            helper.make_node("Concat", ["first", "second", "minus_one"], ["shape"], axis=0),
            helper.make_node("Reshape", ["x", "shape"], ["r"]),
            helper.make_node("Slice", ["r", "one", "three", "axes2"], ["part"]),
            helper.make_node("Pad", ["part", "pads"], ["y"]),
        ],
        [("x", F, ["n", 3, 2, 4])],
        [("y", F, ["n", 3, 5])],
        {
            "one": _i64(1),
            "two": _i64(2),
            "three": _i64(3),
            "axes2": _i64(2),
            "minus_one": _i64(-1),
            "pads": _i64(0, 1, 2, 0, 0, 1),  # nothing before or after the batch axis
        },
        opset=15,
    )


def _attention() -> bytes:
    """One self-attention head as a transformer exports it: the batch size and sequence
    length read from the input for the view, softmax(Q @ K^T / sqrt(d)) @ V."""
    return _model(
        [
            helper.make_node("MatMul", ["x", "wq"], ["q"]),
            helper.make_node("MatMul", ["x", "wk"], ["k"]),
            helper.make_node("MatMul", ["x", "wv"], ["v"]),
            helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["q", "kt"], ["scores"]),
            helper.make_node("Mul", ["scores", "scale"], ["scaled"]),
            helper.make_node("Softmax", ["scaled"], ["weights"], axis=-1),
            helper.make_node("MatMul", ["weights", "v"], ["context"]),
            helper.make_node("Shape", ["x"], ["s"]),
            helper.make_node("Slice", ["s", "zero", "two"], ["batch_and_length"]),
            helper.make_node("Concat", ["batch_and_length", "heads_dims"], ["split_shape"], axis=0),
            helper.make_node("Reshape", ["context", "split_shape"], ["y"]),
        ],
        [("x", F, ["n", 5, 8])],
        [("y", F, ["n", 5, 2, 4])],
        {
            "wq": _w(8, 8),
            "wk": _w(8, 8),
            "wv": _w(8, 8),
            "scale": np.array(8**-0.5, dtype=np.float32),
            "zero": _i64(0),
            "two": _i64(2),
            "heads_dims": _i64(2, 4),
        },
    )


def _class_token(target: str = "expand_target", size_nodes: list[object] | None = None) -> bytes:
    """A ViT's class token, ``cls.expand(x.size(0), -1, -1)``, as PyTorch exports it: the
    sizes stacked and reshaped to a vector, its -1s found with Equal against ConstantOfShape
    times -1 and replaced by 1s with Where, then Expand; the token joins the patches along
    the sequence and a position embedding is added. ``size_nodes`` and ``target`` swap in
    other ways of building Expand's shape."""
    stacked = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["b"]),
        helper.make_node("Unsqueeze", ["b", "axis0"], ["b1"]),
        helper.make_node("Unsqueeze", ["minus_one", "axis0"], ["m1"]),
        helper.make_node("Concat", ["b1", "m1", "m1"], ["stacked"], axis=0),
        helper.make_node("Reshape", ["stacked", "flat"], ["size"]),
    ]
    ones_for_minus_ones = [
        helper.make_node("Shape", ["size"], ["size_shape"]),
        helper.make_node(
            "ConstantOfShape", ["size_shape"], ["ones"], value=helper.make_tensor("one", TensorProto.INT64, [1], [1])
        ),
        helper.make_node("Mul", ["ones", "minus_one"], ["neg_ones"]),
        helper.make_node("Equal", ["size", "neg_ones"], ["is_minus_one"]),
        helper.make_node("Where", ["is_minus_one", "ones", "size"], ["expand_target"]),
    ]
    return _model(
        [
            *stacked,
            *(size_nodes if size_nodes is not None else ones_for_minus_ones),
            helper.make_node("Expand", ["cls", target], ["cls_rows"]),
            helper.make_node("Concat", ["cls_rows", "x"], ["tokens"], axis=1),
            helper.make_node("Add", ["tokens", "pos"], ["embedded"]),
            helper.make_node("Reshape", ["embedded", "row"], ["y"]),
        ],
        [("x", F, ["n", 4, 6])],
        [("y", F, ["n", 30])],
        {
            "cls": _w(1, 1, 6),
            "pos": _w(1, 5, 6),
            "zero": np.array(0, dtype=np.int64),
            "axis0": _i64(0),
            "minus_one": np.array(-1, dtype=np.int64),
            "flat": _i64(-1),
            "two": _i64(2),
            "one_vec": _i64(1),
            "equal_two": _i64(2, -1, -1),
            "seconds": _i64(1, 1, 1),
            "fours": _i64(4, 4, 4),
            "ones3": _i64(1, 1, 1),
            "row": _i64(-1, 30),
        },
    )


ML = dict([ML_OPSET])


def _ml(op: str, inputs: list[str], outputs: list[str], **attrs: object) -> object:
    return helper.make_node(op, inputs, outputs, domain="ai.onnx.ml", **attrs)


def _tree_regressor() -> bytes:
    """One decision stump per target: x[:, 0] <= 0.0 ? 1.0 : -1.0, and x[:, 1] <= 0.5 ? 2.0 : 3.0."""
    return _model(
        [
            _ml(
                "TreeEnsembleRegressor",
                ["x"],
                ["y"],
                n_targets=2,
                nodes_treeids=[0, 0, 0, 1, 1, 1],
                nodes_nodeids=[0, 1, 2, 0, 1, 2],
                nodes_featureids=[0, 0, 0, 1, 0, 0],
                nodes_values=[0.0, 0.0, 0.0, 0.5, 0.0, 0.0],
                nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_LEQ", "LEAF", "LEAF"],
                nodes_truenodeids=[1, 0, 0, 1, 0, 0],
                nodes_falsenodeids=[2, 0, 0, 2, 0, 0],
                target_treeids=[0, 0, 1, 1],
                target_nodeids=[1, 2, 1, 2],
                target_ids=[0, 0, 1, 1],
                target_weights=[1.0, -1.0, 2.0, 3.0],
            ),
        ],
        [("x", F, ["n", 2])],
        [("y", F, ["n", 2])],
        domains=ML,
    )


def _ml_transforms() -> bytes:
    return _model(
        [
            _ml("Normalizer", ["x"], ["unit"], norm="L2"),
            _ml("Binarizer", ["unit"], ["bits"], threshold=0.1),
            _ml("ArrayFeatureExtractor", ["bits", "picked"], ["some"]),
            _ml("FeatureVectorizer", ["some", "unit"], ["y"], inputdimensions=[2, 4]),
        ],
        [("x", F, ["n", 4])],
        [("y", F, ["n", 6])],
        {"picked": _i64(0, 2)},
        domains=ML,
    )


def _keras_flatten() -> bytes:
    """Keras's Flatten as tf2onnx exports it, Reshape(x, [-1, 6]), after a broadcast add and
    a transpose; then a label reshaped to [-1, 1]."""
    return _model(
        [
            helper.make_node("Add", ["x", "bias"], ["shifted"]),
            helper.make_node("Transpose", ["shifted"], ["t"], perm=[0, 2, 1]),
            helper.make_node("Reshape", ["t", "flat"], ["f"]),
            helper.make_node("Gemm", ["f", "w"], ["logits"], transB=1),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
            helper.make_node("Reshape", ["label", "column"], ["y"]),
        ],
        [("x", F, ["n", 2, 3])],
        [("y", TensorProto.INT64, ["n", 1])],
        {"bias": _w(3), "flat": _i64(-1, 6), "w": _w(5, 6), "column": _i64(-1, 1)},
    )


PROVEN: dict[str, bytes] = {
    "vit_class_token": _class_token(),
    "expand_within_rows": _model(
        [helper.make_node("Expand", ["x", "shape"], ["y"])],
        [("x", F, ["n", 1, 6])],
        [("y", F, ["n", 3, 6])],
        {"shape": _i64(1, 3, 6)},
    ),
    "keras_flatten": _keras_flatten(),
    "sklearn_pipeline": sklearn_pipeline(),
    "tree_regressor": _tree_regressor(),
    "ml_transforms": _ml_transforms(),
    "attention": _attention(),
    "pytorch_view": build_view_flatten(),
    "view_keeping_a_dimension": _view_keeping_a_dimension(),
    "mlp": build_mlp(),
    "matmul_softmax": _matmul_softmax(),
    "cnn": _cnn(),
    "embedding": _embedding(),
    "embedding_flattened": _embedding_flattened(),
    # A Slice of an inner axis whose end is read from the input's shape: the rows' shape
    # is then unknown to the proof, but each row is still sliced within itself.
    "slice_to_an_end_read_from_the_shape": _model(
        [
            helper.make_node("Shape", ["x"], ["s"]),
            helper.make_node("Slice", ["s", "two", "three"], ["end"]),
            helper.make_node("Slice", ["x", "one", "end", "two"], ["y"]),
        ],
        [("x", F, ["n", 4, 6])],
        [("y", F, ["n", 4, 5])],
        {"one": _i64(1), "two": _i64(2), "three": _i64(3)},
    ),
    "reshape_transpose": _reshape_transpose(),
    "int64": build_int64_model(),
}


def _one_input(
    op: str,
    attrs: dict[str, object] | None = None,
    extra: dict[str, np.ndarray] | None = None,
    out: list[object] | None = None,
) -> bytes:
    names = ["x", *(extra or {})]
    node = helper.make_node(op, names, ["y"], **(attrs or {}))
    return _model([node], [("x", F, ["n", 4])], [("y", F, out or ["n", 4])], extra)


# name -> (model, words of the reason, whether merged rows truly differ from rows alone)
REFUSED: dict[str, tuple[bytes, str, bool]] = {
    # Expand to twice the batch size: the token rows no longer line up with the calls'.
    "expand_to_twice_the_batch": (
        _class_token("twice", [helper.make_node("Mul", ["size", "two"], ["twice"])]),
        "Mul uses the batch size",
        False,
    ),
    # Whether the batch size is 2 changes with the number of rows merged.
    "equal_to_the_batch_size": (
        _class_token(
            "picked",
            [
                helper.make_node("Equal", ["size", "equal_two"], ["is_two"]),
                helper.make_node("Where", ["is_two", "one_vec", "size"], ["picked"]),
            ],
        ),
        "Equal of the batch size to 2 uses the batch size",
        False,
    ),
    "expand_with_the_batch_size_second": (
        _class_token(
            "batch_second",
            [helper.make_node("Concat", ["one_vec", "b1", "one_vec"], ["batch_second"], axis=0)],
        ),
        "Expand whose shape does not start with the batch size alone",
        False,
    ),
    # Where on a condition the proof cannot work out, choosing between the batch size and
    # 1 for Expand's first dimension (the condition is true for this model, but a proof
    # that does not know so must not guess).
    "where_that_may_choose_the_batch_size": (
        _class_token(
            "chosen",
            [
                helper.make_node("Shape", ["x"], ["whole"]),
                helper.make_node("Gather", ["whole", "seconds"], ["widths"]),
                helper.make_node("Equal", ["widths", "fours"], ["is_four"]),
                helper.make_node("Where", ["is_four", "whole", "ones3"], ["chosen"]),
            ],
        ),
        "Where that may choose the batch size",
        False,
    ),
    # [n, 4] expanded to [2, n, 4]: the batch axis moves to the second.
    "expand_onto_the_batch_axis": (
        _one_input("Expand", extra={"shape": _i64(2, 1, 4)}, out=[2, "n", 4]),
        "reaches the batch axis",
        False,
    ),
    "centre_over_batch": (build_batch_centred(), "over the batch axis", True),
    "softmax_over_batch": (_one_input("Softmax", {"axis": 0}), "over the batch axis", True),
    "reshape_rows_together": (
        _one_input("Reshape", extra={"shape": np.array([-1], dtype=np.int64)}, out=["m"]),
        "rows shaped [4]: not one row each",
        False,
    ),
    # Each row of 4 becomes two rows of 2: the output's rows are no longer the calls' rows.
    "reshape_rows_in_two": (
        _one_input("Reshape", extra={"shape": _i64(-1, 2)}, out=["m", 2]),
        "rows shaped [4]: not one row each",
        False,
    ),
    "reshape_rows_of_unknown_shape": (
        _model(
            [helper.make_node("Reshape", ["x", "shape"], ["y"])],
            [("x", F, ["n", "d"])],
            [("y", F, ["n", 4])],
            {"shape": _i64(-1, 4)},
        ),
        "rows whose shape the proof does not know",
        False,
    ),
    "transpose_default": (_one_input("Transpose", out=[4, "n"]), "moves the batch axis", False),
    "gemm_transposed": (
        _one_input("Gemm", {"transA": 1}, {"w": _w(1, 4)}, out=[4, 4]),
        "transposed",
        False,
    ),
    "outputs_its_shape": (_one_input("Shape", out=[2]), "does not carry the batch", False),
    # y = x * x.size(0): each row's answer changes with the number of rows merged.
    "reads_batch_size": (
        _model(
            [
                helper.make_node("Shape", ["x"], ["s"]),
                helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
                helper.make_node("Cast", ["n"], ["nf"], to=F),
                helper.make_node("Mul", ["x", "nf"], ["y"]),
            ],
            [("x", F, ["n", 4])],
            [("y", F, ["n", 4])],
            {"zero": np.array(0, dtype=np.int64)},
        ),
        "uses the batch size",
        True,
    ),
    "reshape_with_the_batch_size_last": (
        _model(
            [
                helper.make_node("Shape", ["x"], ["s"]),
                helper.make_node("Slice", ["s", "zero", "one"], ["n"]),
                helper.make_node("Concat", ["minus_one", "n"], ["shape"], axis=0),
                helper.make_node("Reshape", ["x", "shape"], ["y"]),
            ],
            [("x", F, ["n", 4])],
            [("y", F, [4, "n"])],
            {"zero": _i64(0), "one": _i64(1), "minus_one": _i64(-1)},
        ),
        "does not start with the batch size alone",
        True,
    ),
    # [n, n] @ [n, n]: one matrix of all the batch's rows times another.
    "matmul_of_two_batched_matrices": (
        _model(
            [helper.make_node("Mul", ["x", "c"], ["x2"]), helper.make_node("MatMul", ["x", "x2"], ["y"])],
            [("x", F, ["n", "n"])],
            [("y", F, ["n", "n"])],
            {"c": _w(1, 1)},
        ),
        "MatMul of two batched tensors of ranks 2 and 2",
        False,  # it runs only when n is the width, so there are no rows alone to compare
    ),
    # Given [N], a Normalizer takes the whole batch for one vector and scales it to norm 1.
    "normalizer_of_the_batch": (
        _model([_ml("Normalizer", ["x"], ["y"], norm="L2")], [("x", F, ["n"])], [("y", F, ["n"])], domains=ML),
        "normalises over the batch axis",
        True,
    ),
    "feature_extractor_on_the_batch": (
        _model(
            [_ml("ArrayFeatureExtractor", ["x", "picked"], ["y"])],
            [("x", F, ["n"])],
            [("y", F, ["m"])],
            {"picked": _i64(0)},
            domains=ML,
        ),
        "picks along the batch axis",
        True,
    ),
    "ml_operator_not_listed": (
        _model(
            [_ml("ZipMap", ["x"], ["y"], classlabels_int64s=[0, 1, 2, 3])],
            [("x", F, ["n", 4])],
            [("y", F, ["n", 4])],
            domains=ML,
        ),
        "ai.onnx.ml.ZipMap is not one the proof knows",
        False,
    ),
    "slice_of_the_batch": (
        _one_input("Slice", extra={"starts": _i64(1), "ends": _i64(100), "axes": _i64(0)}, out=["m", 4]),
        "Slice along the batch axis",
        True,
    ),
    "pad_of_the_batch": (
        _one_input("Pad", extra={"pads": _i64(1, 0, 0, 0)}, out=["m", 4]),
        "Pad along the batch axis",
        True,
    ),
    "constant_as_deep_as_the_batch": (_one_input("Add", extra={"c": _w(3, 4)}), "meets the batch axis", False),
    "custom_domain": (
        _model(
            [helper.make_node("Evil", ["x"], ["y"], domain="com.example")],
            [("x", F, ["n", 4])],
            [("y", F, ["n", 4])],
            domains={"com.example": 1},
        ),
        "domain",
        False,
    ),
    "maxpool_indices": (
        _model(
            [helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2])],
            [("x", F, ["n", 1, 4])],
            [("y", F, ["n", 1, 3]), ("i", TensorProto.INT64, ["n", 1, 3])],
        ),
        "more than one output",
        True,
    ),
    "squeeze_every_axis": (_one_input("Squeeze", out=["m"]), "without axes", False),
    # [n, 4] flattened at axis -2 (that is, 0) is one row of all the batch's values.
    "flatten_the_whole_batch": (_one_input("Flatten", {"axis": -2}, out=[1, "m"]), "not at the batch's rows", True),
    "flatten_rows_into_more_rows": (
        _model(
            [helper.make_node("Flatten", ["x"], ["y"], axis=2)],
            [("x", F, ["n", 2, 3])],
            [("y", F, ["m", 3])],
        ),
        "not at the batch's rows",
        False,
    ),
}


def _rows(session: ort.InferenceSession, n: int) -> dict[str, np.ndarray]:
    feeds = {}
    for i in session.get_inputs():
        shape = [n, *(d if isinstance(d, int) else 3 for d in i.shape[1:])]
        if i.type == "tensor(int64)":
            feeds[i.name] = RNG.integers(0, 100, size=shape, dtype=np.int64)
        else:
            feeds[i.name] = RNG.standard_normal(shape).astype(np.float32)
    return feeds


def _merged_equals_alone(model: bytes, n: int = 6) -> bool:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    feeds = _rows(session, n)
    merged = session.run(None, feeds)
    alone = [session.run(None, {k: v[i : i + 1] for k, v in feeds.items()}) for i in range(n)]
    together = [np.concatenate([a[j] for a in alone]) for j in range(len(merged))]
    return all(
        out.shape == rows.shape and np.allclose(out, rows, rtol=1e-5, atol=1e-5)
        for out, rows in zip(merged, together, strict=True)
    )


@pytest.mark.parametrize("name", sorted(PROVEN))
def test_a_proven_model_answers_merged_rows_as_it_answers_each_alone(name: str) -> None:
    facts = read_graph_facts(PROVEN[name])
    assert facts.rows_independent, facts.rows_reason
    assert _merged_equals_alone(PROVEN[name])


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_model_that_may_mix_rows_is_never_proven_independent(name: str) -> None:
    model, reason, mixes = REFUSED[name]
    facts = read_graph_facts(model)
    assert not facts.rows_independent
    assert reason in facts.rows_reason, facts.rows_reason
    if mixes:  # and the rows it mixes do come out different when merged
        assert not _merged_equals_alone(model)


def _parsed(model: bytes) -> pb.ModelProto:
    parsed = pb.ModelProto()
    parsed.ParseFromString(model)
    return parsed


def test_a_node_that_reads_a_tensor_defined_after_it_is_not_proven() -> None:
    model = _parsed(build_mlp())
    model.graph.node.reverse()  # not topologically sorted: the proof cannot follow it
    proof = prove_rows_independent(model)
    assert not proof.independent and "not defined before it" in proof.reason


def test_an_input_with_a_fixed_first_dimension_is_not_proven() -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [2, 4])], [("y", F, [2, 4])])
    proof = prove_rows_independent(_parsed(model))
    assert not proof.independent and "no dynamic first dimension" in proof.reason


def test_an_output_computed_from_constants_alone_is_not_proven() -> None:
    model = _model(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Identity", ["c"], ["z"])],
        [("x", F, ["n", 4])],
        [("y", F, ["n", 4]), ("z", F, [4])],
        {"c": _w(4)},
    )
    proof = prove_rows_independent(_parsed(model))
    assert not proof.independent and "'z'" in proof.reason


@pytest.mark.parametrize("op", ["Slice", "Reshape", "Pad", "MatMul", "Gather"])
def test_a_node_missing_an_input_it_needs_is_not_proven_rather_than_crashing(op: str) -> None:
    # Model bytes come from the tenant's side of the registry: a malformed node must be
    # "not proven", never an exception out of the proof.
    model = _model([helper.make_node(op, ["x"], ["y"])], [("x", F, ["n", 4])], [("y", F, ["n", 4])], opset=13)
    proof = prove_rows_independent(_parsed(model))
    assert not proof.independent and "malformed node" in proof.reason


# -- row dimensions through convolutions and pooling: a Keras CNN's Reshape(x, [-1, C*H*W]) --

_PER_ITEM_CASES: dict[str, tuple[str, dict[str, object], dict[str, np.ndarray]]] = {
    "conv_same_size": ("Conv", {"pads": [1, 1, 1, 1]}, {"k": _w(4, 2, 3, 3)}),
    "conv_stride_2": ("Conv", {"strides": [2, 2]}, {"k": _w(3, 2, 3, 3)}),
    "conv_dilated_uneven_pads": ("Conv", {"dilations": [2, 1], "pads": [1, 0, 0, 1]}, {"k": _w(4, 2, 2, 3)}),
    "conv_same_upper": ("Conv", {"auto_pad": "SAME_UPPER", "strides": [2, 3]}, {"k": _w(4, 2, 3, 3)}),
    "conv_valid": ("Conv", {"auto_pad": "VALID", "strides": [2, 2]}, {"k": _w(4, 2, 3, 2)}),
    "conv_grouped": ("Conv", {"group": 2, "pads": [0, 1, 0, 1]}, {"k": _w(4, 1, 3, 3)}),
    "max_pool": ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}, {}),
    "average_pool_padded": ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, {}),
    "max_pool_same_lower": ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"}, {}),
    "max_pool_dilated": ("MaxPool", {"kernel_shape": [2, 2], "dilations": [2, 2]}, {}),
    "lp_pool": ("LpPool", {"kernel_shape": [2, 3], "p": 2}, {}),
    "global_average_pool": ("GlobalAveragePool", {}, {}),
    "conv_transpose_stride_2": ("ConvTranspose", {"strides": [2, 2]}, {"k": _w(2, 3, 3, 3)}),
    "conv_transpose_padded": (
        "ConvTranspose",
        {"strides": [2, 3], "pads": [1, 0, 2, 1], "output_padding": [1, 2], "dilations": [1, 2]},
        {"k": _w(2, 3, 3, 2)},
    ),
    "conv_transpose_same_upper": (
        "ConvTranspose",
        {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
        {"k": _w(2, 4, 3, 3)},
    ),
    "conv_transpose_grouped": ("ConvTranspose", {"group": 2, "strides": [1, 2]}, {"k": _w(2, 2, 2, 3)}),
    "conv_transpose_output_shape": (
        "ConvTranspose",
        {"strides": [2, 2], "output_shape": [19, 15]},
        {"k": _w(2, 3, 3, 3)},
    ),
    "batch_normalization": (
        "BatchNormalization",
        {},
        {"s": _w(2), "bb": _w(2), "m": _w(2), "v": np.ones(2, np.float32)},
    ),
}


def _per_item_then_flatten(op: str, attrs: dict[str, object], weights: dict[str, np.ndarray], row: int) -> bytes:
    """``op`` on [n, 2, 9, 7], a Relu, then Reshape(_, [-1, row]), as converters flatten."""
    return _model(
        [
            helper.make_node(op, ["x", *weights], ["c"], **attrs),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("Reshape", ["r", "flat"], ["y"]),
        ],
        [("x", F, ["n", 2, 9, 7])],
        [("y", F, ["n", row])],
        {**weights, "flat": _i64(-1, row)},
    )


def _row_size(op: str, attrs: dict[str, object], weights: dict[str, np.ndarray]) -> int:
    """What ONNX Runtime makes of one row: the size the proof has to work out."""
    model = _model(
        [helper.make_node(op, ["x", *weights], ["y"], **attrs)], [("x", F, ["n", 2, 9, 7])], [("y", F, None)], weights
    )
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": np.zeros((1, 2, 9, 7), np.float32)})
    return int(np.prod(out.shape[1:]))


@pytest.mark.parametrize("case", sorted(_PER_ITEM_CASES))
def test_a_flatten_after_a_convolution_or_pool_is_proven_only_with_the_row_size_onnx_runtime_gives(case: str) -> None:
    op, attrs, weights = _PER_ITEM_CASES[case]
    row = _row_size(op, attrs, weights)
    model = _per_item_then_flatten(op, attrs, weights, row)
    facts = read_graph_facts(model)
    assert facts.rows_independent, facts.rows_reason
    assert _merged_equals_alone(model)
    # Two rows' worth per output row would join the rows of two calls.
    joined = read_graph_facts(_per_item_then_flatten(op, attrs, weights, 2 * row))
    assert not joined.rows_independent and "not one row each" in joined.rows_reason


@pytest.mark.parametrize(
    ("op", "attrs", "weights"),
    [
        ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, {}),
    ],
)
def test_a_flatten_after_an_operator_whose_row_size_the_proof_does_not_work_out_is_not_proven(
    op: str, attrs: dict[str, object], weights: dict[str, np.ndarray]
) -> None:
    facts = read_graph_facts(_per_item_then_flatten(op, attrs, weights, _row_size(op, attrs, weights)))
    assert not facts.rows_independent and "whose shape the proof does not know" in facts.rows_reason


_SHAPE_CASES: dict[str, tuple[list[object], dict[str, np.ndarray]]] = {
    "reduce_keeping_dims": ([helper.make_node("ReduceMax", ["x"], ["c"], axes=[2])], {}),
    "reduce_dropping_dims": ([helper.make_node("ReduceMax", ["x"], ["c"], axes=[2, -1], keepdims=0)], {}),
    "argmax_dropping_its_axis": (
        [helper.make_node("ArgMax", ["x"], ["a"], axis=3, keepdims=0), helper.make_node("Cast", ["a"], ["c"], to=F)],
        {},
    ),
    "unsqueeze": ([helper.make_node("Unsqueeze", ["x", "ax"], ["c"])], {"ax": _i64(2, 5)}),
    "squeeze_after_reduce": (
        [helper.make_node("ReduceMax", ["x"], ["m"], axes=[2]), helper.make_node("Squeeze", ["m", "ax"], ["c"])],
        {"ax": _i64(2)},
    ),
    "concat": ([helper.make_node("Concat", ["x", "x"], ["c"], axis=2)], {}),
    "softmax": ([helper.make_node("Softmax", ["x"], ["c"], axis=2)], {}),
    "gather_on_an_inner_axis": ([helper.make_node("Gather", ["x", "idx"], ["c"], axis=2)], {"idx": _i64(0, 4, 8)}),
    "gather_by_a_matrix": (
        [helper.make_node("Gather", ["x", "idx"], ["c"], axis=3)],
        {"idx": np.array([[0, 1], [5, 6], [2, 2]], dtype=np.int64)},
    ),
    "slice_with_steps": (
        [helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["c"])],
        {"starts": _i64(1, -1), "ends": _i64(8, -100), "axes": _i64(2, 3), "steps": _i64(2, -2)},
    ),
    "pad": ([helper.make_node("Pad", ["x", "pads"], ["c"])], {"pads": _i64(0, 0, 1, 2, 0, 0, 3, 0)}),
    "layer_norm": ([helper.make_node("LayerNormalization", ["x", "g"], ["c"], axis=-1)], {"g": _w(7)}),
    "split_into_given_sizes": ([helper.make_node("Split", ["x", "sp"], ["a", "c"], axis=2)], {"sp": _i64(3, 6)}),
    "split_evenly": ([helper.make_node("Split", ["x"], ["a", "c", "b"], axis=2)], {}),
    "tile": ([helper.make_node("Tile", ["x", "rep"], ["c"])], {"rep": _i64(1, 2, 1, 3)}),
    "depth_to_space": (
        [
            helper.make_node("Concat", ["x", "x"], ["x4"], axis=1),
            helper.make_node("DepthToSpace", ["x4"], ["c"], blocksize=2, mode="CRD"),
        ],
        {},
    ),
    "space_to_depth": (
        [
            helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["even"]),
            helper.make_node("SpaceToDepth", ["even"], ["c"], blocksize=2),
        ],
        {"starts": _i64(0, 0), "ends": _i64(8, 6), "axes": _i64(2, 3)},
    ),
}


def _then_flatten(nodes: list[object], weights: dict[str, np.ndarray], row: int | None) -> bytes:
    """``nodes`` from x [n, 2, 9, 7] to c, then Reshape(c, [-1, row]) (no reshape: None)."""
    last = (
        helper.make_node("Reshape", ["c", "flat"], ["y"])
        if row is not None
        else helper.make_node("Identity", ["c"], ["y"])
    )
    return _model(
        [*nodes, last],
        [("x", F, ["n", 2, 9, 7])],
        [("y", F, ["n", row] if row is not None else None)],
        {**weights, **({"flat": _i64(-1, row)} if row is not None else {})},
    )


@pytest.mark.parametrize("case", sorted(_SHAPE_CASES))
def test_a_flatten_after_a_reduction_squeeze_or_concat_is_proven_only_with_the_row_size_onnx_runtime_gives(
    case: str,
) -> None:
    nodes, weights = _SHAPE_CASES[case]
    session = ort.InferenceSession(_then_flatten(nodes, weights, None), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": np.zeros((1, 2, 9, 7), np.float32)})
    row = int(np.prod(out.shape[1:]))
    model = _then_flatten(nodes, weights, row)
    facts = read_graph_facts(model)
    assert facts.rows_independent, facts.rows_reason
    assert _merged_equals_alone(model)
    joined = read_graph_facts(_then_flatten(nodes, weights, 2 * row))
    assert not joined.rows_independent and "not one row each" in joined.rows_reason


@pytest.mark.parametrize(
    ("nodes", "reason"),
    [
        pytest.param([], "Tile that repeats the batch axis", id="batch_axis_repeated"),
        # Worked out by an operator the proof does not fold: it cannot tell what they are.
        pytest.param(
            [helper.make_node("Abs", ["rep"], ["rep2"])], "repeats are not a constant", id="repeats_not_a_constant"
        ),
    ],
)
def test_a_tile_that_may_repeat_the_batch_axis_is_not_proven(nodes: list[object], reason: str) -> None:
    # Each call's rows repeated among the others': the merged answer is not any call's own.
    repeats = "rep2" if nodes else "rep"
    model = _model(
        [*nodes, helper.make_node("Tile", ["x", repeats], ["y"])],
        [("x", F, ["n", 2, 9, 7])],
        [("y", F, None)],
        {"rep": _i64(2, 1, 1, 1) if not nodes else _i64(1, 2, 1, 3)},
    )
    proof = prove_rows_independent(_parsed(model))
    assert not proof.independent and reason in proof.reason
