"""A small OIP v2 client for people at a terminal (``ire predict``) and for the demo."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import numpy as np

from protos.inference import grpc_predict_v2_pb2 as oip
from protos.inference import grpc_predict_v2_pb2_grpc as oip_grpc
from sandbox.dtypes import OIP_TO_NUMPY
from supervisor.errors import InvalidInputError


def build_request(
    model: str, inputs: Mapping[str, np.ndarray], datatypes: Mapping[str, str], version: str = ""
) -> oip.ModelInferRequest:
    """A ModelInfer request with raw contents, casting each input to its declared datatype."""
    request = oip.ModelInferRequest(model_name=model, model_version=version)
    for name, array in inputs.items():
        datatype = datatypes.get(name)
        if datatype is None:
            raise InvalidInputError(f"model {model!r} has no input {name!r}; its inputs are {sorted(datatypes)}")
        data = np.ascontiguousarray(array, dtype=OIP_TO_NUMPY[datatype])
        request.inputs.add(name=name, datatype=datatype, shape=data.shape)
        request.raw_input_contents.append(data.tobytes())
    return request


def decode_response(response: oip.ModelInferResponse) -> dict[str, np.ndarray]:
    out = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        out[tensor.name] = np.frombuffer(raw, dtype=OIP_TO_NUMPY[tensor.datatype]).reshape(tuple(tensor.shape))
    return out


class Client:
    def __init__(self, target: str, token: str | None) -> None:
        self._channel = grpc.insecure_channel(target)
        self._stub = oip_grpc.GRPCInferenceServiceStub(self._channel)
        self._md = (("authorization", f"Bearer {token}"),) if token else ()

    def close(self) -> None:
        self._channel.close()

    def metadata(self, model: str, version: str = "") -> oip.ModelMetadataResponse:
        response: oip.ModelMetadataResponse = self._stub.ModelMetadata(
            oip.ModelMetadataRequest(name=model, version=version), metadata=self._md, timeout=30
        )
        return response

    def infer(self, model: str, inputs: Mapping[str, np.ndarray], version: str = "") -> dict[str, np.ndarray]:
        meta = self.metadata(model, version)
        datatypes = {t.name: t.datatype for t in meta.inputs}
        request = build_request(model, inputs, datatypes, version)
        return decode_response(self._stub.ModelInfer(request, metadata=self._md, timeout=60))
