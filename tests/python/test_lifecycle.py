"""Lifetime: async context managers, close(), shutdown() and a clean exit of
the interpreter with samples in flight (the atexit hook stops the actor
systems; nothing hangs in ~actor_system)."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import sail_tinker
from conftest import TOY_MODEL, closed_port, completer, prompt


def test_async_context_manager(emu):
    async def main():
        async with completer(emu) as c:
            out = await c(prompt(1))
            assert len(out.tokens) == 8
        assert c.closed
        with pytest.raises(sail_tinker.SampleCancelledError):
            await c(prompt(2))

    asyncio.run(main())


def test_emulator_context_manager():
    async def main():
        async with sail_tinker.Emulator() as emu:
            async with completer(emu) as c:
                assert len((await c(prompt(1))).tokens) == 8
        return emu

    emu = asyncio.run(main())
    assert not emu.running
    with pytest.raises(sail_tinker.NotConfiguredError):
        emu.base_url


def test_shutdown_then_start_again(emu):
    old = completer(emu)
    assert len(asyncio.run(old(prompt(1))).tokens) == 8
    sail_tinker.shutdown()
    assert old.closed
    with pytest.raises(sail_tinker.SampleCancelledError):
        asyncio.run(old(prompt(2)))
    new = completer(emu)
    assert len(asyncio.run(new(prompt(3))).tokens) == 8


def test_shutdown_fails_samples_in_flight(emu):
    emu.set_latency({"priority": {"queued": 60.0}})
    c = completer(emu)

    async def main():
        tasks = [asyncio.ensure_future(c(prompt(i))) for i in range(20)]
        assert await emu.wait_until_async("posts", 20, 30)
        await asyncio.get_running_loop().run_in_executor(None, sail_tinker.shutdown)
        return await asyncio.gather(*tasks, return_exceptions=True)

    outs = asyncio.run(main())
    assert all(isinstance(x, sail_tinker.SampleCancelledError) for x in outs)


EXIT_SCRIPTS = {
    # Samples in flight when main() returns (asyncio.run cancels them).
    "abandoned_tasks": """
        async def main():
            c = sail_tinker.SailTokenCompleter("emulator/toy", 8, emulator=emu)
            for i in range(50):
                asyncio.ensure_future(c([1, 2, i]))
            assert await emu.wait_until_async("posts", 50, 30)
        asyncio.run(main())
    """,
    # A loop still running in a daemon thread, with samples in flight.
    "daemon_loop": """
        import threading
        started = threading.Event()
        def loop_thread():
            async def main():
                c = sail_tinker.SailTokenCompleter("emulator/toy", 8, emulator=emu)
                tasks = [asyncio.ensure_future(c([1, 2, i])) for i in range(50)]
                started.set()
                await asyncio.gather(*tasks, return_exceptions=True)
            asyncio.run(main())
        threading.Thread(target=loop_thread, daemon=True).start()
        assert started.wait(30)
        assert emu.wait_until("posts", 50, 30)
    """,
    # Nothing closed explicitly, a cluster connecting to nobody.
    "unclosed_everything": """
        c = sail_tinker.SailTokenCompleter("emulator/toy", 8, emulator=emu)
        print(asyncio.run(c([1, 2, 3])).stop_reason)
        d = sail_tinker.SailTokenCompleter("emulator/toy", 8, nodes=["127.0.0.1:9"])
    """,
}


@pytest.mark.parametrize("name", sorted(EXIT_SCRIPTS))
def test_interpreter_exit_is_clean(name):
    script = "import asyncio, sail_tinker\n" \
             "emu = sail_tinker.Emulator(latency={'priority': {'queued': 60.0}})\n" \
             if name != "unclosed_everything" else \
             "import asyncio, sail_tinker\nemu = sail_tinker.Emulator()\n"
    script += textwrap.dedent(EXIT_SCRIPTS[name])
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Fatal" not in proc.stderr


def test_results_for_a_closed_loop_are_dropped(emu):
    # Loop A submits 50 samples and is closed before they finish: their
    # results find a closed loop (call_soon_threadsafe raises; the binding
    # drops them). The completer keeps serving other loops.
    c = completer(emu)
    loop = asyncio.new_event_loop()
    tasks = []

    async def submit():
        tasks.extend(asyncio.ensure_future(c(prompt(i))) for i in range(50))
        await asyncio.sleep(0)  # let each task send its sample

    loop.run_until_complete(submit())
    loop.close()
    for t in tasks:
        t._log_destroy_pending = False  # pending on purpose
    assert emu.wait_until("inference_runs", 50, 60)

    async def more():
        return await asyncio.gather(*(c(prompt(100 + i)) for i in range(10)))

    assert all(len(o.tokens) == 8 for o in asyncio.run(more()))


def test_closing_a_cluster_completer_wakes_wait_ready():
    # Nobody listens: wait_ready would wait its whole timeout (10 min), but
    # close() stops the cluster, which wakes it.
    c = sail_tinker.SailTokenCompleter(TOY_MODEL, 8, nodes=[f"127.0.0.1:{closed_port()}"],
                                       cluster_options={"retry_min": 0.05, "retry_max": 0.2})
    result = []
    t = threading.Thread(target=lambda: result.append(c.wait_ready(1, 600)))
    t.start()
    c.close()
    t.join(120)
    assert not t.is_alive()
    assert result == [False]
