"""Models of the ``ai.onnx.ml`` domain, as scikit-learn pipelines convert to ONNX, built
with the ``onnx`` helpers for the tests that need one (the row proof, dynamic batching)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

ML_OPSET = ("ai.onnx.ml", 3)


def sklearn_pipeline(features: int = 4, classes: int = 3, seed: int = 3) -> bytes:
    """StandardScaler then LogisticRegression, with the nodes skl2onnx converts them to
    without ZipMap (Scaler, LinearClassifier, a Cast of the labels and an L1 Normalizer of
    the probabilities): FP32 ``x [N, features]`` -> INT64 ``label [N]`` and FP32
    ``probabilities [N, classes]``."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node(
            "Scaler",
            ["x"],
            ["scaled"],
            domain="ai.onnx.ml",
            offset=rng.standard_normal(features).tolist(),
            scale=(rng.random(features) + 0.5).tolist(),
        ),
        helper.make_node(
            "LinearClassifier",
            ["scaled"],
            ["raw_label", "probability_tensor"],
            domain="ai.onnx.ml",
            coefficients=rng.standard_normal(classes * features).tolist(),
            intercepts=rng.standard_normal(classes).tolist(),
            classlabels_ints=list(range(classes)),
            post_transform="SOFTMAX",
        ),
        helper.make_node("Cast", ["raw_label"], ["label"], to=TensorProto.INT64),
        helper.make_node("Normalizer", ["probability_tensor"], ["probabilities"], domain="ai.onnx.ml", norm="L1"),
    ]
    graph = helper.make_graph(
        nodes,
        "sklearn_pipeline",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", features])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["n"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", classes]),
        ],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(*ML_OPSET)]
    return bytes(helper.make_model(graph, opset_imports=opsets, ir_version=8).SerializeToString())
