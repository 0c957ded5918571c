"""ONNX model facts read without running the model (builders live in ``.build``)."""

from supervisor.modelgraph.dtypes import OIP_TO_NUMPY, OIP_TO_ONNX, ONNX_TO_OIP
from supervisor.modelgraph.facts import GraphFacts, TensorSpec, read_graph_facts

__all__ = [
    "OIP_TO_NUMPY",
    "OIP_TO_ONNX",
    "ONNX_TO_OIP",
    "GraphFacts",
    "TensorSpec",
    "read_graph_facts",
]
