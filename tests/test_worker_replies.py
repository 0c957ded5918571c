"""The worker's infer replies, built by real ONNX Runtime sessions in this process.

The worker class runs unconfined here: what is under test is how a reply is built from
the session's outputs, which confinement does not change (the confined path is covered
by the end-to-end tests).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from protos import worker_pb2 as pb
from sandbox.worker import Worker


def _model(outputs: list[tuple[str, int, str]]) -> bytes:
    """A model on input ``x`` (float32, [N, 3]) with one output per (name, type, node)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    nodes, values = [], []
    for name, elem_type, op in outputs:
        attrs = {"to": elem_type} if op == "Cast" else {}
        nodes.append(helper.make_node(op, ["x"], [name], **attrs))
        values.append(helper.make_tensor_value_info(name, elem_type, ["N", 3]))
    graph = helper.make_graph(nodes, "replies", [x], values)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _loaded(onnx_bytes: bytes) -> Worker:
    worker = Worker(1, [])
    reply = worker.handle(pb.ToWorker(id=1, load=pb.LoadModel(model_key="m", onnx=onnx_bytes)))
    assert reply.WhichOneof("body") == "loaded", reply
    return worker


def _infer(worker: Worker, x: np.ndarray, outputs: list[str]) -> pb.FromWorker:
    tensor = pb.Tensor(name="x", datatype="FP32", shape=list(x.shape), data=x.tobytes())
    return worker.handle(pb.ToWorker(id=7, infer=pb.InferRequest(model_key="m", inputs=[tensor], outputs=outputs)))


def test_outputs_come_back_in_the_order_asked_with_their_names_types_shapes_and_bytes() -> None:
    worker = _loaded(_model([("relu", TensorProto.FLOAT, "Relu"), ("as_int", TensorProto.INT64, "Cast")]))
    x = np.array([[-1.5, 0.0, 2.25], [3.0, -4.0, 5.5]], dtype=np.float32)
    reply = _infer(worker, x, ["as_int", "relu"])
    assert reply.id == 7
    assert reply.WhichOneof("body") == "result"
    got = {t.name: t for t in reply.result.outputs}
    assert [t.name for t in reply.result.outputs] == ["as_int", "relu"]
    assert (got["as_int"].datatype, list(got["as_int"].shape)) == ("INT64", [2, 3])
    assert (got["relu"].datatype, list(got["relu"].shape)) == ("FP32", [2, 3])
    assert got["as_int"].data == x.astype("<i8").tobytes()
    assert got["relu"].data == np.maximum(x, 0).astype("<f4").tobytes()


def test_an_output_oip_cannot_carry_is_a_bad_request_not_a_partial_result() -> None:
    # A string tensor has no OIP raw-contents layout: the whole call is refused, and the
    # output that could be carried is not sent on its own.
    worker = _loaded(_model([("relu", TensorProto.FLOAT, "Relu"), ("text", TensorProto.STRING, "Cast")]))
    reply = _infer(worker, np.ones((1, 3), dtype=np.float32), ["relu", "text"])
    assert reply.id == 7
    assert reply.WhichOneof("body") == "error"
    assert reply.error.code == pb.WorkerError.BAD_REQUEST
    assert "'text'" in reply.error.detail and "cannot carry" in reply.error.detail
    assert not reply.HasField("result")
