"""Cancelling the awaiting asyncio task cancels the sample: the requester
gets CancelledError and the pool stops polling it (the emulator's poll count
for its response stops growing while another sample keeps polling)."""
from __future__ import annotations

import asyncio

import pytest

from conftest import FAST, completer, prompt

# Every sample stays queued for a minute; polls every 5-10 ms.
SLOW = {"priority": {"queued": 60.0}}
POLL_FAST = {**FAST, "all_windows": {"first_poll": 0.005, "max_poll": 0.01}}
# Polls the control sample makes after the cancel, while the cancelled one
# would have made about as many had it kept polling.
CONTROL_POLLS = 25


def polls_by_response(emu) -> dict[str, int]:
    return emu.stats()["polls_per_response"]


async def assert_polling_stopped(emu, c, cancelled_ids: set[str], counts: dict[str, int]):
    """Runs a control sample until it has polled CONTROL_POLLS times and
    checks that the cancelled responses were polled at most twice more (a
    poll already on its way when the cancel arrived)."""
    before = emu.counter("polls")
    control = asyncio.ensure_future(c(prompt(99)))
    assert await emu.wait_until_async("polls", before + CONTROL_POLLS + 2 * len(cancelled_ids), 60)
    after = polls_by_response(emu)
    for rid in cancelled_ids:
        assert after[rid] <= counts[rid] + 2, f"response {rid} still polled"
    others = [n for rid, n in after.items() if rid not in cancelled_ids]
    assert others and max(others) >= CONTROL_POLLS
    control.cancel()
    with pytest.raises(asyncio.CancelledError):
        await control


@pytest.mark.parametrize("how", ["cancel", "wait_for"])
def test_cancelling_the_task_stops_the_sample(emu, how):
    emu.set_latency(SLOW)
    c = completer(emu, runtime_options=POLL_FAST)

    async def main():
        task = asyncio.ensure_future(c(prompt(1)))
        assert await emu.wait_until_async("polls", 3, 30)  # in flight and polled
        if how == "cancel":
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            # wait_for cancels the inner await on timeout.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(task, 0.01)
            assert task.cancelled()
        counts = polls_by_response(emu)
        assert len(counts) == 1
        await assert_polling_stopped(emu, c, set(counts), counts)

    asyncio.run(main())
    st = emu.stats()
    assert st["max_runs_per_key"] == 1
    stats = c.stats()
    assert stats["failed_by_kind"].get("cancelled", 0) >= 1
    assert stats["completed"] == 0


def test_cancelling_a_group_stops_every_member(emu):
    emu.set_latency(SLOW)
    c = completer(emu, runtime_options=POLL_FAST)

    async def main():
        task = asyncio.ensure_future(c.sample_group(prompt(1), 3))
        assert await emu.wait_until_async("polls", 9, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        counts = polls_by_response(emu)
        assert len(counts) == 3
        await assert_polling_stopped(emu, c, set(counts), counts)

    asyncio.run(main())


def test_a_cancelled_future_is_never_resolved_later(emu):
    # The result of a sample whose task was cancelled after the sample
    # completed on the C++ side is dropped, not set on the cancelled future
    # (that would raise InvalidStateError inside the loop).
    c = completer(emu)
    errors = []

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, ctx: errors.append(ctx))
        tasks = [asyncio.ensure_future(c(prompt(i))) for i in range(200)]
        await asyncio.sleep(0)
        for t in tasks[::2]:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert sum(isinstance(x, asyncio.CancelledError) for x in done) == 100
        assert all(len(x.tokens) == 8 for x in done[1::2])

    asyncio.run(main())
    assert errors == []
