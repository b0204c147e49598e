"""Durable runs (sail_tinker.Run, SailTokenCompleter(run=, step=)): the paths a
Python training loop takes.

- A run reopened answers the same calls from its journal with no HTTP request;
  results carry step and version.
- Same run, same step, another model at the same call: ValueError naming
  `model`, nothing sent.
- Through two service nodes (nodes=): the journal stays in the trainer's
  process; reopened, the run answers from it with no request.
- examples/python/grpo_loop.py (single- and multi-turn episodes, 3 steps,
  groups of 4) SIGKILLed at failpoints picked at random (a body journaled
  and its create not sent; a create accepted and its response id not
  journaled; inside a journal commit) five times and run again: its records
  equal those of one uninterrupted run with the same run id against a fresh
  emulator with the same seed, and the emulator ran exactly one inference
  per sample.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys

import pytest

import sail_tinker
from conftest import FAST, TOY_MODEL, ModelInput, completer, prompt

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python",
                       "grpo_loop.py")
SEED = 4242
# 3 steps x (2 single-turn episodes x 4 + 2 two-turn episodes x 8).
GRPO_SAMPLES = 3 * (2 * 4 + 2 * 8)


def posts(emu) -> int:
    return emu.counter("posts")


def sail_requests(emu) -> int:
    return emu.counter("posts") + emu.counter("polls")


async def one_step(c):
    group = await c.sample_group(ModelInput(prompt(1)), 4)
    singles = [await c(prompt(2)), await c(prompt(3), max_tokens=4)]
    return group + singles


def test_run_id_is_generated_and_kept(tmp_path):
    path = str(tmp_path / "run.journal")
    with sail_tinker.Run(path) as run:
        rid = run.id
        assert rid.startswith("run-")
    assert run.closed
    with sail_tinker.Run(path) as again:
        assert again.id == rid
    with pytest.raises(ValueError, match="run_id"):
        sail_tinker.Run(path, run_id="another-run")
    with sail_tinker.Run(str(tmp_path / "named.journal"), run_id="my-run") as named:
        assert named.id == "my-run"


def test_step_is_required_with_run(emu, tmp_path):
    with sail_tinker.Run(str(tmp_path / "run.journal")) as run:
        with pytest.raises(ValueError, match="step"):
            completer(emu, run=run)
        with pytest.raises(TypeError, match="step"):
            completer(emu, run=run, step=1.5)
        with pytest.raises(ValueError, match="run="):
            completer(emu, step=1)


def test_reopened_run_answers_from_the_journal_without_requests(emu, tmp_path):
    path = str(tmp_path / "run.journal")

    async def go():
        with sail_tinker.Run(path) as run:
            with completer(emu, run=run, step=0, version="ckpt-0") as c:
                first = await one_step(c)
            assert run.stats()["0"]["fresh"] == 6
        assert all(r.step == 0 and r.version == "ckpt-0" for r in first)
        before = sail_requests(emu)
        runs = emu.stats()["inference_runs_total"]
        with sail_tinker.Run(path) as run:
            with completer(emu, run=run, step=0, version="ckpt-0") as c:
                again = await one_step(c)
            st = run.stats()["0"]
        assert [(r.tokens, r.maybe_logprobs, r.stop_reason) for r in again] == \
            [(r.tokens, r.maybe_logprobs, r.stop_reason) for r in first]
        assert st["from_journal"] == 6 and st["fresh"] == 0
        assert sail_requests(emu) == before  # not one request
        assert emu.stats()["inference_runs_total"] == runs == 6

    asyncio.run(go())


def test_another_model_at_the_same_call_is_a_value_error_naming_model(emu, tmp_path):
    path = str(tmp_path / "run.journal")

    async def go():
        async with sail_tinker.Run(path, run_id="model-run") as run:
            with completer(emu, run=run, step="s1") as c:
                await c(prompt(5))
        before = posts(emu)
        async with sail_tinker.Run(path) as run:
            c = sail_tinker.SailTokenCompleter("emulator/other", 8, emulator=emu,
                                               runtime_options=FAST, run=run, step="s1")
            with c:
                with pytest.raises(ValueError, match="model"):
                    await c(prompt(5))
        assert posts(emu) == before  # nothing sent

    asyncio.run(go())


def run_loop(emu, tmp_path, failpoint: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("SAIL_TINKER_FAILPOINT", None)
    if failpoint:
        env["SAIL_TINKER_FAILPOINT"] = failpoint
    return subprocess.run(
        [sys.executable, EXAMPLE, "--journal", str(tmp_path / "grpo.journal"), "--run-id",
         "grpo-run", "--out", str(tmp_path / "records.json"), "--base-url", emu.base_url,
         "--api-key", emu.api_key],
        env=env, capture_output=True, text=True, timeout=300)


def reference_records(tmp_path_factory) -> list:
    d = tmp_path_factory.mktemp("reference")
    with sail_tinker.Emulator(seed=SEED, latency={"all": {"queued": 0.002}}) as emu:
        res = run_loop(emu, d)
        assert res.returncode == 0, res.stdout + res.stderr
        assert emu.stats()["inference_runs_total"] == GRPO_SAMPLES
    with open(d / "records.json") as f:
        return json.load(f)


def test_grpo_loop_killed_five_times_ends_with_the_records_of_one_run(tmp_path,
                                                                      tmp_path_factory):
    reference = reference_records(tmp_path_factory)
    assert len(reference) == GRPO_SAMPLES
    assert {r["version"] for r in reference} == {f"policy-step-{s}" for s in range(3)}
    rng = random.Random(20)
    kills = 0
    with sail_tinker.Emulator(seed=SEED, latency={"all": {"queued": 0.002}}) as emu:
        for _ in range(5):
            point = rng.choice(["sample_journaled", "sample_accepted", "journal_commit"])
            res = run_loop(emu, tmp_path, f"{point}:{rng.randint(2, 12)}")
            assert res.returncode in (-signal.SIGKILL, 0), res.stdout + res.stderr
            kills += res.returncode == -signal.SIGKILL
        assert kills >= 3
        res = run_loop(emu, tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
        with open(tmp_path / "records.json") as f:
            assert json.load(f) == reference
        st = emu.stats()
        assert st["inference_runs_total"] == GRPO_SAMPLES
        assert st["max_runs_per_key"] == 1
        # Once more: every sample from the journal, no request at all.
        before = sail_requests(emu)
        res = run_loop(emu, tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "0 fresh" in res.stdout
        assert sail_requests(emu) == before


def test_durable_through_service_nodes_then_resumed_from_the_journal(emu, tmp_path):
    # The journal stays in this process; the nodes get pre-encoded bodies.
    from serve_nodes import ServeNode
    cluster = {"heartbeat_interval": 0.2, "connection_timeout": 1.0, "connect_timeout": 5.0}
    nodes = [ServeNode(emu) for _ in range(2)]
    path = str(tmp_path / "run.journal")
    try:
        async def go(run):
            c = sail_tinker.SailTokenCompleter(TOY_MODEL, 8, nodes=[n.address for n in nodes],
                                               cluster_options=cluster, run=run, step=3)
            assert c.wait_ready(2, 30)
            with c:
                return await one_step(c)

        with sail_tinker.Run(path) as run:
            first = asyncio.run(go(run))
            assert run.stats()["3"]["fresh"] == 6
        assert all(r.step == 3 for r in first)
        before = sail_requests(emu)
        with sail_tinker.Run(path) as run:
            again = asyncio.run(go(run))
            assert run.stats()["3"]["from_journal"] == 6
        assert [r.tokens for r in again] == [r.tokens for r in first]
        assert sail_requests(emu) == before
        st = emu.stats()
        assert st["inference_runs_total"] == 6 and st["max_runs_per_key"] == 1
    finally:
        for n in nodes:
            n.close()


def test_calls_in_another_order_after_a_restart_are_answered_from_the_journal(emu, tmp_path):
    # Concurrent calls may reach the run in another order after a restart;
    # a call the journal holds under its key is that call (its settings, here
    # the per-call cap, differ from the call at the same position).
    path = str(tmp_path / "run.journal")

    async def calls(c, order):
        caps = {"a": 3, "b": 5}
        return {k: await c(prompt(1 if k == "a" else 2), max_tokens=caps[k]) for k in order}

    async def go():
        with sail_tinker.Run(path) as run, completer(emu, run=run, step=0) as c:
            first = await calls(c, "ab")
        before = sail_requests(emu)
        with sail_tinker.Run(path) as run, completer(emu, run=run, step=0) as c:
            again = await calls(c, "ba")
            st = run.stats()["0"]
        assert {k: v.tokens for k, v in again.items()} == {k: v.tokens for k, v in first.items()}
        assert st["from_journal"] == 2 and st["fresh"] == 0
        assert sail_requests(emu) == before

    asyncio.run(go())
