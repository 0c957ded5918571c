"""Request ids name one call in the audit log and the logs: never two calls with one id."""

from __future__ import annotations

import os
import re

from supervisor.transport.calls import _request_id


def test_request_ids_are_32_hex_digits_and_never_repeat() -> None:
    ids = [_request_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    # The ids come from a counter under a per-process key: a child that kept the parent's
    # key and counter would hand out the parent's next ids as its own.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, "".join(_request_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    child = {text[i : i + 32] for i in range(0, len(text), 32)}
    parent = {_request_id() for _ in range(100)}
    assert len(child) == 100 and not child & parent
