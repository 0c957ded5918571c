"""Errors of the sandbox package."""

from __future__ import annotations


class SandboxError(Exception):
    """Base of every error raised by the sandbox package."""


class FrameError(SandboxError):
    """A frame on a worker or launcher channel is malformed or over its size bound."""
