"""OIP v2 datatype names and the little-endian numpy dtypes that carry them.

Shared by the worker and the supervisor so that both sides agree on byte layouts.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

OIP_TO_NUMPY: Mapping[str, np.dtype[np.generic]] = MappingProxyType(
    {
        "BOOL": np.dtype("?"),
        "UINT8": np.dtype("<u1"),
        "UINT16": np.dtype("<u2"),
        "UINT32": np.dtype("<u4"),
        "UINT64": np.dtype("<u8"),
        "INT8": np.dtype("<i1"),
        "INT16": np.dtype("<i2"),
        "INT32": np.dtype("<i4"),
        "INT64": np.dtype("<i8"),
        "FP16": np.dtype("<f2"),
        "FP32": np.dtype("<f4"),
        "FP64": np.dtype("<f8"),
    }
)

NUMPY_TO_OIP: Mapping[np.dtype[np.generic], str] = MappingProxyType(
    {dtype: name for name, dtype in OIP_TO_NUMPY.items()}
)
