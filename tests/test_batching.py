"""Dynamic batching: merged runs answer each call with its own rows, and failures stay apart.

The unit tests drive :class:`Batcher` through the same callable the server gives it
(``WorkerPool.infer``), replaced by a row-wise function so that each test decides when a
run finishes and what it returns. The last tests run the real server and worker.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from protos import worker_pb2 as pb
from protos.inference import grpc_predict_v2_pb2 as oip
from protos.inference import grpc_predict_v2_pb2_grpc as oip_grpc
from supervisor.errors import InvalidInputError, WorkerCrashedError
from supervisor.modelgraph import OIP_TO_NUMPY
from supervisor.modelgraph.build import build_batch_centred, build_mlp, build_view_flatten
from supervisor.signing.onboard import local_signer, sign_and_register
from supervisor.workers.batching import Batcher, stackable
from tests.conftest import Server, ire, make_home, start_server, stop_server, write_model
from tests.onnx_ml_models import sklearn_pipeline

WIDTH = 4


def _request(rows: np.ndarray) -> pb.ToWorker:
    message = pb.ToWorker()
    message.infer.model_key = "m"
    message.infer.outputs.append("y")
    message.infer.inputs.add(name="x", datatype="FP32", shape=list(rows.shape), data=rows.astype(np.float32).tobytes())
    return message


def _rows(result: pb.InferResult) -> np.ndarray:
    out = result.outputs[0]
    return np.frombuffer(out.data, dtype=np.float32).reshape(tuple(out.shape))


class FakeWorker:
    """Doubles every row; a run waits on ``gate`` so calls pile up behind it."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, int]] = []  # (tenant, rows) per run
        self.output_bytes: list[int] = []  # what each run's outputs were expected to come to
        self.gate = asyncio.Event()
        self.refuse_rows_with: float | None = None  # a value the "model" rejects
        self.cut_outputs = True
        self.fail: BaseException | None = None

    async def infer(
        self, tenant: str, key: str, load: Callable[[], bytes], request: pb.ToWorker, *, output_bytes: int = 0
    ) -> pb.InferResult:
        tensor = request.infer.inputs[0]
        x = np.frombuffer(tensor.data, dtype=np.float32).reshape(tuple(tensor.shape))
        self.runs.append((tenant, x.shape[0]))
        self.output_bytes.append(output_bytes)
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        if self.refuse_rows_with is not None and (x == self.refuse_rows_with).any():
            raise InvalidInputError("the model rejected the input at run time")
        y = x * 2 if self.cut_outputs else (x * 2).sum(axis=0, keepdims=True)
        return pb.InferResult(outputs=[pb.Tensor(name="y", datatype="FP32", shape=list(y.shape), data=y.tobytes())])


async def _calls(
    batcher: Batcher, worker: FakeWorker, inputs: list[np.ndarray], tenants: list[str] | None = None
) -> list[tuple[pb.InferResult, int] | BaseException]:
    tenants = tenants or ["acme"] * len(inputs)
    tasks = [
        asyncio.create_task(batcher.infer(t, "m", lambda: b"", _request(x), x.shape[0]))
        for t, x in zip(tenants, inputs, strict=True)
    ]
    for _ in range(5):
        await asyncio.sleep(0)  # every call reaches the batcher while the first runs wait
    worker.gate.set()
    return await asyncio.gather(*tasks, return_exceptions=True)


def _inputs(n: int, rows: int = 1) -> list[np.ndarray]:
    return [np.full((rows, WIDTH), float(i + 1), dtype=np.float32) for i in range(n)]


def test_waiting_calls_merge_into_one_run_and_each_gets_its_own_rows() -> None:
    async def main() -> None:
        worker = FakeWorker()
        batcher = Batcher(worker.infer, max_rows=64, max_in_flight=2)
        inputs = _inputs(10)
        inputs[3] = np.full((3, WIDTH), 4.0, dtype=np.float32)  # a call of three rows among single rows
        answers = await _calls(batcher, worker, inputs)
        for x, answer in zip(inputs, answers, strict=True):
            assert not isinstance(answer, BaseException)
            np.testing.assert_array_equal(_rows(answer[0]), x * 2)
        assert [rows for _, rows in worker.runs] == [1, 11]  # the first alone, the nine that waited together
        assert sorted(shared for _, shared in answers) == [1] + [9] * 9  # type: ignore[index]
        assert batcher.merged_runs == 1

    asyncio.run(main())


def test_a_merged_run_expects_the_outputs_of_all_its_calls() -> None:
    # The worker's connection sizes the output-region range it gives a run by this figure:
    # one call's would leave the other calls' outputs to the frame.
    async def main() -> None:
        worker = FakeWorker()
        batcher = Batcher(worker.infer, max_rows=64, max_in_flight=1)
        expected = [100, 200, 300, 400]
        tasks = [
            asyncio.create_task(batcher.infer("acme", "m", lambda: b"", _request(x), 1, output_bytes=b))
            for x, b in zip(_inputs(4), expected, strict=True)
        ]
        for _ in range(5):
            await asyncio.sleep(0)
        worker.gate.set()
        await asyncio.gather(*tasks)
        assert [rows for _, rows in worker.runs] == [1, 3]
        assert worker.output_bytes == [100, 900]

    asyncio.run(main())


def test_calls_that_fill_a_run_start_beside_the_one_at_the_worker() -> None:
    # A model that takes long per run must not idle its worker between runs: waiting calls
    # that fill a whole run go at once, up to two runs at the worker.
    async def main() -> None:
        worker = FakeWorker()
        batcher = Batcher(worker.infer, max_rows=4, max_in_flight=2)
        first = asyncio.create_task(batcher.infer("acme", "m", lambda: b"", _request(_inputs(1)[0]), 1))
        await asyncio.sleep(0)
        rest = [asyncio.create_task(batcher.infer("acme", "m", lambda: b"", _request(x), 1)) for x in _inputs(9)]
        for _ in range(3):
            await asyncio.sleep(0)
        assert [rows for _, rows in worker.runs] == [1, 4]  # the second run left full, the first still running
        worker.gate.set()
        await asyncio.gather(first, *rest)
        assert [rows for _, rows in worker.runs] == [1, 4, 4, 1]

    asyncio.run(main())


def test_one_call_the_model_refuses_fails_alone_not_its_batch() -> None:
    async def main() -> None:
        worker = FakeWorker()
        worker.refuse_rows_with = 6.0
        batcher = Batcher(worker.infer, max_rows=64, max_in_flight=1)
        answers = await _calls(batcher, worker, _inputs(8))
        failed = [i for i, a in enumerate(answers) if isinstance(a, BaseException)]
        assert failed == [5]  # the call whose rows hold 6.0
        assert isinstance(answers[5], InvalidInputError)

    asyncio.run(main())


def test_a_worker_crash_fails_every_call_in_the_run() -> None:
    async def main() -> None:
        worker = FakeWorker()
        worker.fail = WorkerCrashedError("worker 1 died with the call in flight")
        batcher = Batcher(worker.infer, max_rows=64, max_in_flight=1)
        answers = await _calls(batcher, worker, _inputs(5))
        assert all(isinstance(a, WorkerCrashedError) for a in answers)

    asyncio.run(main())


def test_outputs_that_cannot_be_cut_by_rows_turn_batching_off_for_that_model() -> None:
    async def main() -> None:
        worker = FakeWorker()
        worker.cut_outputs = False  # one output row for the whole run: rows are not independent
        batcher = Batcher(worker.infer, max_rows=64, max_in_flight=1)
        inputs = _inputs(4)
        answers = await _calls(batcher, worker, inputs)
        for x, answer in zip(inputs, answers, strict=True):
            assert not isinstance(answer, BaseException)
            np.testing.assert_array_equal(_rows(answer[0]), x * 2)  # each re-run alone
        runs = len(worker.runs)
        await _calls(batcher, worker, _inputs(4))
        assert [rows for _, rows in worker.runs[runs:]] == [1, 1, 1, 1]  # never merged again
        assert batcher.merged_runs == 0

    asyncio.run(main())


def test_calls_of_different_tenants_never_share_a_run() -> None:
    async def main() -> None:
        worker = FakeWorker()
        batcher = Batcher(worker.infer, max_rows=64, max_in_flight=1)
        tenants = ["acme", "globex"] * 5
        answers = await _calls(batcher, worker, _inputs(10), tenants)
        assert not any(isinstance(a, BaseException) for a in answers)
        by_tenant: dict[str, int] = {}
        for tenant, rows in worker.runs:
            by_tenant[tenant] = by_tenant.get(tenant, 0) + rows
        assert by_tenant == {"acme": 5, "globex": 5}
        assert all(rows <= 4 for _, rows in worker.runs[2:])  # each merged run is one tenant's four waiters

    asyncio.run(main())


def test_max_rows_bounds_a_merged_run() -> None:
    async def main() -> None:
        worker = FakeWorker()
        batcher = Batcher(worker.infer, max_rows=4, max_in_flight=1)
        answers = await _calls(batcher, worker, _inputs(12))
        assert not any(isinstance(a, BaseException) for a in answers)
        assert max(rows for _, rows in worker.runs) <= 4
        assert sum(rows for _, rows in worker.runs) == 12

    asyncio.run(main())


def test_a_cancelled_waiting_call_leaves_the_queue() -> None:
    async def main() -> None:
        worker = FakeWorker()
        batcher = Batcher(worker.infer, max_rows=64, max_in_flight=1)
        first = asyncio.create_task(batcher.infer("acme", "m", lambda: b"", _request(_inputs(1)[0]), 1))
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(batcher.infer("acme", "m", lambda: b"", _request(x), 1)) for x in _inputs(3)]
        await asyncio.sleep(0)
        waiting[1].cancel()
        await asyncio.sleep(0)
        worker.gate.set()
        await first
        await asyncio.gather(waiting[0], waiting[2])
        assert [rows for _, rows in worker.runs] == [1, 2]  # the cancelled call never ran

    asyncio.run(main())


class SteppedWorker:
    """Doubles every row; each run waits until the test releases it, so the test decides
    what is at the worker, what waits, and when each run returns."""

    def __init__(self) -> None:
        self.runs: list[int] = []  # rows per run, in the order they reached the worker
        self._gates: list[asyncio.Event] = []

    async def infer(
        self, tenant: str, key: str, load: Callable[[], bytes], request: pb.ToWorker, *, output_bytes: int = 0
    ) -> pb.InferResult:
        tensor = request.infer.inputs[0]
        x = np.frombuffer(tensor.data, dtype=np.float32).reshape(tuple(tensor.shape))
        gate = asyncio.Event()
        self.runs.append(x.shape[0])
        self._gates.append(gate)
        await gate.wait()
        y = x * 2
        return pb.InferResult(outputs=[pb.Tensor(name="y", datatype="FP32", shape=list(y.shape), data=y.tobytes())])

    async def release(self, run: int, *, after: float = 0.0) -> None:
        """Let run number ``run`` (from 0) return, ``after`` seconds from now."""
        await asyncio.sleep(after)
        self._gates[run].set()
        await _turns()


async def _turns(n: int = 10) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def _start(batcher: Batcher, n: int) -> list[asyncio.Task[tuple[pb.InferResult, int]]]:
    return [asyncio.create_task(batcher.infer("acme", "m", lambda: b"", _request(x), 1)) for x in _inputs(n)]


async def _busy_then_fewer(batcher: Batcher, worker: SteppedWorker) -> list[asyncio.Task[tuple[pb.InferResult, int]]]:
    """Eight callers at the batcher at once (one at the worker, seven waiting), then five
    of the waiting ones gone: as under load, when answered callers have not come back yet.
    Returns the two calls still waiting, behind run 0."""
    first = _start(batcher, 1)
    await _turns()
    waiting = _start(batcher, 7)
    await _turns()
    for task in waiting[2:]:
        task.cancel()
    await _turns()
    assert worker.runs == [1]
    return first + waiting[:2]


def test_under_load_a_quick_models_next_run_waits_for_the_callers_expected_back() -> None:
    # Without the wait, the two waiting calls would leave alone as run 0 returns, and the
    # five callers coming back would need a run of their own: two worker round trips.
    async def main() -> None:
        worker = SteppedWorker()
        batcher = Batcher(worker.infer, max_rows=64, max_in_flight=1, wait_seconds=30.0, target_rows=16)
        calls = await _busy_then_fewer(batcher, worker)
        await worker.release(0)
        assert worker.runs == [1]  # the two waiting calls wait for more
        back = _start(batcher, 5)
        await _turns()
        # Seven wait, as many as the batcher had while run 0 was out, less run 0's caller:
        # the run leaves at once, long before the wait would end.
        assert worker.runs == [1, 7]
        await worker.release(1)
        answers = await asyncio.gather(*calls, *back)
        assert [shared for _, shared in answers] == [1] + [7] * 7

    asyncio.run(main())


def test_a_run_waiting_for_calls_that_do_not_come_leaves_when_the_wait_ends() -> None:
    async def main() -> None:
        worker = SteppedWorker()
        batcher = Batcher(worker.infer, max_rows=64, max_in_flight=1, wait_seconds=0.05, target_rows=16)
        calls = await _busy_then_fewer(batcher, worker)
        await worker.release(0)
        assert worker.runs == [1]
        await asyncio.sleep(0.1)  # longer than the wait; nobody else calls
        assert worker.runs == [1, 2]
        await worker.release(1)
        assert [shared for _, shared in await asyncio.gather(*calls)] == [1, 2, 2]

    asyncio.run(main())


def test_when_every_caller_is_already_waiting_no_run_waits() -> None:
    # Low concurrency: two callers, one at the worker and one waiting. When run 0 returns,
    # its caller is still being answered and no one else can come: a wait would only delay
    # the waiting call.
    async def main() -> None:
        worker = SteppedWorker()
        batcher = Batcher(worker.infer, max_rows=64, max_in_flight=1, wait_seconds=30.0, target_rows=16)
        calls = _start(batcher, 1)
        await _turns()
        calls += _start(batcher, 1)
        await _turns()
        await worker.release(0)
        assert worker.runs == [1, 1]
        await worker.release(1)
        await asyncio.wait_for(asyncio.gather(*calls), 5)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("wait_seconds", "target_rows", "run_seconds"),
    [
        # Its calls gather during its runs; a worker idle for the wait would cost it throughput.
        pytest.param(0.02, 16, 0.05, id="a_model_slower_than_the_wait"),
        pytest.param(30.0, 2, 0.0, id="the_target_rows_already_waiting"),
        pytest.param(0.0, 16, 0.0, id="no_wait_configured"),
    ],
)
def test_a_run_that_need_not_wait_leaves_as_the_one_ahead_returns(
    wait_seconds: float, target_rows: int, run_seconds: float
) -> None:
    # The same callers as in the waiting tests above are expected back; these never wait.
    async def main() -> None:
        worker = SteppedWorker()
        batcher = Batcher(
            worker.infer, max_rows=64, max_in_flight=1, wait_seconds=wait_seconds, target_rows=target_rows
        )
        calls = await _busy_then_fewer(batcher, worker)
        await worker.release(0, after=run_seconds)
        assert worker.runs == [1, 2]
        await worker.release(1)
        await asyncio.wait_for(asyncio.gather(*calls), 5)

    asyncio.run(main())


def test_calls_cancelled_during_the_wait_leave_nothing_waiting_behind() -> None:
    # The wait's timer must not outlive the calls it waits for: nothing of the model is
    # left at the batcher, and the next caller goes to the worker at once, alone.
    async def main() -> None:
        worker = SteppedWorker()
        batcher = Batcher(worker.infer, max_rows=64, max_in_flight=1, wait_seconds=30.0, target_rows=16)
        calls = await _busy_then_fewer(batcher, worker)
        await worker.release(0)
        assert worker.runs == [1]
        for task in calls[1:]:
            task.cancel()
        await _turns()
        assert batcher.active_groups == 0
        later = _start(batcher, 1)
        await _turns()
        assert worker.runs == [1, 1]
        await worker.release(1)
        ((_, shared),) = await asyncio.wait_for(asyncio.gather(*later), 5)
        assert shared == 1
        await calls[0]

    asyncio.run(main())


def test_only_models_with_a_dynamic_first_dimension_everywhere_are_stackable() -> None:
    assert stackable([(-1, 64)], [(-1, 10)])
    assert not stackable([(1, 64)], [(-1, 10)])
    assert not stackable([(-1, 64)], [(10,)])
    assert not stackable([], [(-1,)])


# The "standard" tier (acme's) admits 32 calls in flight; a client with more would see its
# surplus refused with RESOURCE_EXHAUSTED whenever the worker is slow to answer.
STANDARD_CONCURRENCY = 32


def _call_all_outputs(srv: Server, model: str, input_name: str, inputs: list[np.ndarray]) -> list[list[np.ndarray]]:
    """One call first (the worker starts and loads the model), then all of ``inputs`` at
    once, as many in flight as the tenant's tier admits; every output of each call."""

    async def call_all() -> list[list[np.ndarray]]:
        slots = asyncio.Semaphore(STANDARD_CONCURRENCY)
        async with grpc.aio.insecure_channel(srv.address) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)

            async def one(x: np.ndarray) -> list[np.ndarray]:
                request = oip.ModelInferRequest(model_name=model, raw_input_contents=[x.tobytes()])
                request.inputs.add(name=input_name, datatype="FP32", shape=list(x.shape))
                async with slots:
                    reply = await stub.ModelInfer(request, metadata=srv.metadata(), timeout=60)
                return [
                    np.frombuffer(raw, dtype=OIP_TO_NUMPY[out.datatype]).reshape(tuple(out.shape))
                    for out, raw in zip(reply.outputs, reply.raw_output_contents, strict=True)
                ]

            await one(inputs[0])
            return await asyncio.gather(*(one(x) for x in inputs))

    return asyncio.run(call_all())


def _call_all(srv: Server, model: str, input_name: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """:func:`_call_all_outputs`, the first output of each call."""
    return [outputs[0] for outputs in _call_all_outputs(srv, model, input_name, inputs)]


def _merged(srv: Server, model: str) -> list[int]:
    """For each allowed prediction on ``model``, how many calls shared its run."""
    records = [r for r in srv.audit() if r.get("action") == "predict" and r.get("outcome") == "allowed"]
    return [r["detail"].get("dynamic_batch", 1) for r in records if r.get("model") == model]  # type: ignore[union-attr]


def test_by_default_a_model_whose_rows_mix_is_never_merged_and_one_proven_independent_is(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    registry = home.registry()
    key = local_signer(registry, tmp_path / "signing")
    sign_and_register(
        home, registry, "acme", "centre", write_model(tmp_path / "m-centre", build_batch_centred(WIDTH)), key
    )
    # Proven all the same: PyTorch's x.view(x.size(0), -1), which reads the batch size from
    # the shape, and a scikit-learn pipeline (ai.onnx.ml operators, an INT64 label output).
    view, pipeline = build_view_flatten(), sklearn_pipeline()
    sign_and_register(home, registry, "acme", "view", write_model(tmp_path / "m-view", view), key)
    sign_and_register(home, registry, "acme", "sk", write_model(tmp_path / "m-sk", pipeline), key)
    registry.close()
    rng = np.random.default_rng(5)
    rows = [rng.standard_normal((1, WIDTH)).astype(np.float32) + 10 for _ in range(64)]
    mlp_inputs = [rng.standard_normal((1, 64)).astype(np.float32) for _ in range(64)]
    view_inputs = [rng.standard_normal((1, 2, 6)).astype(np.float32) for _ in range(64)]
    sk_inputs = [rng.standard_normal((1, 4)).astype(np.float32) for _ in range(64)]
    srv = start_server(home)  # workers.dynamic_batching = "auto", the default
    try:
        centred = _call_all(srv, "centre", "x", rows)
        _call_all(srv, "mlp", "input", mlp_inputs)
        viewed = _call_all_outputs(srv, "view", "x", view_inputs)
        predicted = _call_all_outputs(srv, "sk", "x", sk_inputs)
    finally:
        stop_server(srv)
    assert all(not y.any() for y in centred)  # each call answered as if alone
    assert max(_merged(srv, "centre")) == 1
    for name in ("mlp", "view", "sk"):  # 64 calls at once on a proven model: some ran together
        assert max(_merged(srv, name)) > 1, name
    for model, inputs, answers in ((view, view_inputs, viewed), (pipeline, sk_inputs, predicted)):
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        for x, outputs in zip(inputs, answers, strict=True):  # merged, each still gets its own rows' answer
            for got, alone in zip(outputs, session.run(None, {"x": x}), strict=True):
                np.testing.assert_allclose(got, alone, rtol=1e-5, atol=1e-5)
    assert "dynamic batching off for this model" in srv.log() and "over the batch axis" in srv.log()

    # The same calls with every stackable model merged ("on"): this model's answers then
    # depend on the other callers' rows, which is why "auto" never merges it.
    srv = start_server(home, {"IRE_WORKERS__DYNAMIC_BATCHING": "on"})
    try:
        centred = _call_all(srv, "centre", "x", rows)
    finally:
        stop_server(srv)
    assert max(_merged(srv, "centre")) > 1
    assert any(y.any() for y in centred)


def test_batched_predictions_through_the_real_server_match_the_model(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    srv = start_server(home, {"IRE_WORKERS__DYNAMIC_BATCHING": "true"})
    session = ort.InferenceSession(build_mlp(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    inputs = [rng.standard_normal((1 + i % 3, 64)).astype(np.float32) for i in range(96)]
    try:
        outputs = _call_all(srv, "mlp", "input", inputs)
    finally:
        stop_server(srv)
    for x, y in zip(inputs, outputs, strict=True):
        np.testing.assert_allclose(y, session.run(None, {"input": x})[0], rtol=1e-5, atol=1e-5)
    predicted = [r for r in srv.audit() if r.get("action") == "predict" and r.get("outcome") == "allowed"]
    assert len(predicted) == len(inputs) + 1
    shared = [r["detail"].get("dynamic_batch", 1) for r in predicted]  # type: ignore[union-attr]
    assert max(shared) > 1, json.dumps(predicted[:3])  # 96 calls at once: some waited and ran together
    # The calls of a merged run wrote their records together: one chain all the same.
    assert ire("audit", "verify", home=home.root).returncode == 0
