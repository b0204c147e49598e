"""Billed usage on every result (``result.usage``), the emulator's billing
counters, prices, and the spending cap of a plain completer
(BudgetExceededError, nothing sent once the cap is reached)."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess

import pytest

import sail_tinker
from conftest import TOY_MODEL, completer, prompt

PRICES = {"prices": [{"model": TOY_MODEL, "window": "priority", "input": 1.0,
                      "cached_input": 0.5, "output": 2.0}]}


def test_result_usage_equals_what_the_emulator_billed(emu):
    c = completer(emu, max_tokens=8)

    async def main():
        return await asyncio.gather(*(c(prompt(i)) for i in range(5)))

    outs = asyncio.run(main())
    st = emu.stats()
    for out in outs:
        assert isinstance(out.usage, sail_tinker.Usage)
        assert out.usage.input_tokens == 12
        assert out.usage.output_tokens == len(out.tokens)
        assert out.usage.reasoning_tokens == 0
    assert st["billed_input_tokens"] == sum(o.usage.input_tokens for o in outs)
    assert st["billed_cached_tokens"] == sum(o.usage.cached_tokens for o in outs)
    assert st["billed_output_tokens"] == sum(o.usage.output_tokens for o in outs)
    usage = c.stats()["usage"]
    assert len(usage) == 1
    u = usage[0]
    assert (u["model"], u["window"], u["samples"], u["unknown"]) == (TOY_MODEL, "priority", 5, 0)
    assert u["input_tokens"] == st["billed_input_tokens"]
    assert u["output_tokens"] == st["billed_output_tokens"]


def test_a_group_sharing_a_prompt_cache_key_bills_cached_input():
    with sail_tinker.Emulator(prompt_cache_min_tokens=4) as emu:
        c = completer(emu, max_tokens=4)
        outs = asyncio.run(c.sample_group(prompt(3), 4))
        cached = sorted(o.usage.cached_tokens for o in outs)
        # The first create of the key pays full input, the others share its prompt.
        assert cached == [0, 12, 12, 12]
        st = emu.stats()
        assert st["billed_cached_tokens"] == 36
        assert st["billed_input_tokens"] == 48


def test_prices_and_cost(emu, tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(PRICES))
    c = completer(emu, max_tokens=8, prices=path)
    out = asyncio.run(c(prompt(1)))
    u = out.usage
    want = ((u.input_tokens - u.cached_tokens) * 1.0 + u.cached_tokens * 0.5
            + u.output_tokens * 2.0) / 1e6
    assert c.cost(out) == pytest.approx(want)
    with pytest.raises(sail_tinker.InvalidArgumentError):
        completer(emu, prices={"prices": [{"model": "m", "window": "w", "input": -1}]})
    with pytest.raises(sail_tinker.SailIOError):
        completer(emu, prices=str(tmp_path / "missing.json"))


def test_a_usd_budget_without_a_price_sends_nothing(emu):
    with pytest.raises(sail_tinker.InvalidArgumentError) as e:
        completer(emu, budget_usd=1.0, prices={"prices": []})
    assert TOY_MODEL in str(e.value) and "priority" in str(e.value)
    assert emu.counter("posts") == 0


def test_budget_exceeded_for_new_calls_while_in_flight_ones_complete(emu):
    # Worst case per sample: 12 prompt tokens + 8 output = 20 tokens.
    c = completer(emu, max_tokens=8, budget_tokens=50, prices=PRICES)

    async def main():
        first = [asyncio.ensure_future(c(prompt(i))) for i in range(2)]
        await asyncio.sleep(0)  # both reserved and sent
        # The third does not fit beside the two in flight (60 > 50): refused
        # at once, nothing sent.
        with pytest.raises(sail_tinker.BudgetExceededError) as e:
            await c(prompt(9))
        assert isinstance(e.value, sail_tinker.InferenceError)
        assert e.value.kind == "budget_exceeded"
        done = await asyncio.gather(*first)
        # Exhausted: later calls are refused too, even ones that would fit.
        with pytest.raises(sail_tinker.BudgetExceededError):
            await c(prompt(10), max_tokens=1)
        return done

    done = asyncio.run(main())
    assert all(o.usage is not None for o in done)
    assert emu.counter("posts") == 2
    st = emu.stats()
    b = c.budget
    assert b["exhausted"]
    assert b["spent_tokens"] == st["billed_input_tokens"] + st["billed_output_tokens"]
    assert b["spent_tokens"] <= 50
    assert b["reserved_tokens"] == 0


def test_usd_budget_never_exceeded(emu):
    # Worst case per sample: (12 x $1 + 8 x $2) / 1M = $0.000028.
    cap = 0.0001
    c = completer(emu, max_tokens=8, budget_usd=cap, prices=PRICES)

    async def main():
        ok, refused = 0, 0
        for i in range(10):
            try:
                await c(prompt(i))
                ok += 1
            except sail_tinker.BudgetExceededError:
                refused += 1
        return ok, refused

    ok, refused = asyncio.run(main())
    assert ok >= 3 and refused >= 1
    st = emu.stats()
    billed = (st["billed_input_tokens"] - st["billed_cached_tokens"]) * 1.0 \
        + st["billed_cached_tokens"] * 0.5 + st["billed_output_tokens"] * 2.0
    assert billed / 1e6 <= cap
    assert c.budget["spent_usd"] == pytest.approx(billed / 1e6)
    assert emu.counter("posts") == ok


def test_durable_run_usage_budget_and_report(emu, tmp_path):
    """A durable run: results replayed from the journal carry the usage billed
    when they ran; a cap on the completer of the rerun counts them at that
    usage and nothing is sent twice; `sail-tinker report` groups the journal
    by step and version."""
    path = str(tmp_path / "run.journal")

    async def step(run, s, **kw):
        with completer(emu, max_tokens=8, run=run, step=s, version=f"ckpt-{s}", **kw) as c:
            return await c.sample_group(prompt(s), 3)

    async def go():
        with sail_tinker.Run(path) as run:
            first = [await step(run, 0), await step(run, 1)]
        posts = emu.counter("posts")
        with sail_tinker.Run(path) as run:
            with completer(emu, max_tokens=8, run=run, step=0, version="ckpt-0",
                           budget_tokens=1000, prices=PRICES) as c:
                again = await c.sample_group(prompt(0), 3)
                spent = c.budget["spent_tokens"]
        assert emu.counter("posts") == posts  # answered from the journal
        return first, again, spent

    first, again, spent = asyncio.run(go())
    assert [o.usage for o in again] == [o.usage for o in first[0]]
    assert all(o.usage is not None for o in again)
    assert spent == sum(o.usage.input_tokens + o.usage.output_tokens for o in again)
    st = emu.stats()
    assert st["billed_input_tokens"] == sum(o.usage.input_tokens for g in first for o in g)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    out = subprocess.run([os.environ["SAIL_TINKER_BIN"], "report", path, "--format", "json",
                          "--prices", str(prices)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["rows"]
    assert [(r["step"], r["version"], r["window"], r["samples"]) for r in rows] == \
        [("0", "ckpt-0", "priority", 3), ("1", "ckpt-1", "priority", 3)]
    for r, g in zip(rows, first):
        assert r["input_tokens"] == sum(o.usage.input_tokens for o in g)
        assert r["output_tokens"] == sum(o.usage.output_tokens for o in g)
        assert r["cost_usd"] == pytest.approx(
            sum(o.usage.input_tokens * 1.0 + o.usage.output_tokens * 2.0 for o in g) / 1e6)
        assert r["latency_ms"] is None or r["latency_ms"]["p50"] >= 0


def test_stats_carries_every_described_counter(emu):
    # Every counter declared in messages/types.hpp's description reaches
    # stats() under its key (the pool's flat, guard and the histograms nested,
    # usage per row) after a real run through the emulator, with no key left
    # undescribed.
    from sail_tinker import _native
    c = completer(emu, max_tokens=4)
    asyncio.run(c(prompt(1)))
    st = c.stats()
    paths = _native.stat_paths()
    assert ("in_flight",) in paths and ("guard", "breaker") in paths
    assert ("polls_per_sample",) in paths and ("usage", 0, "reasoning_tokens") in paths
    for path in paths:
        value = st
        for key in path:
            value = value[key]
        assert value is not None, path
    assert set(st) == {p[0] for p in paths}
    assert set(st["guard"]) == {p[1] for p in paths if p[0] == "guard"}
    assert set(st["usage"][0]) == {p[2] for p in paths if p[0] == "usage"}
    # Values as counted: one sample completed, its polls in the histogram.
    assert st["completed"] == 1 and st["in_flight"] == 0
    h = st["polls_per_sample"]
    assert len(h["counts"]) == len(h["bounds"]) + 1
    assert sum(h["counts"]) == 1 and h["sum"] == st["polls"]
    assert len(st["notice_delay"]["counts"]) == len(st["notice_delay"]["bounds"]) + 1
