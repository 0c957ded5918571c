"""OIP v2 tensors in and out: decode and validate requests, check worker replies.

Pure functions over protobuf messages, no I/O. Requests are checked against the model's
metadata before anything is dispatched; worker replies are checked against it again,
because the worker is untrusted.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from protos import worker_pb2
from protos.inference import grpc_predict_v2_pb2 as oip
from sandbox.dtypes import OIP_TO_NUMPY
from supervisor.errors import InvalidInputError, WorkerProtocolError
from supervisor.modelgraph import TensorSpec

# The typed-contents field each datatype must use (OIP v2). FP16 has none: raw only.
TYPED_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}
_WIDE = {"b": np.dtype(bool), "i": np.dtype("<i8"), "u": np.dtype("<u8"), "f": np.dtype("<f8")}
_ALL_TYPED = ("bytes_contents", *sorted(set(TYPED_FIELD.values())))


@dataclass(frozen=True)
class DecodedRequest:
    inputs: list[worker_pb2.Tensor]
    outputs: list[str]
    batch: int


def _fmt(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _check_shape(name: str, shape: Sequence[int], spec: TensorSpec) -> None:
    if any(d < 0 for d in shape):
        raise InvalidInputError(f"input {name!r} has negative dimension in shape {_fmt(shape)}")
    if len(shape) != len(spec.shape) or any(
        want != -1 and want != got for want, got in zip(spec.shape, shape, strict=True)
    ):
        raise InvalidInputError(f"input {name!r} has shape {_fmt(shape)}, expected {_fmt(spec.shape)} (-1 is any size)")


def _typed_bytes(tensor: oip.ModelInferRequest.InferInputTensor, spec: TensorSpec, count: int) -> bytes:
    contents = tensor.contents
    wanted = TYPED_FIELD.get(spec.datatype)
    if wanted is None:
        raise InvalidInputError(
            f"input {tensor.name!r} is {spec.datatype}, which has no typed contents; send raw_input_contents"
        )
    for other in _ALL_TYPED:
        if other != wanted and len(getattr(contents, other)):
            raise InvalidInputError(
                f"input {tensor.name!r} is {spec.datatype} but sets contents.{other}; expected contents.{wanted}"
            )
    values = getattr(contents, wanted)
    if len(values) != count:
        raise InvalidInputError(
            f"input {tensor.name!r} has {len(values)} elements in contents.{wanted}, "
            f"expected {count} for shape {_fmt(tensor.shape)}"
        )
    dtype = OIP_TO_NUMPY[spec.datatype]
    # Read into the widest type of the same kind first, so that range checks see the
    # values the client sent rather than values already wrapped by a narrowing cast.
    wide = np.fromiter(values, dtype=_WIDE[dtype.kind], count=len(values))
    if dtype.kind in "iu":
        info = np.iinfo(dtype)  # type: ignore[type-var]
        if wide.size and (wide.min() < info.min or wide.max() > info.max):
            raise InvalidInputError(
                f"input {tensor.name!r} has values outside the {spec.datatype} range [{info.min}, {info.max}]"
            )
    return wide.astype(dtype, copy=False).tobytes()


def decode_request(
    request: oip.ModelInferRequest,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    *,
    max_request_bytes: int,
    max_tensor_elements: int,
    size: int | None = None,
) -> DecodedRequest:
    """Validate ``request`` against the model's metadata and build worker tensors.

    ``size`` is ``request.ByteSize()`` when the caller has it already (it is not free).
    """
    size = request.ByteSize() if size is None else size
    if size > max_request_bytes:
        raise InvalidInputError(f"request is {size} bytes, limit is {max_request_bytes}")
    specs = {s.name: s for s in inputs}
    names = [t.name for t in request.inputs]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"duplicate input names in {names}")
    if set(names) != set(specs):
        missing = sorted(set(specs) - set(names))
        unknown = sorted(set(names) - set(specs))
        raise InvalidInputError(
            f"inputs {sorted(names)} do not match the model's {sorted(specs)} (missing {missing}, unknown {unknown})"
        )
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInputError(
            f"got {len(raw)} raw_input_contents for {len(request.inputs)} inputs; expected one per input"
        )
    decoded: list[worker_pb2.Tensor] = []
    batch = 0
    for index, tensor in enumerate(request.inputs):
        spec = specs[tensor.name]
        if tensor.datatype != spec.datatype:
            raise InvalidInputError(
                f"input {tensor.name!r} has datatype {tensor.datatype!r}, expected {spec.datatype!r}"
            )
        shape = list(tensor.shape)
        _check_shape(tensor.name, shape, spec)
        count = math.prod(shape)
        if count > max_tensor_elements:
            raise InvalidInputError(f"input {tensor.name!r} has {count} elements, limit is {max_tensor_elements}")
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInputError(
                    f"input {tensor.name!r} sets contents while raw_input_contents is used; use one"
                )
            data = raw[index]
            expected = count * OIP_TO_NUMPY[spec.datatype].itemsize
            if len(data) != expected:
                raise InvalidInputError(
                    f"input {tensor.name!r} has {len(data)} raw bytes, expected {expected} "
                    f"for {spec.datatype} shape {_fmt(shape)}"
                )
        else:
            data = _typed_bytes(tensor, spec, count)
        decoded.append(worker_pb2.Tensor(name=tensor.name, datatype=spec.datatype, shape=shape, data=data))
        if shape and index == 0:
            batch = shape[0]
    return DecodedRequest(decoded, _requested_outputs(request, outputs), batch)


def _requested_outputs(request: oip.ModelInferRequest, outputs: Sequence[TensorSpec]) -> list[str]:
    known = [s.name for s in outputs]
    wanted = [o.name for o in request.outputs]
    if not wanted:
        return known
    if len(set(wanted)) != len(wanted):
        raise InvalidInputError(f"duplicate requested outputs in {wanted}")
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise InvalidInputError(f"requested outputs {unknown} are not outputs of the model {known}")
    return wanted


def check_worker_outputs(
    result: worker_pb2.InferResult,
    wanted: Sequence[str],
    outputs: Sequence[TensorSpec],
    *,
    max_tensor_elements: int,
) -> None:
    """Refuse a worker reply that does not match what the model declares."""
    specs = {s.name: s for s in outputs}
    got = [t.name for t in result.outputs]
    if got != list(wanted):
        raise WorkerProtocolError(f"worker returned outputs {got}, expected {list(wanted)}")
    for tensor in result.outputs:
        spec = specs[tensor.name]
        if tensor.datatype != spec.datatype:
            raise WorkerProtocolError(
                f"worker output {tensor.name!r} is {tensor.datatype!r}, expected {spec.datatype!r}"
            )
        shape = list(tensor.shape)
        if len(shape) != len(spec.shape) or any(
            d < 0 or (want != -1 and want != d) for want, d in zip(spec.shape, shape, strict=True)
        ):
            raise WorkerProtocolError(
                f"worker output {tensor.name!r} has shape {_fmt(shape)}, expected {_fmt(spec.shape)}"
            )
        count = math.prod(shape)
        if count > max_tensor_elements:
            raise WorkerProtocolError(
                f"worker output {tensor.name!r} has {count} elements, limit is {max_tensor_elements}"
            )
        if len(tensor.data) != count * OIP_TO_NUMPY[spec.datatype].itemsize:
            raise WorkerProtocolError(
                f"worker output {tensor.name!r} has {len(tensor.data)} bytes for shape {_fmt(shape)}"
            )


def encode_response(
    request: oip.ModelInferRequest, version: str, result: worker_pb2.InferResult
) -> oip.ModelInferResponse:
    response = oip.ModelInferResponse(model_name=request.model_name, model_version=version, id=request.id)
    for tensor in result.outputs:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        response.raw_output_contents.append(tensor.data)
    return response


def digest_tensors(tensors: Sequence[worker_pb2.Tensor]) -> str:
    """sha256 over each tensor's name, datatype, shape and bytes, for the audit record."""
    h = hashlib.sha256()
    for t in tensors:
        data = t.data  # each read of a bytes field makes a new bytes object
        header = f"{t.name}\0{t.datatype}\0{','.join(map(str, t.shape))}\0{len(data)}\0"
        h.update(header.encode())
        h.update(data)
    return h.hexdigest()
