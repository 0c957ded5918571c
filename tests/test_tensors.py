"""Tensor decoding and worker-reply checks, without a server (pure functions)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from protos import worker_pb2
from protos.inference import grpc_predict_v2_pb2 as oip
from sandbox.dtypes import OIP_TO_NUMPY
from supervisor.errors import InvalidInputError, WorkerProtocolError
from supervisor.modelgraph import TensorSpec
from supervisor.tensors import (
    TYPED_FIELD,
    check_worker_outputs,
    checked_response,
    decode_request,
    digest_tensors,
    encode_response,
)

LIMITS = {"max_request_bytes": 1 << 20, "max_tensor_elements": 1 << 16}
OUT = (TensorSpec("y", "FP32", (-1, 2)),)


def _raw(datatype: str, array: np.ndarray, spec_shape: tuple[int, ...]) -> tuple[oip.ModelInferRequest, TensorSpec]:
    request = oip.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype=datatype, shape=array.shape)
    request.raw_input_contents.append(array.tobytes())
    return request, TensorSpec("x", datatype, spec_shape)


@settings(max_examples=200, deadline=None)
@given(
    datatype=st.sampled_from(sorted(OIP_TO_NUMPY)),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5),
    data=st.data(),
)
def test_raw_contents_round_trip_exactly(datatype: str, shape: tuple[int, ...], data: st.DataObject) -> None:
    array = data.draw(hnp.arrays(OIP_TO_NUMPY[datatype], shape))
    request, spec = _raw(datatype, array, tuple(-1 for _ in shape))
    decoded = decode_request(request, [spec], OUT, **LIMITS)
    (tensor,) = decoded.inputs
    assert tensor.data == array.tobytes()
    assert list(tensor.shape) == list(shape)


@settings(max_examples=200, deadline=None)
@given(datatype=st.sampled_from(sorted(TYPED_FIELD)), data=st.data())
def test_typed_contents_equal_raw_contents(datatype: str, data: st.DataObject) -> None:
    dtype = OIP_TO_NUMPY[datatype]
    array = data.draw(hnp.arrays(dtype, st.integers(0, 8), elements=hnp.from_dtype(dtype, allow_nan=False)))
    typed = oip.ModelInferRequest(model_name="m")
    getattr(typed.inputs.add(name="x", datatype=datatype, shape=[array.size]).contents, TYPED_FIELD[datatype]).extend(
        array.tolist()
    )
    raw, spec = _raw(datatype, array, (-1,))
    assert (
        decode_request(typed, [spec], OUT, **LIMITS).inputs[0].data
        == decode_request(raw, [spec], OUT, **LIMITS).inputs[0].data
    )


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=64), shape=st.lists(st.integers(-2, 20), max_size=3))
def test_arbitrary_raw_input_is_accepted_only_when_consistent(payload: bytes, shape: list[int]) -> None:
    request = oip.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="FP32", shape=shape)
    request.raw_input_contents.append(payload)
    spec = TensorSpec("x", "FP32", tuple(-1 for _ in shape))
    try:
        decode_request(request, [spec], OUT, **LIMITS)
    except InvalidInputError:
        return
    assert all(d >= 0 for d in shape) and len(payload) == 4 * math.prod(shape)


def test_element_count_bound_is_enforced() -> None:
    request, spec = _raw("UINT8", np.zeros(10, np.uint8), (-1,))
    with pytest.raises(InvalidInputError, match="has 10 elements, limit is 5"):
        decode_request(request, [spec], OUT, max_request_bytes=1 << 20, max_tensor_elements=5)


def test_huge_declared_shape_is_refused_before_allocation() -> None:
    request = oip.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="FP32", shape=[2**31, 2**31])
    request.inputs[0].contents.fp32_contents.append(1.0)
    with pytest.raises(InvalidInputError, match="limit is"):
        decode_request(request, [TensorSpec("x", "FP32", (-1, -1))], OUT, **LIMITS)


def _result(datatype: str = "FP32", shape: tuple[int, ...] = (1, 2), nbytes: int = 8, name: str = "y"):
    return worker_pb2.InferResult(
        outputs=[worker_pb2.Tensor(name=name, datatype=datatype, shape=shape, data=b"\0" * nbytes)]
    )


@pytest.mark.parametrize(
    ("result", "message"),
    [
        pytest.param(_result(name="z"), "returned outputs", id="wrong_name"),
        pytest.param(worker_pb2.InferResult(), "returned outputs", id="no_output"),
        pytest.param(
            worker_pb2.InferResult(outputs=[*_result().outputs, *_result().outputs]),
            "returned outputs",
            id="an_output_too_many",
        ),
        pytest.param(_result(datatype="FP64", nbytes=16), "is 'FP64'", id="wrong_dtype"),
        pytest.param(_result(shape=(1, 3), nbytes=12), "has shape", id="wrong_fixed_dim"),
        pytest.param(_result(shape=(1, 2, 1)), "has shape", id="wrong_rank"),
        pytest.param(_result(nbytes=7), "has 7 bytes", id="short_data"),
        pytest.param(_result(shape=(-1, 2)), "has shape", id="negative_dim"),
        pytest.param(_result(shape=(1 << 40, 2), nbytes=8), "limit is", id="huge_shape"),
    ],
)
def test_hostile_worker_reply_is_refused(result: worker_pb2.InferResult, message: str) -> None:
    with pytest.raises(WorkerProtocolError, match=message):
        check_worker_outputs(result, ["y"], OUT, max_tensor_elements=1 << 20)
    # The path the server takes: the response is built in the same pass, and never returned.
    with pytest.raises(WorkerProtocolError, match=message):
        checked_response(oip.ModelInferRequest(model_name="m"), "1", result, ["y"], OUT, max_tensor_elements=1 << 20)


def test_response_uses_raw_output_contents() -> None:
    result = _result()
    response = encode_response(oip.ModelInferRequest(model_name="m", id="abc"), "3", result)
    assert (response.model_name, response.model_version, response.id) == ("m", "3", "abc")
    assert list(response.raw_output_contents) == [b"\0" * 8]
    assert not response.outputs[0].HasField("contents")
    checked, digest = checked_response(
        oip.ModelInferRequest(model_name="m", id="abc"), "3", result, ["y"], OUT, max_tensor_elements=1 << 20
    )
    assert checked == response
    assert digest == digest_tensors(result.outputs)


def test_decoded_request_is_the_worker_message_built_in_place() -> None:
    request, spec = _raw("FP32", np.arange(6, dtype=np.float32).reshape(2, 3), (-1, 3))
    decoded = decode_request(request, [spec], OUT, **LIMITS)
    message = decoded.message
    assert message.WhichOneof("body") == "infer"
    assert list(message.infer.outputs) == decoded.outputs == ["y"]
    assert message.infer.model_key == ""  # the service sets it from the registry's record
    (tensor,) = message.infer.inputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("x", "FP32", [2, 3])
    assert tensor.data == request.raw_input_contents[0]
    assert decoded.inputs == message.infer.inputs


@pytest.mark.parametrize(("second_rows", "rows"), [(2, 2), (3, 0)])
def test_only_inputs_that_share_their_first_dimension_offer_rows_to_stack(second_rows: int, rows: int) -> None:
    # Dynamic batching stacks calls by these rows: inputs of different lengths must not be cut as one.
    request = oip.ModelInferRequest(model_name="m")
    for name, n in (("a", 2), ("b", second_rows)):
        request.inputs.add(name=name, datatype="FP32", shape=[n, 1])
        request.raw_input_contents.append(np.zeros((n, 1), np.float32).tobytes())
    specs = [TensorSpec("a", "FP32", (-1, 1)), TensorSpec("b", "FP32", (-1, 1))]
    decoded = decode_request(request, specs, OUT, **LIMITS)
    assert (decoded.batch, decoded.rows) == (2, rows)


@settings(max_examples=200, deadline=None)
@given(
    datatype=st.sampled_from(sorted(OIP_TO_NUMPY)),
    shapes=st.lists(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4), min_size=1, max_size=3),
    data=st.data(),
)
def test_audited_digests_are_those_of_the_tensors_forwarded_and_returned(
    datatype: str, shapes: list[tuple[int, ...]], data: st.DataObject
) -> None:
    """The input and output digests in the audit record are worked out while checking, from
    the same reads; they must equal the reference digest of what crossed to the worker."""
    request = oip.ModelInferRequest(model_name="m")
    specs = []
    result = worker_pb2.InferResult()
    for i, shape in enumerate(shapes):
        array = data.draw(hnp.arrays(OIP_TO_NUMPY[datatype], shape))
        request.inputs.add(name=f"x{i}", datatype=datatype, shape=shape)
        request.raw_input_contents.append(array.tobytes())
        specs.append(TensorSpec(f"x{i}", datatype, tuple(-1 for _ in shape)))
        result.outputs.add(name=f"x{i}", datatype=datatype, shape=shape, data=array.tobytes())
    decoded = decode_request(request, specs, tuple(specs), **LIMITS)
    assert decoded.digest == digest_tensors(decoded.inputs)
    names = [s.name for s in specs]
    assert check_worker_outputs(result, names, specs, max_tensor_elements=1 << 16) == digest_tensors(result.outputs)
    response, digest = checked_response(request, "1", result, names, specs, max_tensor_elements=1 << 16)
    assert digest == digest_tensors(result.outputs)
    assert list(response.raw_output_contents) == [t.data for t in result.outputs]
    assert decoded.digest == digest_tensors(result.outputs)  # same names, types, shapes, bytes


@pytest.mark.parametrize(
    ("names", "message"),
    [
        pytest.param(["x", "x"], "duplicate input names", id="duplicate"),
        pytest.param(["x", "z"], r"missing \['y'\], unknown \['z'\]", id="unknown"),
        pytest.param(["x"], r"missing \['y'\]", id="missing"),
    ],
)
def test_input_names_that_do_not_match_the_model_are_refused(names: list[str], message: str) -> None:
    request = oip.ModelInferRequest(model_name="m")
    for name in names:
        request.inputs.add(name=name, datatype="FP32", shape=[1])
        request.raw_input_contents.append(b"\0" * 4)
    specs = [TensorSpec("x", "FP32", (-1,)), TensorSpec("y", "FP32", (-1,))]
    with pytest.raises(InvalidInputError, match=message):
        decode_request(request, specs, OUT, **LIMITS)
