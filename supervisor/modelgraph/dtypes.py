"""The tensor element types IRE serves, named three ways: ONNX, OIP v2 and numpy.

These twelve are the OIP v2 datatypes with a fixed width and a numpy equivalent.
Anything else (STRING, BFLOAT16, complex, float8, int4...) is refused at registration.
Numpy dtypes are little-endian, the byte order of both ONNX ``raw_data`` and OIP; that
table is the one the worker uses (``sandbox.dtypes``), so both sides share one layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from protos.onnx_subset_pb2 import TensorProto
from sandbox.dtypes import OIP_TO_NUMPY

__all__ = ["OIP_TO_NUMPY", "OIP_TO_ONNX", "ONNX_TO_OIP", "onnx_type_name"]

OIP_TO_ONNX: Mapping[str, int] = MappingProxyType(
    {
        "BOOL": TensorProto.BOOL,
        "UINT8": TensorProto.UINT8,
        "UINT16": TensorProto.UINT16,
        "UINT32": TensorProto.UINT32,
        "UINT64": TensorProto.UINT64,
        "INT8": TensorProto.INT8,
        "INT16": TensorProto.INT16,
        "INT32": TensorProto.INT32,
        "INT64": TensorProto.INT64,
        "FP16": TensorProto.FLOAT16,
        "FP32": TensorProto.FLOAT,
        "FP64": TensorProto.DOUBLE,
    }
)

ONNX_TO_OIP: Mapping[int, str] = MappingProxyType({v: k for k, v in OIP_TO_ONNX.items()})


def onnx_type_name(elem_type: int) -> str:
    """Return ONNX's name for an element type, e.g. 8 -> 'STRING', for messages."""
    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:
        return "unknown"
