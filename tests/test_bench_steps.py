"""bench.steps counts each step's CPU on the event-loop thread; a wrong count misleads the
next piece of performance work, so the counting itself is tested here."""

from __future__ import annotations

import asyncio
import importlib
import time

import pytest

from bench import _step_server as steps


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@pytest.fixture(autouse=True)
def _empty_totals() -> None:
    steps._totals.clear()


def test_time_a_step_spends_suspended_is_not_charged_to_it() -> None:
    # While the step waits (for a worker, say), other calls run on the same thread: their
    # CPU must not be counted as the step's, or the table would blame the wrong step.
    async def step() -> str:
        _burn(0.005)
        await asyncio.sleep(0.05)
        _burn(0.005)
        return "done"

    async def other_calls() -> None:
        await asyncio.sleep(0.01)
        _burn(0.03)

    async def main() -> str:
        busy = asyncio.create_task(other_calls())
        result = await steps._Timed("step", step())
        await busy
        return result

    assert asyncio.run(main()) == "done"
    ns, count, timed = steps._totals["step"]
    assert count == 1 and timed == 2  # two stretches on the thread, one call
    assert 0.009 < ns / 1e9 < 0.025  # its own 10 ms, not the other 30 ms


def test_a_failing_or_cancelled_step_still_fails_and_is_counted_once() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("refused")

    cleaned_up: list[bool] = []

    async def waits() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            cleaned_up.append(True)

    async def timed_wait() -> None:
        await steps._Timed("waits", waits())

    async def main() -> None:
        with pytest.raises(ValueError, match="refused"):
            await steps._Timed("fails", fails())
        task = asyncio.create_task(timed_wait())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert steps._totals["fails"][1] == 1
    assert steps._totals["waits"][1] == 1
    assert cleaned_up == [True]  # the cancellation reached the step itself


def test_a_renamed_step_stops_the_benchmark_instead_of_dropping_out() -> None:
    with pytest.raises(SystemExit, match="is gone"):
        steps._wrap("supervisor.service", "Authenticator", "authenticate_renamed", "token")


def test_every_timed_step_still_exists() -> None:
    labels = set()
    for module_name, owner_name, attribute, label in (*steps.STEPS, *steps.WHOLE):
        module = importlib.import_module(module_name)
        owner = getattr(module, owner_name) if owner_name else module
        assert callable(getattr(owner, attribute, None)), f"{module_name}.{owner_name}.{attribute}"
        labels.add(label)
    assert set(steps.CALLBACKS) <= labels
    for whole, inside in steps.INSIDE.items():
        assert whole in labels and set(inside) <= labels
