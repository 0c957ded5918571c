"""GPU failures that are not quota: the slice was assigned but the worker cannot use it."""

from __future__ import annotations

from supervisor.errors import UnavailableError


class GpuUnusableError(UnavailableError):
    """The tenant's worker was given a GPU slice, but ONNX Runtime could not use CUDA there
    and would have run the model on CPU, which the tenant's policy does not allow."""
