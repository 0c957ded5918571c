"""OIP v2 tensors in and out: decode and validate requests, check worker replies.

Pure functions over protobuf messages, no I/O. Requests are checked against the model's
metadata before anything is dispatched; worker replies are checked against it again,
because the worker is untrusted.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, NoReturn, Protocol

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


class DecodedRequest(NamedTuple):
    # A NamedTuple: one is made on every call, and a frozen dataclass costs more to build.
    # The worker's message, its infer request built in place (inputs and outputs set; the
    # model key is the caller's to set): every copy of a message into another, or into a
    # wrapper, copies its tensors' bytes too.
    message: worker_pb2.ToWorker
    outputs: list[str]
    batch: int
    # digest_tensors(inputs), worked out while decoding (each protobuf read copies).
    digest: str
    # Inputs left out of the message, as (index, bytes): large ones, which the worker's
    # connection writes straight into its input region (supervisor/workers/region.py)
    # rather than into the message and out again; their tensors have shapes but no data.
    aside: tuple[tuple[int, bytes], ...] = ()
    # The first dimension every input shares (the rows dynamic batching may stack), 0 if
    # they do not share one.
    rows: int = 0
    # What the requested outputs will come to, as far as the model's metadata says: the
    # bytes of each whose shape is fixed, or fixed but for a first dimension of ``rows``.
    # An estimate (the worker's reply is checked as ever); the worker's connection gives a
    # call expecting enough a range of its output region (supervisor/workers/region.py).
    output_bytes: int = 0

    @property
    def inputs(self) -> Sequence[worker_pb2.Tensor]:
        return self.message.infer.inputs


class _Spec:
    """What checking a tensor against its TensorSpec needs, worked out once per model."""

    __slots__ = ("datatype", "fixed", "fixed_bytes", "itemsize", "rank", "row_bytes", "spec")

    def __init__(self, spec: TensorSpec) -> None:
        self.spec = spec
        self.datatype = spec.datatype
        self.rank = len(spec.shape)
        self.fixed = tuple((i, d) for i, d in enumerate(spec.shape) if d != -1)
        dtype = OIP_TO_NUMPY.get(spec.datatype)
        self.itemsize = dtype.itemsize if dtype is not None else 0
        # The tensor's bytes when its shape is fixed; a row's when only the first dimension
        # is not. 0 when the metadata does not say.
        shape = spec.shape
        self.fixed_bytes = math.prod(shape) * self.itemsize if -1 not in shape else 0
        rest = shape[1:]
        self.row_bytes = math.prod(rest) * self.itemsize if shape and shape[0] == -1 and -1 not in rest else 0

    def fits(self, shape: list[int]) -> bool:
        """``shape`` has the spec's rank and its fixed sizes (dimensions are checked >= 0 apart)."""
        if len(shape) != self.rank:
            return False
        for index, size in self.fixed:  # noqa: SIM110 - all() over a generator costs more per call
            if shape[index] != size:
                return False
        return True


# Plans per spec sequence, by identity: a model's specs are one tuple for as long as the
# registry caches its record, so a call costs a dict lookup, not a hash of the specs.
_PLANS: dict[int, tuple[Sequence[TensorSpec], dict[str, _Spec]]] = {}
_MAX_PLANS = 1024


def _plan(specs: Sequence[TensorSpec]) -> dict[str, _Spec]:
    entry = _PLANS.get(id(specs))
    if entry is not None and entry[0] is specs:
        return entry[1]
    plan = {s.name: _Spec(s) for s in specs}
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    _PLANS[id(specs)] = (specs, plan)  # holding specs keeps its id from being reused
    return plan


def _digest_one(h: Any, name: str, datatype: str, shape: Sequence[int], data: bytes) -> None:
    h.update(f"{name}\0{datatype}\0{','.join(map(str, shape))}\0{len(data)}\0".encode())
    h.update(data)


def _fmt(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


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
    aside_min_bytes: int = 0,
) -> DecodedRequest:
    """Validate ``request`` against the model's metadata and build worker tensors.

    ``size`` is ``request.ByteSize()`` when the caller has it already (it is not free).
    Every protobuf field is read once: each read of a message field makes a new object.
    With ``aside_min_bytes``, inputs at least that large are left out of the message and
    returned in ``aside`` (:func:`put_aside_back` puts them in).
    """
    size = request.ByteSize() if size is None else size
    if size > max_request_bytes:
        raise InvalidInputError(f"request is {size} bytes, limit is {max_request_bytes}")
    plan = _plan(inputs)
    tensors = request.inputs
    count_in = len(tensors)
    raw = request.raw_input_contents
    if count_in != len(plan):
        _refuse_names(tensors, plan)
    if raw and len(raw) != count_in:
        raise InvalidInputError(f"got {len(raw)} raw_input_contents for {count_in} inputs; expected one per input")
    message = worker_pb2.ToWorker()
    infer = message.infer
    decoded = infer.inputs
    seen: set[str] = set()
    aside: list[tuple[int, bytes]] = []
    digest = hashlib.sha256()
    batch = rows = 0
    for index, tensor in enumerate(tensors):
        name = tensor.name
        entry = plan.get(name)
        if entry is None or name in seen:
            _refuse_names(tensors, plan)
        seen.add(name)
        datatype = tensor.datatype
        if datatype != entry.datatype:
            raise InvalidInputError(f"input {name!r} has datatype {datatype!r}, expected {entry.datatype!r}")
        shape = list(tensor.shape)
        if shape and min(shape) < 0:
            raise InvalidInputError(f"input {name!r} has negative dimension in shape {_fmt(shape)}")
        if not entry.fits(shape):
            raise InvalidInputError(
                f"input {name!r} has shape {_fmt(shape)}, expected {_fmt(entry.spec.shape)} (-1 is any size)"
            )
        count = math.prod(shape)
        if count > max_tensor_elements:
            raise InvalidInputError(f"input {name!r} has {count} elements, limit is {max_tensor_elements}")
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInputError(f"input {name!r} sets contents while raw_input_contents is used; use one")
            data = raw[index]
            expected = count * entry.itemsize
            if len(data) != expected:
                raise InvalidInputError(
                    f"input {name!r} has {len(data)} raw bytes, expected {expected} for {datatype} shape {_fmt(shape)}"
                )
        else:
            data = _typed_bytes(tensor, entry.spec, count)
        if aside_min_bytes and len(data) >= aside_min_bytes:
            decoded.add(name=name, datatype=datatype, shape=shape)
            aside.append((index, data))
        else:
            decoded.add(name=name, datatype=datatype, shape=shape, data=data)
        _digest_one(digest, name, datatype, shape, data)
        if index == 0:
            batch = rows = shape[0] if shape else 0
        elif not shape or shape[0] != rows:
            rows = 0
    wanted = _requested_outputs(request, outputs)
    infer.outputs.extend(wanted)
    out_plan = _plan(outputs)
    output_bytes = 0
    for name in wanted:
        entry = out_plan[name]
        output_bytes += entry.fixed_bytes + entry.row_bytes * rows
    return DecodedRequest(message, wanted, batch, digest.hexdigest(), tuple(aside), rows, output_bytes)


def put_aside_back(message: worker_pb2.ToWorker, aside: Sequence[tuple[int, bytes]]) -> None:
    """Put inputs :func:`decode_request` left out back into ``message`` (one copy each)."""
    inputs = message.infer.inputs
    for index, data in aside:
        inputs[index].data = data


def _refuse_names(tensors: Sequence[oip.ModelInferRequest.InferInputTensor], plan: Mapping[str, _Spec]) -> NoReturn:
    """The error for input names that are duplicated, missing or unknown."""
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"duplicate input names in {names}")
    missing = sorted(set(plan) - set(names))
    unknown = sorted(set(names) - set(plan))
    raise InvalidInputError(
        f"inputs {sorted(names)} do not match the model's {sorted(plan)} (missing {missing}, unknown {unknown})"
    )


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


class OutputTensor(Protocol):
    """One output of a worker's reply: a ``worker_pb2.Tensor``, or a cut of one."""

    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> str: ...
    @property
    def shape(self) -> Sequence[int]: ...
    @property
    def data(self) -> bytes: ...


class WorkerOutputs(Protocol):
    """A worker's result: ``worker_pb2.InferResult``, or :class:`Outputs` (one call's rows
    of a merged run, supervisor/workers/batching.py; outputs copied out of the worker's
    output region, supervisor/workers/connection.py), which are checked the same way."""

    @property
    def outputs(self) -> Sequence[OutputTensor]: ...


class Output(NamedTuple):
    """One output held as plain bytes; read like a ``worker_pb2.Tensor``."""

    name: str
    datatype: str
    shape: list[int]
    data: bytes


class Outputs(NamedTuple):
    """A worker's result held as plain bytes; read like a ``worker_pb2.InferResult``.

    Named tuples rather than protobuf messages: setting a large output's bytes into a
    message and reading them back out copies them twice more (about 0.6 ms a MiB here).
    """

    outputs: list[Output]


def check_worker_outputs(
    result: worker_pb2.InferResult,
    wanted: Sequence[str],
    outputs: Sequence[TensorSpec],
    *,
    max_tensor_elements: int,
) -> str:
    """Refuse a worker reply that does not match what the model declares; else return
    ``digest_tensors(result.outputs)``, worked out from the same reads."""
    return _check_outputs(result, wanted, outputs, max_tensor_elements, None)


def checked_response(
    request: oip.ModelInferRequest,
    version: str,
    result: WorkerOutputs,
    wanted: Sequence[str],
    outputs: Sequence[TensorSpec],
    *,
    max_tensor_elements: int,
) -> tuple[oip.ModelInferResponse, str]:
    """:func:`check_worker_outputs` and :func:`encode_response` in one pass over the reply:
    the response and the outputs' digest. Each output's bytes are read out of the reply
    once, not once to check them and again to answer."""
    response = oip.ModelInferResponse(model_name=request.model_name, model_version=version, id=request.id)
    return response, _check_outputs(result, wanted, outputs, max_tensor_elements, response)


def _check_outputs(
    result: WorkerOutputs,
    wanted: Sequence[str],
    outputs: Sequence[TensorSpec],
    max_tensor_elements: int,
    response: oip.ModelInferResponse | None,
) -> str:
    plan = _plan(outputs)
    tensors = result.outputs
    if len(tensors) != len(wanted):
        _refuse_outputs(tensors, wanted)
    digest = hashlib.sha256()
    # One pass: each read of a repeated field's element makes a new object.
    for tensor, name in zip(tensors, wanted, strict=True):
        if tensor.name != name:
            _refuse_outputs(tensors, wanted)
        entry = plan[name]
        datatype = tensor.datatype
        if datatype != entry.datatype:
            raise WorkerProtocolError(f"worker output {name!r} is {datatype!r}, expected {entry.datatype!r}")
        shape = list(tensor.shape)
        if (shape and min(shape) < 0) or not entry.fits(shape):
            raise WorkerProtocolError(
                f"worker output {name!r} has shape {_fmt(shape)}, expected {_fmt(entry.spec.shape)}"
            )
        count = math.prod(shape)
        if count > max_tensor_elements:
            raise WorkerProtocolError(f"worker output {name!r} has {count} elements, limit is {max_tensor_elements}")
        data = tensor.data
        if len(data) != count * entry.itemsize:
            raise WorkerProtocolError(f"worker output {name!r} has {len(data)} bytes for shape {_fmt(shape)}")
        _digest_one(digest, name, datatype, shape, data)
        if response is not None:
            response.outputs.add(name=name, datatype=datatype, shape=shape)
            response.raw_output_contents.append(data)
    return digest.hexdigest()


def _refuse_outputs(tensors: Sequence[OutputTensor], wanted: Sequence[str]) -> NoReturn:
    got = [t.name for t in tensors]
    raise WorkerProtocolError(f"worker returned outputs {got}, expected {list(wanted)}")


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
        _digest_one(h, t.name, t.datatype, t.shape, t.data)  # each read of t.data copies: once
    return h.hexdigest()
