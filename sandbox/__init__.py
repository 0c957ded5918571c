"""The untrusted side of IRE: the launcher (fork server) and the tenant worker.

Nothing in this package imports ``supervisor``: the worker runs tenant-supplied models and
must not carry the supervisor's code or secrets. Wire messages come from ``protos``.
"""

from sandbox._prctl import set_child_subreaper
from sandbox.errors import FrameError, SandboxError

__all__ = ["FrameError", "SandboxError", "set_child_subreaper"]
