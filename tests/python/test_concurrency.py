"""asyncio integration: thousands of concurrent awaits on one loop, the GIL
released while C++ works, several loops in several threads."""
from __future__ import annotations

import asyncio
import threading

from conftest import completer, prompt


def test_2000_concurrent_awaits_on_one_loop(emu):
    # Each sample stays queued 50 ms, so they overlap on the C++ side too.
    emu.set_latency({"priority": {"queued": 0.05}})
    c = completer(emu, max_tokens=8)
    n = 2000
    in_flight = peak = 0

    async def one(i):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await c(prompt(i))
        finally:
            in_flight -= 1

    async def main():
        return await asyncio.gather(*(one(i) for i in range(n)))

    outs = asyncio.run(main())
    assert peak == n  # every await was pending at once
    assert len(outs) == n
    assert all(len(o.tokens) == 8 and len(o.logprobs) == 8 for o in outs)
    st = emu.stats()
    assert st["inference_runs_total"] == n
    assert st["max_runs_per_key"] == 1
    assert c.stats()["completed"] == n


def test_another_thread_runs_while_samples_are_in_flight(emu):
    emu.set_latency({"priority": {"queued": 60.0}})
    c = completer(emu)
    finished = threading.Event()

    def compute():
        total = 0
        for i in range(2_000_000):  # pure Python: needs the GIL throughout
            total += i
        finished.set()

    async def main():
        loop = asyncio.get_running_loop()
        tasks = [asyncio.ensure_future(c(prompt(i))) for i in range(200)]
        assert await emu.wait_until_async("posts", 200, 60)
        worker = threading.Thread(target=compute)
        worker.start()
        # The loop idles in select() with 200 samples in flight; the C++ side
        # polls them without the GIL, so the other thread gets it.
        assert await loop.run_in_executor(None, finished.wait, 120)
        worker.join()
        assert not any(t.done() for t in tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def test_blocking_calls_release_the_gil(emu):
    # The main thread blocks in C++ (wait_until) until 50 samples reached the
    # emulator; a second Python thread has to run to submit them.
    c = completer(emu)
    results = []

    def submitter():
        async def main():
            return await asyncio.gather(*(c(prompt(i)) for i in range(50)))
        results.extend(asyncio.run(main()))

    t = threading.Thread(target=submitter)
    t.start()
    assert emu.wait_until("posts", 50, 120)
    t.join(120)
    assert not t.is_alive()
    assert len(results) == 50
    # stats() blocks too (a request to the completer), without the GIL.
    assert c.stats()["completed"] == 50


def test_loops_in_several_threads_share_a_completer(emu):
    c = completer(emu, max_tokens=4)
    outs: dict[int, list] = {}

    def worker(k):
        async def main():
            return await asyncio.gather(*(c(prompt(100 * k + i)) for i in range(100)))
        outs[k] = asyncio.run(main())

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(outs) == [0, 1, 2, 3]
    assert all(len(o.tokens) == 4 for xs in outs.values() for o in xs)
    assert emu.stats()["inference_runs_total"] == 400
