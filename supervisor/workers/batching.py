"""Dynamic batching per (tenant, model): calls that wait together run as one.

A call goes to the worker at once when no run of its (tenant, model) is there, so an
idle server adds no delay. Otherwise it waits, and when the run returns, every call that
waited leaves in one request, up to ``max_rows`` rows, at once or after a short wait for
more (below). Calls that fill a whole run (``max_rows``) do not wait: they start a second
run beside the first (``max_in_flight``), so that a model that takes long per run keeps
its worker busy. Measured on a 2-core machine: with the second run
for any waiting call, small models gained less at concurrency 16 (bigger runs, fewer of
them, win there); with one run only, a 4.2 M-parameter model at batch 32 lost a third of
its throughput (its worker idled between runs).

Only calls that can be stacked are merged: the model's inputs and outputs all have a
dynamic first dimension, and the calls agree on input names, datatypes, the other
dimensions and the requested outputs. Rows are concatenated along the first dimension
(raw row-major bytes, so no copy through numpy) and the outputs are cut back by rows. A
tenant's calls only ever share a run with that tenant's own calls, on its own worker.

A model whose rows are not independent (one that normalises over the batch, say) would
answer differently when batched: the service (supervisor/service.py) sends a model here
only when ``workers.dynamic_batching`` is "on", or "auto" (the default) and the model's
graph proves its rows independent (supervisor/modelgraph/rows.py). A merged run the model
refuses as bad input is retried call by call, so one bad call fails alone; an output that
cannot be cut by rows turns batching off for that model.

The wait for more calls (``wait_seconds``, ``workers.batch_wait_ms``). Under load, the
event loop takes in a quick model's calls more slowly than the worker answers them, and
runs stay small (3 to 4 calls at concurrency 16 on a 2-core machine). So when a run
returns, the next may wait up to ``wait_seconds`` more for calls to join it, and leaves
as soon as enough rows wait. It waits only when all of these hold:

- it would carry fewer than ``target_rows`` rows;
- the run that returned took less than ``wait_seconds``. A slower model gathers its calls
  during its runs, and a worker idle for the wait would cost it throughput;
- more calls of the group are expected: the most rows it has had at the batcher at once
  lately (waiting or at the worker, in this ``PEAK_WINDOW_SECONDS`` or the last), less
  those of the run that returned, exceed the rows waiting. The run's own callers are
  still being answered and come back only after their clients have their replies.

The run leaves when that many rows wait, or ``target_rows``, or when the wait ends. At low
concurrency, where every caller is waiting or being answered, no run waits; a call alone
on an idle model never does. A call waits the run ahead of it and the wait at most.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from protos import worker_pb2 as pb
from supervisor.errors import InvalidInputError
from supervisor.tensors import Output, Outputs, WorkerOutputs
from supervisor.workers.pool import QUEUE_SECONDS

log = structlog.get_logger(__name__)

# How long the most rows a group has had at the batcher at once counts for, at least.
PEAK_WINDOW_SECONDS = 0.5

__all__ = ["Batcher", "stackable"]


class Infer(Protocol):
    """How a run reaches the worker: ``WorkerPool.infer``."""

    def __call__(
        self, tenant: str, key: str, load: Callable[[], bytes], request: pb.ToWorker, *, output_bytes: int = 0
    ) -> Awaitable[WorkerOutputs]: ...


def stackable(input_shapes: Sequence[Sequence[int]], output_shapes: Sequence[Sequence[int]]) -> bool:
    """True when every declared input and output has a dynamic first dimension."""
    return bool(input_shapes) and all(len(s) >= 1 and s[0] == -1 for s in (*input_shapes, *output_shapes))


@dataclass(eq=False)
class _Call:
    request: pb.ToWorker
    rows: int
    output_bytes: int
    future: asyncio.Future[WorkerOutputs]
    queued_at: float
    queue_seconds: float = -1.0
    shared_with: int = 1  # calls in the run that answered this one


@dataclass(eq=False)
class _Group:
    in_flight: int = 0
    waiting: list[_Call] = field(default_factory=list)
    waiting_rows: int = 0
    # The timer that sends the waiting calls at the end of the wait for more, while it runs.
    hold: asyncio.TimerHandle | None = None
    # The wait for more calls is over: the next chance to send goes without another one.
    waited: bool = False
    # How long the last run took, sent to answered: a model slower than the wait never waits.
    last_run_seconds: float = 0.0
    # Rows at the worker, and those of the run that returned last.
    running_rows: int = 0
    returned_rows: int = 0
    # The most rows at the batcher at once (waiting or at the worker) in this window and
    # in the one before it; the window ends at window_ends (perf_counter).
    peak_rows: int = 0
    last_peak_rows: int = 0
    window_ends: float = field(default_factory=lambda: time.perf_counter() + PEAK_WINDOW_SECONDS)

    def returned(self, rows: int, sent: float) -> None:
        """A run of ``rows`` rows, sent at ``sent``, is back."""
        now = time.perf_counter()
        self.last_run_seconds = now - sent
        self.running_rows -= rows
        self.returned_rows = rows
        if now >= self.window_ends:
            self.last_peak_rows = self.peak_rows if now - self.window_ends < PEAK_WINDOW_SECONDS else 0
            self.peak_rows = self.waiting_rows + self.running_rows
            self.window_ends = now + PEAK_WINDOW_SECONDS


class Batcher:
    def __init__(
        self,
        infer: Infer,
        *,
        max_rows: int,
        max_in_flight: int = 2,
        wait_seconds: float = 0.0,
        target_rows: int = 0,
    ) -> None:
        self._infer = infer
        self._max_rows = max_rows
        self._max_in_flight = max_in_flight
        self._wait_seconds = wait_seconds
        self._target_rows = min(target_rows, max_rows)
        self._groups: dict[tuple[Any, ...], _Group] = {}
        self._unstackable: set[tuple[str, str]] = set()  # (tenant, model) whose outputs did not cut
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self.merged_runs = 0  # runs that carried more than one call, for tests and metrics

    @property
    def active_groups(self) -> int:
        """(tenant, model) groups with calls at the batcher, waiting or at the worker."""
        return len(self._groups)

    async def infer(
        self, tenant: str, key: str, load: Callable[[], bytes], request: pb.ToWorker, rows: int, output_bytes: int = 0
    ) -> tuple[WorkerOutputs, int]:
        """Run ``request`` (an infer message, ``rows`` rows, stackable) alone or with others of its kind.
        ``output_bytes``: what its outputs are expected to come to (a merged run expects the sum).

        Returns the call's result and the number of calls in the run that produced it.
        """
        if rows < 1 or rows > self._max_rows or (tenant, key) in self._unstackable:
            result: WorkerOutputs = await self._infer(tenant, key, load, request, output_bytes=output_bytes)
            return result, 1
        infer = request.infer
        inputs = tuple((t.name, t.datatype, tuple(t.shape[1:])) for t in infer.inputs)
        gkey = (tenant, key, tuple(infer.outputs), inputs)
        group = self._groups.get(gkey)
        if group is None:
            group = self._groups[gkey] = _Group()
        if group.in_flight == 0 and not group.waiting:
            group.in_flight += 1
            group.running_rows += rows
            group.peak_rows = max(group.peak_rows, group.running_rows)
            sent = time.perf_counter()
            try:
                result = await self._infer(tenant, key, load, request, output_bytes=output_bytes)
                return result, 1
            finally:
                group.in_flight -= 1
                group.returned(rows, sent)
                self._next(gkey, group, load)
        call = _Call(request, rows, output_bytes, asyncio.get_running_loop().create_future(), time.perf_counter())
        group.waiting.append(call)
        group.waiting_rows += rows
        group.peak_rows = max(group.peak_rows, group.waiting_rows + group.running_rows)
        self._next(gkey, group, load)  # a full run need not wait
        try:
            result = await call.future
        except asyncio.CancelledError:
            if call in group.waiting:
                group.waiting.remove(call)
                group.waiting_rows -= call.rows
                if not group.waiting:
                    self._next(gkey, group, load)  # nothing left to wait for
            raise
        QUEUE_SECONDS.set(call.queue_seconds)
        return result, call.shared_with

    def _next(self, gkey: tuple[Any, ...], group: _Group, load: Callable[[], bytes]) -> None:
        """Send what waits in ``group`` as one run: when no run is at the worker, or when
        the waiting calls fill a whole run and a second may start."""
        if not group.waiting:
            self._stop_waiting(group)
            if group.in_flight == 0 and self._groups.get(gkey) is group:
                del self._groups[gkey]
            return
        full = group.waiting_rows >= self._max_rows and group.in_flight < self._max_in_flight
        if group.in_flight > 0 and not full:
            return
        if (
            not full
            and not group.waited
            and group.last_run_seconds < self._wait_seconds
            and group.waiting_rows
            < min(self._target_rows, max(group.peak_rows, group.last_peak_rows) - group.returned_rows)
        ):
            # Wait for more calls, once per run. A timer of uvloop's has millisecond
            # resolution: the wait is wait_seconds rounded to the millisecond, give or take
            # one, and no timer is made or moved per call.
            if group.hold is None:
                group.hold = asyncio.get_running_loop().call_later(self._wait_seconds, self._waited, gkey, group, load)
            return
        self._stop_waiting(group)
        taken: list[_Call] = []
        rows = 0
        while group.waiting and rows + group.waiting[0].rows <= self._max_rows:
            call = group.waiting.pop(0)
            taken.append(call)
            rows += call.rows
        group.waiting_rows -= rows
        group.in_flight += 1
        group.running_rows += rows
        task = asyncio.get_running_loop().create_task(self._run(gkey, group, load, taken, rows))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _waited(self, gkey: tuple[Any, ...], group: _Group, load: Callable[[], bytes]) -> None:
        group.hold = None
        group.waited = True
        self._next(gkey, group, load)

    @staticmethod
    def _stop_waiting(group: _Group) -> None:
        if group.hold is not None:
            group.hold.cancel()
            group.hold = None
        group.waited = False

    async def _run(
        self, gkey: tuple[Any, ...], group: _Group, load: Callable[[], bytes], calls: list[_Call], rows: int
    ) -> None:
        tenant, key = gkey[0], gkey[1]
        sent = time.perf_counter()
        try:
            if len(calls) == 1:
                await self._settle(calls[0], tenant, key, load)
                return
            try:
                merged = await self._infer(
                    tenant,
                    key,
                    load,
                    _merge([c.request for c in calls], rows),
                    output_bytes=sum(c.output_bytes for c in calls),
                )
            except InvalidInputError:
                # The model refused the merged input: find the call it refuses, alone.
                await asyncio.gather(*(self._settle(c, tenant, key, load) for c in calls))
                return
            except asyncio.CancelledError:
                for c in calls:
                    c.future.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - every caller in the run gets the run's failure
                for c in calls:
                    if not c.future.done():
                        c.future.set_exception(exc)
                return
            parts = _split(merged, [c.rows for c in calls], rows)
            if parts is None:
                log.warning("model outputs cannot be cut by rows; not batching it", tenant=tenant, model_sha256=key)
                self._unstackable.add((tenant, key))
                await asyncio.gather(*(self._settle(c, tenant, key, load) for c in calls))
                return
            self.merged_runs += 1
            waited = QUEUE_SECONDS.get()
            for c, part in zip(calls, parts, strict=True):
                c.queue_seconds = sent - c.queued_at + max(waited, 0.0)
                c.shared_with = len(calls)
                if not c.future.done():
                    c.future.set_result(part)
        finally:
            group.in_flight -= 1
            group.returned(rows, sent)
            self._next(gkey, group, load)

    async def _settle(self, call: _Call, tenant: str, key: str, load: Callable[[], bytes]) -> None:
        """Run one waiting call on its own; its outcome goes to its caller."""
        started = time.perf_counter()
        try:
            result = await self._infer(tenant, key, load, call.request, output_bytes=call.output_bytes)
        except Exception as exc:  # noqa: BLE001 - the caller maps it, as if it had run the call itself
            if not call.future.done():
                call.future.set_exception(exc)
            return
        call.queue_seconds = started - call.queued_at + max(QUEUE_SECONDS.get(), 0.0)
        if not call.future.done():
            call.future.set_result(result)


def _merge(requests: list[pb.ToWorker], rows: int) -> pb.ToWorker:
    first = requests[0].infer
    merged = pb.ToWorker()
    infer = merged.infer
    infer.model_key = first.model_key
    infer.outputs.extend(first.outputs)
    for i, tensor in enumerate(first.inputs):
        data = b"".join(r.infer.inputs[i].data for r in requests)
        infer.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=[rows, *tensor.shape[1:]], data=data)
    return merged


def _split(result: WorkerOutputs, counts: list[int], rows: int) -> list[Outputs] | None:
    """``result`` cut into one result per call, or None when an output is not ``rows`` long.

    Each call's share is plain bytes (:class:`~supervisor.tensors.Outputs`): building a
    message per call and reading its bytes back out would copy each call's output twice more.
    """
    parts: list[Outputs] = [Outputs([]) for _ in counts]
    for tensor in result.outputs:
        data, shape = tensor.data, tensor.shape
        if not shape or shape[0] != rows or len(data) % rows:
            return None
        row_bytes = len(data) // rows
        name, datatype, trailing = tensor.name, tensor.datatype, list(shape[1:])
        offset = 0
        for part, count in zip(parts, counts, strict=True):
            end = offset + count * row_bytes
            part.outputs.append(Output(name, datatype, [count, *trailing], data[offset:end]))
            offset = end
    return parts
