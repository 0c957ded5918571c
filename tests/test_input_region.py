"""The worker's input region: large inputs through sealed shared memory, read-only to the worker."""

from __future__ import annotations

import asyncio
import mmap
import os
import socket
from pathlib import Path

import numpy as np
import psutil
import pytest

from protos import worker_pb2 as pb
from protos.inference import grpc_predict_v2_pb2 as oip
from sandbox import worker
from sandbox.framing import encode_frame, read_frame
from supervisor.client import build_request, decode_response
from supervisor.home import Home
from supervisor.modelgraph import TensorSpec
from supervisor.modelgraph.build import build_identity
from supervisor.signing.onboard import local_signer, sign_and_register
from supervisor.tensors import DecodedRequest, decode_request, put_aside_back
from supervisor.workers.connection import WorkerConnection
from supervisor.workers.region import InputRegion
from tests.conftest import Server, start_server, stop_server, write_model
from tests.conftest import make_home as make_base_home

KIB = 1024
# A row of the "wide" identity model: 32,768 FP32s, 128 KiB. Four rows, 512 KiB, are far
# above the default threshold of 64 KiB and within the standard tier's 64-row batch.
WIDTH = 32_768
ROWS = 4


def make_home(root: Path) -> Home:
    """The tests' home, plus acme's "wide" identity model (FP32, rows of WIDTH)."""
    home = make_base_home(root)
    registry = home.registry()
    key = local_signer(registry, root.parent / "signing")
    model_dir = write_model(root.parent / "m-acme-wide", build_identity("FP32", (-1, WIDTH)))
    sign_and_register(home, registry, "acme", "wide", model_dir, key, "1")
    registry.close()
    return home


def _identity_call(server: Server, rows: int = ROWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((rows, WIDTH)).astype(np.float32)
    request = build_request("wide", {"x": x}, {"x": "FP32"})
    response = server.stub().ModelInfer(request, metadata=server.metadata(), timeout=60)
    return x, decode_response(response)["y"]


def _worker_region_mapping(server: Server) -> tuple[str, int] | None:
    """(permissions, resident KiB) of the worker's mapping of its input region, if any."""
    launcher = [p for p in psutil.Process(server.process.pid).children() if "sandbox.launcher" in " ".join(p.cmdline())]
    (worker_proc,) = [w for shim in launcher[0].children() for w in shim.children()]
    smaps = Path(f"/proc/{worker_proc.pid}/smaps").read_text().splitlines()
    for i, line in enumerate(smaps):
        if "memfd:ire-inputs-acme" in line:
            rss = next(int(entry.split()[1]) for entry in smaps[i + 1 :] if entry.startswith("Rss:"))
            return line.split()[1], rss
    return None


@pytest.fixture
def fresh_server(tmp_path: Path):
    srv = start_server(make_home(tmp_path / "home"))
    yield srv
    stop_server(srv)


# -- end to end, through `ire serve` and a confined worker -------------------------------------


@pytest.mark.root
def test_large_input_reaches_the_worker_through_its_read_only_region_intact(fresh_server: Server) -> None:
    small = np.ones((2, 3), np.float32)
    request = build_request("id-fp32", {"x": small}, {"x": "FP32"})  # 24 bytes
    fresh_server.stub().ModelInfer(request, metadata=fresh_server.metadata(), timeout=60)
    mapping = _worker_region_mapping(fresh_server)
    assert mapping is not None, "the worker has no input region mapped"
    permissions, resident = mapping
    # Read-only and shared: the worker sees what the supervisor writes and cannot write it.
    assert permissions == "r--s"
    assert resident == 0, "a small input must travel in the frame, not the region"

    x, y = _identity_call(fresh_server)
    assert np.array_equal(x, y)
    _, resident = _worker_region_mapping(fresh_server) or ("", 0)
    assert resident >= 500, f"the worker read {resident} KiB of its region; the 512 KiB input did not go through it"

    # The range is given back with the reply: the next calls reuse the region's start.
    for seed in (1, 2, 3):
        x, y = _identity_call(fresh_server, seed=seed)
        assert np.array_equal(x, y)
    _, resident = _worker_region_mapping(fresh_server) or ("", 0)
    assert resident <= 520, f"sequential calls spread over {resident} KiB of the region instead of reusing it"


@pytest.mark.root
def test_input_larger_than_the_region_travels_in_the_frame(tmp_path: Path) -> None:
    server = start_server(make_home(tmp_path / "home"), {"IRE_WORKERS__INPUT_REGION_BYTES": str(128 * KIB)})
    try:
        x, y = _identity_call(server)  # 512 KiB: does not fit a 128 KiB region
        assert np.array_equal(x, y)
        mapping = _worker_region_mapping(server)
        assert mapping is not None and mapping[1] == 0
        x, y = _identity_call(server, rows=1, seed=1)  # 128 KiB: fills it exactly
        assert np.array_equal(x, y)
        mapping = _worker_region_mapping(server)
        assert mapping is not None and mapping[1] == 128
    finally:
        stop_server(server)


@pytest.mark.root
def test_input_region_switched_off_gives_the_worker_no_shared_memory(tmp_path: Path) -> None:
    server = start_server(make_home(tmp_path / "home"), {"IRE_WORKERS__INPUT_REGION": "false"})
    try:
        x, y = _identity_call(server)
        assert np.array_equal(x, y)
        assert _worker_region_mapping(server) is None
    finally:
        stop_server(server)


# -- the region's seals: what a hostile worker holding the descriptor cannot do -----------------


def test_worker_cannot_map_its_region_writable_or_resize_it() -> None:
    region = InputRegion(64 * KIB)
    fd = region.take_fd()
    try:
        with pytest.raises(PermissionError):
            mmap.mmap(fd, 64 * KIB, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        with pytest.raises(PermissionError):
            os.pwrite(fd, b"tampered", 0)
        # Shrinking would make the supervisor's own mapping fault (SIGBUS) on its next write.
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 4 * KIB)
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 128 * KIB)
        view = mmap.mmap(fd, 64 * KIB, mmap.MAP_SHARED, mmap.PROT_READ)
        start = region.put(b"\x07" * 4096)
        assert start == 0 and view[:4096] == b"\x07" * 4096  # the worker's view sees the supervisor's write
        view.close()
    finally:
        os.close(fd)
        region.close()


def test_worker_refuses_a_range_outside_its_region() -> None:
    region = mmap.mmap(-1, 64 * KIB)
    tensor = pb.Tensor(name="x", datatype="FP32", shape=[4, 3], region_offset=64 * KIB - 16, region_length=48)
    with pytest.raises(worker._BadRequestError, match="bad input region range"):
        worker._to_array(tensor, region)
    misaligned = pb.Tensor(name="x", datatype="FP32", shape=[1, 3], region_offset=0, region_length=10)
    with pytest.raises(worker._BadRequestError, match="bad input region range"):
        worker._to_array(misaligned, region)
    # A range with no region, or with bytes in the frame as well, is refused too.
    with pytest.raises(worker._BadRequestError):
        worker._to_array(pb.Tensor(name="x", datatype="FP32", shape=[1, 3], region_length=12), None)
    both = pb.Tensor(name="x", datatype="FP32", shape=[1, 3], data=b"\0" * 12, region_length=12)
    with pytest.raises(worker._BadRequestError):
        worker._to_array(both, region)
    ok = pb.Tensor(name="x", datatype="FP32", shape=[1, 3], region_offset=64, region_length=12)
    assert worker._to_array(ok, region).shape == (1, 3)


# -- the ranges --------------------------------------------------------------------------------


def test_region_ranges_come_back_in_order_and_a_full_region_says_so() -> None:
    region = InputRegion(64 * KIB)
    try:
        a = region.put(b"a" * 20_000)
        b = region.put(b"b" * 20_000)
        c = region.put(b"c" * 20_000)
        assert (a, b, c) == (0, 20_032, 40_064)
        assert region.put(b"d" * 20_000) is None  # 5,440 bytes left at the end, none at the start
        region.give_back(b)  # out of order: held until a comes back
        assert region.put(b"d" * 20_000) is None
        region.give_back(a)
        d = region.put(b"d" * 20_000)
        assert d == 0  # wrapped round to the freed start
        assert region.put(b"e" * 30_000) is None  # between d and c: 20,032 bytes
        region.give_back(c)
        region.give_back(d)
        assert region.in_use == 0
        assert region.put(b"f" * 60_000) == 0  # empty: starts again at 0
    finally:
        region.close()


# -- inputs held aside: the supervisor's copies ------------------------------------------------


def _infer_request(x: np.ndarray) -> oip.ModelInferRequest:
    return build_request("wide", {"x": x}, {"x": "FP32"})


def _decode(request: oip.ModelInferRequest, aside_min_bytes: int) -> DecodedRequest:
    spec = (TensorSpec("x", "FP32", (-1, WIDTH)),)
    return decode_request(
        request, spec, (TensorSpec("y", "FP32", (-1, WIDTH)),), max_request_bytes=1 << 24,
        max_tensor_elements=1 << 24, aside_min_bytes=aside_min_bytes,
    )  # fmt: skip


async def _connected() -> tuple[WorkerConnection, socket.socket]:
    """A connection to a peer on a real socketpair that has sent its hello; the peer's end."""
    ours, theirs = socket.socketpair()
    theirs.sendall(encode_frame(pb.FromWorker(id=0, hello=pb.Hello(pid=1)).SerializeToString()))
    return await WorkerConnection.open(1234, ours, 1 << 24, timeout=5), theirs


def test_large_input_held_aside_keeps_its_digest_and_goes_back_unchanged() -> None:
    request = _infer_request(np.random.default_rng(0).standard_normal((1, WIDTH)).astype(np.float32))
    whole = _decode(request, 0)
    held = _decode(request, 64 * KIB)
    assert whole.aside == () and len(held.aside) == 1
    index, data = held.aside[0]
    assert index == 0 and data == whole.inputs[0].data
    assert held.inputs[0].data == b"" and list(held.inputs[0].shape) == [1, WIDTH]
    # The audit digest covers the bytes the caller sent, wherever they travel.
    assert held.digest == whole.digest
    put_aside_back(held.message, held.aside)
    assert held.message.SerializeToString() == whole.message.SerializeToString()
    # Below the threshold (a 128 KiB input, a 256 KiB threshold) it stays in the message.
    assert _decode(request, 256 * KIB).aside == ()


def test_input_held_aside_travels_in_the_frame_when_the_worker_has_no_region() -> None:
    async def case() -> None:
        conn, theirs = await _connected()
        message = pb.ToWorker()
        message.infer.inputs.add(name="x", datatype="FP32", shape=[1, 4])
        call = asyncio.create_task(conn.request(message, 5, ((0, b"\x01" * 16),)))
        loop = asyncio.get_running_loop()
        sent = pb.ToWorker.FromString(await loop.run_in_executor(None, read_frame, theirs, 1 << 24) or b"")
        assert sent.infer.inputs[0].data == b"\x01" * 16 and sent.infer.inputs[0].region_length == 0
        theirs.sendall(encode_frame(pb.FromWorker(id=sent.id, result=pb.InferResult()).SerializeToString()))
        assert (await call).WhichOneof("body") == "result"
        conn.close()
        theirs.close()

    asyncio.run(case())


def test_region_range_is_held_until_the_late_reply_of_an_abandoned_call() -> None:
    async def case() -> None:
        conn, theirs = await _connected()
        region = InputRegion(64 * KIB)
        conn.use_region(region, 1024)
        message = pb.ToWorker()
        message.infer.inputs.add(name="x", datatype="FP32", shape=[1, 1024])
        with pytest.raises(TimeoutError):
            await conn.request(message, 0.2, ((0, b"\x02" * 4096),))
        sent = pb.ToWorker.FromString(read_frame(theirs, 1 << 24) or b"")
        assert (sent.infer.inputs[0].region_offset, sent.infer.inputs[0].region_length) == (0, 4096)
        # The worker may still be reading it: the range is not free yet.
        assert region.in_use == 4096
        theirs.sendall(encode_frame(pb.FromWorker(id=sent.id, result=pb.InferResult()).SerializeToString()))
        for _ in range(100):
            if region.in_use == 0:
                break
            await asyncio.sleep(0.01)
        assert region.in_use == 0 and conn.alive
        conn.close()
        theirs.close()

    asyncio.run(case())


def test_large_tensor_inside_the_message_goes_through_the_region_too() -> None:
    """A merged batch carries its inputs in the message: the connection moves them as well."""

    async def case() -> None:
        conn, theirs = await _connected()
        region = InputRegion(64 * KIB)
        conn.use_region(region, 1024)
        message = pb.ToWorker()
        message.infer.inputs.add(name="big", datatype="FP32", shape=[1, 1024], data=b"\x03" * 4096)
        message.infer.inputs.add(name="small", datatype="FP32", shape=[1, 4], data=b"\x04" * 16)
        call = asyncio.create_task(conn.request(message, 5))
        loop = asyncio.get_running_loop()
        sent = pb.ToWorker.FromString(await loop.run_in_executor(None, read_frame, theirs, 1 << 24) or b"")
        big, small = sent.infer.inputs
        assert (big.data, big.region_offset, big.region_length) == (b"", 0, 4096)
        assert (small.data, small.region_length) == (b"\x04" * 16, 0)
        theirs.sendall(encode_frame(pb.FromWorker(id=sent.id, result=pb.InferResult()).SerializeToString()))
        await call
        assert region.in_use == 0
        conn.close()
        theirs.close()

    asyncio.run(case())
