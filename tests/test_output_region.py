"""The worker's output region: large outputs written once into shared memory the supervisor
only reads, and copied out of it before anything checks or answers with them."""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import psutil
import pytest

from protos import worker_pb2 as pb
from sandbox import worker
from sandbox.framing import encode_frame, read_frame
from supervisor.client import build_request
from supervisor.errors import WorkerCrashedError
from supervisor.modelgraph import TensorSpec
from supervisor.modelgraph.build import build_identity
from supervisor.tensors import Output, Outputs, decode_request
from supervisor.workers.connection import WorkerConnection
from supervisor.workers.region import OutputRegion
from tests.conftest import Server, start_server, stop_server
from tests.test_input_region import KIB, _connected, _identity_call, make_home


def _mapping(pid: int, name: str) -> tuple[str, int] | None:
    """(permissions, resident KiB) of process ``pid``'s mapping of memfd ``name``, if any."""
    smaps = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    for i, line in enumerate(smaps):
        if f"memfd:{name}" in line:
            rss = next(int(entry.split()[1]) for entry in smaps[i + 1 :] if entry.startswith("Rss:"))
            return line.split()[1], rss
    return None


def _worker_pid(server: Server) -> int:
    launcher = [p for p in psutil.Process(server.process.pid).children() if "sandbox.launcher" in " ".join(p.cmdline())]
    (worker_proc,) = [w for shim in launcher[0].children() for w in shim.children()]
    return int(worker_proc.pid)


def _worker_outputs(server: Server) -> tuple[str, int] | None:
    return _mapping(_worker_pid(server), "ire-outputs-acme")


@pytest.fixture
def fresh_server(tmp_path: Path):
    srv = start_server(make_home(tmp_path / "home"))
    yield srv
    stop_server(srv)


# -- end to end, through `ire serve` and a confined worker -------------------------------------


@pytest.mark.root
def test_large_output_comes_back_through_the_workers_region_intact(fresh_server: Server) -> None:
    small = np.ones((2, 3), np.float32)
    request = build_request("id-fp32", {"x": small}, {"x": "FP32"})  # 24 bytes out
    fresh_server.stub().ModelInfer(request, metadata=fresh_server.metadata(), timeout=60)
    mapping = _worker_outputs(fresh_server)
    assert mapping is not None, "the worker has no output region mapped"
    permissions, resident = mapping
    # Shared and writable for the worker, which writes its outputs there ...
    assert permissions == "rw-s"
    assert resident == 0, "a small output must travel in the frame, not the region"
    # ... and read-only for the supervisor, which only copies them out.
    ours = _mapping(fresh_server.process.pid, "ire-outputs-acme")
    assert ours is not None and ours[0] == "r--s"

    x, y = _identity_call(fresh_server)  # 512 KiB out
    assert np.array_equal(x, y)
    _, resident = _worker_outputs(fresh_server) or ("", 0)
    assert resident >= 500, f"the worker wrote {resident} KiB of its region; the 512 KiB output did not go through it"

    # The range is given back with the reply: the next calls reuse the region's start.
    for seed in (1, 2, 3):
        x, y = _identity_call(fresh_server, seed=seed)
        assert np.array_equal(x, y)
    _, resident = _worker_outputs(fresh_server) or ("", 0)
    assert resident <= 520, f"sequential calls spread over {resident} KiB of the region instead of reusing it"


@pytest.mark.root
def test_output_larger_than_the_region_travels_in_the_frame(tmp_path: Path) -> None:
    server = start_server(make_home(tmp_path / "home"), {"IRE_WORKERS__OUTPUT_REGION_BYTES": str(128 * KIB)})
    try:
        x, y = _identity_call(server)  # 512 KiB: does not fit a 128 KiB region
        assert np.array_equal(x, y)
        assert _worker_outputs(server) == ("rw-s", 0)
        x, y = _identity_call(server, rows=1, seed=1)  # 128 KiB: fills it exactly
        assert np.array_equal(x, y)
        assert _worker_outputs(server) == ("rw-s", 128)
    finally:
        stop_server(server)


@pytest.mark.root
def test_output_region_switched_off_gives_the_worker_no_output_mapping(tmp_path: Path) -> None:
    server = start_server(make_home(tmp_path / "home"), {"IRE_WORKERS__OUTPUT_REGION": "false"})
    try:
        x, y = _identity_call(server)
        assert np.array_equal(x, y)
        assert _worker_outputs(server) is None
    finally:
        stop_server(server)


# -- the region's seals and mappings --------------------------------------------------------


def test_worker_cannot_resize_its_output_region_and_the_supervisor_maps_it_read_only() -> None:
    region = OutputRegion(64 * KIB)
    fd = region.take_fd()
    try:
        # Shrinking would make the supervisor's mapping fault (SIGBUS) when it copies out.
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 4 * KIB)
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 128 * KIB)
        # The worker maps it for writing, and the supervisor reads what it wrote ...
        view = mmap.mmap(fd, 64 * KIB, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        start = region.reserve(4096)
        assert start == 0
        view[:4096] = b"\x07" * 4096
        assert region.read(0, 4096) == b"\x07" * 4096
        view.close()
        # ... through a mapping it cannot write.
        with pytest.raises(TypeError):
            region._map[:1] = b"x"
    finally:
        os.close(fd)
        region.close()


# -- the connection: ranges, copies and a hostile worker's replies ------------------------------


@contextlib.asynccontextmanager
async def _with_output_region(
    size: int = 64 * KIB,
) -> AsyncIterator[tuple[WorkerConnection, socket.socket, OutputRegion, mmap.mmap]]:
    """A connection whose peer maps the output region for writing, as a worker does; all
    of it closed afterwards."""
    conn, theirs = await _connected()
    region = OutputRegion(size)
    fd = region.take_fd()
    try:
        view = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    conn.use_output_region(region, 1024)
    try:
        yield conn, theirs, region, view
    finally:
        conn.close()
        theirs.close()
        view.close()


def _infer_message() -> pb.ToWorker:
    message = pb.ToWorker()
    message.infer.inputs.add(name="x", datatype="FP32", shape=[1, 1024], data=b"\x01" * 4096)
    message.infer.outputs.append("y")
    return message


async def _sent(theirs: socket.socket) -> pb.ToWorker:
    loop = asyncio.get_running_loop()
    return pb.ToWorker.FromString(await loop.run_in_executor(None, read_frame, theirs, 1 << 24) or b"")


def _reply(call_id: int, **tensor: object) -> bytes:
    result = pb.InferResult(outputs=[pb.Tensor(name="y", datatype="FP32", shape=[1, 1024], **tensor)])
    return encode_frame(pb.FromWorker(id=call_id, result=result).SerializeToString())


def test_output_is_copied_out_of_the_region_before_the_caller_sees_it() -> None:
    async def case() -> None:
        async with _with_output_region() as (conn, theirs, region, view):
            call = asyncio.create_task(conn.infer(_infer_message(), 5, output_bytes=4096))
            sent = await _sent(theirs)
            assert (sent.infer.output_region_offset, sent.infer.output_region_length) == (0, 4096)
            view[:4096] = b"\x05" * 4096
            theirs.sendall(_reply(sent.id, region_offset=0, region_length=4096))
            reply = await call
            # The worker writes its range again once it has replied: the caller holds a copy.
            view[:4096] = b"\x06" * 4096
            assert isinstance(reply, Outputs)
            assert reply.outputs == [Output("y", "FP32", [1, 1024], b"\x05" * 4096)]
            assert region.in_use == 0 and conn.alive

    asyncio.run(case())


def test_outputs_in_the_region_and_in_the_frame_come_back_together_in_order() -> None:
    async def case() -> None:
        async with _with_output_region() as (conn, theirs, _region, view):
            call = asyncio.create_task(conn.infer(_infer_message(), 5, output_bytes=4096))
            sent = await _sent(theirs)
            view[:4096] = b"\x05" * 4096
            result = pb.InferResult(
                outputs=[
                    pb.Tensor(name="framed", datatype="INT64", shape=[1, 2], data=b"\x09" * 16),
                    pb.Tensor(name="y", datatype="FP32", shape=[1, 1024], region_offset=0, region_length=4096),
                ]
            )
            theirs.sendall(encode_frame(pb.FromWorker(id=sent.id, result=result).SerializeToString()))
            reply = await call
            assert isinstance(reply, Outputs)
            assert reply.outputs == [
                Output("framed", "INT64", [1, 2], b"\x09" * 16),
                Output("y", "FP32", [1, 1024], b"\x05" * 4096),
            ]

    asyncio.run(case())


def test_small_outputs_get_no_range_of_the_output_region() -> None:
    async def case() -> None:
        async with _with_output_region() as (conn, theirs, region, _view):
            call = asyncio.create_task(conn.infer(_infer_message(), 5, output_bytes=40))
            sent = await _sent(theirs)
            assert sent.infer.output_region_length == 0 and region.in_use == 0
            theirs.sendall(_reply(sent.id, data=b"\x02" * 4096))
            reply = await call
            assert isinstance(reply, pb.FromWorker) and reply.result.outputs[0].data == b"\x02" * 4096

    asyncio.run(case())


@pytest.mark.parametrize(
    ("offset", "length", "data"),
    [
        (4096, 4096, b""),  # past the call's range, inside the region
        (64 * KIB - 64, 4096, b""),  # past the region's end
        (0, 4096, b"\x00" * 4096),  # in the range and in the frame at once
    ],
)
def test_worker_writing_outside_its_output_range_ends_the_connection(offset: int, length: int, data: bytes) -> None:
    async def case() -> None:
        async with _with_output_region() as (conn, theirs, region, _view):
            call = asyncio.create_task(conn.infer(_infer_message(), 5, output_bytes=4096))
            sent = await _sent(theirs)
            theirs.sendall(_reply(sent.id, region_offset=offset, region_length=length, data=data))
            with pytest.raises(WorkerCrashedError):
                await call
            assert not conn.alive
            assert region.in_use == 0  # released with the connection

    asyncio.run(case())


def test_output_range_is_held_until_the_late_reply_of_an_abandoned_call() -> None:
    async def case() -> None:
        async with _with_output_region() as (conn, theirs, region, _view):
            with pytest.raises(TimeoutError):
                await conn.infer(_infer_message(), 0.2, output_bytes=4096)
            sent = pb.ToWorker.FromString(read_frame(theirs, 1 << 24) or b"")
            assert sent.infer.output_region_length == 4096
            # The worker may still write it: the range is not free yet.
            assert region.in_use == 4096
            theirs.sendall(_reply(sent.id, region_offset=0, region_length=4096))
            for _ in range(100):
                if region.in_use == 0:
                    break
                await asyncio.sleep(0.01)
            assert region.in_use == 0 and conn.alive

    asyncio.run(case())


# -- the worker's side ---------------------------------------------------------------------------


def _worker_with_identity(region: mmap.mmap) -> worker.Worker:
    w = worker.Worker(1, [], output_region=region)
    load = pb.ToWorker(id=1, load=pb.LoadModel(model_key="id", onnx=build_identity("FP32", (-1, 1024))))
    assert w.handle(load).WhichOneof("body") == "loaded"
    return w


def _run(w: worker.Worker, x: np.ndarray, offset: int, length: int) -> pb.Tensor:
    message = pb.ToWorker(id=2)
    message.infer.model_key = "id"
    message.infer.inputs.add(name="x", datatype="FP32", shape=list(x.shape), data=x.tobytes())
    message.infer.outputs.append("y")
    message.infer.output_region_offset, message.infer.output_region_length = offset, length
    reply = w.handle(message)
    assert reply.WhichOneof("body") == "result", reply
    return reply.result.outputs[0]


def test_worker_writes_an_output_that_fits_its_range_and_frames_one_that_does_not() -> None:
    region = mmap.mmap(-1, 64 * KIB)
    w = _worker_with_identity(region)
    x = np.random.default_rng(0).standard_normal((2, 1024)).astype(np.float32)  # 8 KiB
    placed = _run(w, x, 4096, 8192)
    assert (placed.data, placed.region_offset, placed.region_length) == (b"", 4096, 8192)
    assert region[4096 : 4096 + 8192] == x.tobytes()
    # A range too small for it, one past the region's end, or none: the frame.
    for offset, length in ((0, 8191), (60 * KIB, 8192), (0, 0)):
        framed = _run(w, x, offset, length)
        assert (framed.data, framed.region_length) == (x.tobytes(), 0)


def test_decoded_request_expects_its_outputs_bytes_from_the_models_metadata() -> None:
    x = np.zeros((4, 8), np.float32)
    request = build_request("m", {"x": x}, {"x": "FP32"})
    outputs = (
        TensorSpec("rows", "FP32", (-1, 16)),  # 4 rows of 64 bytes
        TensorSpec("fixed", "INT64", (2, 3)),  # 48 bytes
        TensorSpec("unknown", "FP32", (-1, -1)),  # the metadata does not say
    )
    decoded = decode_request(
        request, (TensorSpec("x", "FP32", (-1, 8)),), outputs, max_request_bytes=1 << 20, max_tensor_elements=1 << 20
    )
    assert decoded.output_bytes == 4 * 64 + 48
    # Only the outputs asked for count.
    request.outputs.add(name="fixed")
    decoded = decode_request(
        request, (TensorSpec("x", "FP32", (-1, 8)),), outputs, max_request_bytes=1 << 20, max_tensor_elements=1 << 20
    )
    assert decoded.output_bytes == 48
