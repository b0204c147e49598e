"""The step sampler from Python (Run.group_sampler, GroupSampler.next_step /
drain / close), against the emulator with heavy-tailed latency scaled down:

- over-provisioned steps return K complete groups of n members; every
  prompt is delivered exactly once, and after drain every sample the
  emulator ran (billed) reached the caller, tagged with step and version;
- across an adapter switch between steps, carried-over groups keep the
  version that sampled them with staleness 1; with max_staleness=0 they go
  to ``batch.stale`` (still delivered) and the step waits for fresh groups;
- a training process SIGKILLed right after a next_step, started again on
  the same run: the unacknowledged batch comes again, acknowledged groups
  never, and the emulator ran one inference per member (nothing created
  twice);
- a member failing after its retries is refilled under a new key; a
  structural prompt failure goes to `batch.failed` with its typed error;
- the event loop keeps running other tasks while next_step waits;
- bad inputs: TypeError / ValueError naming the field, duplicate prompt
  ids the typed InvalidArgumentError.
"""
from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import sail_tinker
from conftest import FAST, TOY_MODEL, ModelInput, completer, prompt

# Log-normal member latency, p99 = 10 x median, scaled down.
SPREAD = {"all": {"median": 0.004, "p99_ratio": 10}}


def prompts(n: int) -> list[dict]:
    return [{"id": f"p{i}", "prompt": prompt(i), "meta": {"i": i}} for i in range(n)]


def every_group(batch: sail_tinker.StepBatch) -> list[sail_tinker.SampledGroup]:
    return batch.groups + batch.stale + batch.failed


def settle(sampler: sail_tinker.GroupSampler, timeout: float = 60.0) -> None:
    """Until no group of the sampler is open (its counters, not a delay)."""
    deadline = time.monotonic() + timeout
    while sampler.stats()["in_flight"] > 0:
        assert time.monotonic() < deadline, sampler.stats()
        time.sleep(0.001)


def test_steps_deliver_k_complete_groups_every_prompt_once_every_billed_member(tmp_path):
    async def main(emu):
        c = completer(emu, max_tokens=4)
        seen: dict[str, int] = {}
        members = 0
        with sail_tinker.Run(str(tmp_path / "run.journal"), "py-basic") as run:
            async with run.group_sampler(prompts(14), group_size=3, groups_per_step=4,
                                         overprovision=0.5, max_staleness=1) as s:
                for step in range(3):
                    b = await s.next_step(c, version="v0")
                    assert b.step == step and b.version == "v0"
                    assert len(b.groups) == 4 and not b.failed
                    for g in every_group(b):
                        assert len(g.members) == 3
                        assert g.version == "v0" and g.staleness == 0 and g.step == step
                        assert g.meta == {"i": int(g.prompt_id[1:])}
                        for m in g.members:
                            assert m.step == g.launched_step and m.version == "v0"
                            assert m.usage is not None and m.usage.output_tokens == len(m.tokens)
                            assert len(m.tokens) <= 4
                        seen[g.prompt_id] = seen.get(g.prompt_id, 0) + 1
                        members += len(g.members)
                rest = await s.drain()
                for g in every_group(rest):
                    seen[g.prompt_id] = seen.get(g.prompt_id, 0) + 1
                    members += len(g.members)
                st = s.stats()
            assert s.closed
        assert seen == {f"p{i}": 1 for i in range(14)}
        assert members == 14 * 3
        assert st["members_completed"] == st["members_delivered"] == members
        assert st["in_flight"] == 0 and st["failed"] == 0
        # Billed (run by the emulator) == delivered, once per key.
        es = emu.stats()
        assert es["inference_runs_total"] == members
        assert es["max_runs_per_key"] == 1
        await c.aclose()

    with sail_tinker.Emulator(latency=SPREAD) as emu:
        asyncio.run(main(emu))


def test_a_new_completer_every_step_keeps_the_carried_groups_running(tmp_path):
    # docs/python.md's loop: a new SailTokenCompleter per step, the previous
    # one dropped. Groups carried over were launched with it and are billed:
    # they must still finish and be delivered, not fail with it.
    async def main(emu):
        seen: dict[str, int] = {}
        carried = 0
        with sail_tinker.Run(str(tmp_path / "run.journal"), "py-new-completer") as run:
            async with run.group_sampler(prompts(8), group_size=2, groups_per_step=2,
                                         overprovision=1.0, max_staleness=2) as s:
                for step in range(3):
                    c = completer(emu, max_tokens=4)
                    b = await s.next_step(c, version=f"v{step}")
                    del c
                    gc.collect()
                    carried = max(carried, s.stats()["in_flight"])
                    for g in every_group(b):
                        seen[g.prompt_id] = seen.get(g.prompt_id, 0) + 1
                        assert g.error is None and len(g.members) == 2
                rest = await s.drain()
                for g in every_group(rest):
                    seen[g.prompt_id] = seen.get(g.prompt_id, 0) + 1
                    assert g.error is None and len(g.members) == 2
                st = s.stats()
        assert carried > 0  # some groups were open when their completer went
        assert seen == {f"p{i}": 1 for i in range(8)}
        assert st["failed"] == 0 and st["refills"] == 0
        es = emu.stats()
        assert es["inference_runs_total"] == st["members_delivered"] == 16
        assert es["max_runs_per_key"] == 1

    with sail_tinker.Emulator(latency={"all": {"median": 0.1, "p99_ratio": 3}}) as emu:
        asyncio.run(main(emu))


@pytest.mark.parametrize("max_staleness", [0, 1])
def test_carried_groups_keep_their_version_across_a_switch_and_go_stale(tmp_path,
                                                                       max_staleness):
    async def main(emu):
        c = completer(emu, max_tokens=4)
        with sail_tinker.Run(str(tmp_path / "run.journal"), "py-stale") as run:
            s = run.group_sampler(prompts(6), group_size=2, groups_per_step=2,
                                  overprovision=1.0, max_staleness=max_staleness)
            b0 = await s.next_step(c, version="v0")  # 4 open, 2 taken, 2 carried
            assert len(b0.groups) == 2
            await asyncio.get_running_loop().run_in_executor(None, settle, s)
            b1 = await s.next_step(c, version="v1")
            if max_staleness == 1:
                assert len(b1.groups) == 2 and not b1.stale
                for g in b1.groups:
                    assert (g.version, g.staleness, g.launched_step, g.step) == ("v0", 1, 0, 1)
                    assert all(m.version == "v0" and m.step == 0 for m in g.members)
            else:
                assert len(b1.stale) == 2
                assert all(g.version == "v0" and g.staleness == 1 and len(g.members) == 2
                           for g in b1.stale)
                assert len(b1.groups) == 2
                for g in b1.groups:
                    assert (g.version, g.staleness, g.launched_step) == ("v1", 0, 1)
                    assert all(m.version == "v1" and m.step == 1 for m in g.members)
            rest = await s.drain()
            ids = [g.prompt_id for b in (b0, b1, rest) for g in every_group(b)]
            st = s.stats()
            await s.aclose()
        assert sorted(ids) == [f"p{i}" for i in range(6)]
        assert st["stale"] == (2 if max_staleness == 0 else 0)
        assert emu.stats()["inference_runs_total"] == st["members_delivered"] == 12
        await c.aclose()

    with sail_tinker.Emulator(latency=SPREAD) as emu:
        asyncio.run(main(emu))


CHILD = r"""
import asyncio, json, os, signal, sys
import sail_tinker

path, base_url, api_key, out = sys.argv[1:5]
PROMPTS = json.loads(os.environ["PROMPTS"])

async def main():
    c = sail_tinker.SailTokenCompleter("emulator/toy", 4, base_url=base_url, api_key=api_key,
                                       runtime_options=json.loads(os.environ["FAST"]))
    run = sail_tinker.Run(path, "py-resume")
    s = run.group_sampler(PROMPTS, group_size=2, groups_per_step=3, overprovision=1.0)
    batches = []
    for _ in range(2):
        b = await s.next_step(c, version="v0")
        batches.append([[g.prompt_id, len(g.members)] for g in b.all_groups])
        with open(out, "w") as f:
            json.dump(batches, f)
    # Step 1 returned, never acknowledged; its groups and the carried ones
    # still open: killed here.
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def test_killed_after_a_step_resumes_without_delivering_or_creating_twice(tmp_path):
    path = str(tmp_path / "run.journal")
    out = tmp_path / "child.json"
    ps = [{"id": f"p{i}", "prompt": prompt(i)} for i in range(12)]
    with sail_tinker.Emulator(latency=SPREAD) as emu:
        env = dict(os.environ, PROMPTS=json.dumps(ps), FAST=json.dumps(FAST))
        res = subprocess.run([sys.executable, "-c", CHILD, path, emu.base_url, emu.api_key,
                              str(out)], env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == -signal.SIGKILL, res.stdout + res.stderr
        b0, b1 = json.loads(out.read_text())
        assert len(b0) == 3 and len(b1) == 3
        acknowledged = {pid for pid, _ in b0}

        async def resume():
            c = completer(emu, max_tokens=4)
            seen = {}
            with sail_tinker.Run(path) as run:
                assert run.id == "py-resume"
                async with run.group_sampler(ps, group_size=2, groups_per_step=3,
                                             overprovision=1.0) as s:
                    first = None
                    while True:
                        b = await s.next_step(c, version="v0")
                        if first is None:
                            first = b
                        if not b.all_groups:
                            break
                        for g in b.all_groups:
                            assert len(g.members) == 2
                            seen[g.prompt_id] = seen.get(g.prompt_id, 0) + 1
                    for g in (await s.drain()).all_groups:
                        seen[g.prompt_id] = seen.get(g.prompt_id, 0) + 1
                    st = s.stats()
            await c.aclose()
            return first, seen, st

        first, seen, st = asyncio.run(resume())
        # The unacknowledged step comes again as step 1; step 0 never.
        assert first.step == 1
        assert st["skipped"] == 3  # step 0, acknowledged by the second next_step
        # Step 1's batch (3 groups, finished: journaled) comes back from the
        # journal; so do the 3 carried groups if the journal's group commit
        # (every 5 ms) covered them before the kill. One it did not cover was
        # never sent either (a durable front sends after the commit): it
        # starts fresh, and the counts below show nothing ran twice.
        assert 3 <= st["resumed"] <= 6
        assert not acknowledged & set(seen)
        assert all(n == 1 for n in seen.values())
        assert acknowledged | set(seen) == {f"p{i}" for i in range(12)}
        # Nothing created twice: one inference per member, once per key.
        es = emu.stats()
        assert es["inference_runs_total"] == 12 * 2
        assert es["max_runs_per_key"] == 1


def test_bad_inputs_are_typed_errors(tmp_path, emu):
    with sail_tinker.Run(str(tmp_path / "run.journal")) as run:
        with pytest.raises(sail_tinker.InvalidArgumentError):
            run.group_sampler([("a", prompt(1)), ("a", prompt(2))], group_size=2,
                              groups_per_step=1)
        with pytest.raises(ValueError, match="groups_per_step"):
            run.group_sampler([("a", prompt(1))], group_size=2, groups_per_step=0)
        with pytest.raises(ValueError, match="overprovision"):
            run.group_sampler([("a", prompt(1))], group_size=2, groups_per_step=1,
                              overprovision=-1)
        with pytest.raises(ValueError, match="group_size"):
            run.group_sampler([{"id": "a", "prompt": prompt(1), "n": 3}], group_size=2,
                              groups_per_step=1)
        with pytest.raises(TypeError, match="id must be a str"):
            run.group_sampler([(1, prompt(1))], group_size=2, groups_per_step=1)

        async def agen():
            yield ("a", prompt(1))

        with pytest.raises(TypeError, match="async iterables are not supported"):
            run.group_sampler(agen(), group_size=2, groups_per_step=1)
        s = run.group_sampler([{"id": "a", "prompt": ModelInput(prompt(1))}], group_size=2,
                              groups_per_step=1)
        with pytest.raises(TypeError, match="SailTokenCompleter"):
            asyncio.run(s.next_step(object()))
        assert asyncio.run(s.drain()).all_groups == []  # never started
        s.close()
        with pytest.raises(sail_tinker.SampleCancelledError):
            asyncio.run(s.next_step(completer(emu)))


def test_next_step_leaves_the_event_loop_free(tmp_path):
    # Members take 0.2 s: a blocking next_step would have finished inside
    # the loop's first turn; here the loop runs other tasks meanwhile.
    async def main(emu):
        c = completer(emu, max_tokens=4)
        with sail_tinker.Run(str(tmp_path / "run.journal")) as run:
            async with run.group_sampler(prompts(2), group_size=2, groups_per_step=2,
                                         overprovision=0) as s:
                task = asyncio.create_task(s.next_step(c))
                ticks = 0
                while not task.done():
                    ticks += 1
                    await asyncio.sleep(0.01)
                assert ticks > 1
                assert len(task.result().groups) == 2
        await c.aclose()

    with sail_tinker.Emulator(latency={"all": {"queued": 0.2}}) as emu:
        asyncio.run(main(emu))


def test_failed_members_are_refilled_and_a_structural_failure_fails_its_group(tmp_path):
    # Three members' results come back without token ids (inference errors
    # the completer does not retry); prompt p2 is empty (refused unsent).
    faults = {"scripted": ["missing_token_ids"] * 3, "routes": ["poll"]}
    ps = prompts(3)
    ps[2]["prompt"] = []

    async def main(emu):
        c = completer(emu, max_tokens=4)
        with sail_tinker.Run(str(tmp_path / "run.journal")) as run:
            async with run.group_sampler(ps, group_size=4, groups_per_step=3,
                                         overprovision=0) as s:
                b = await s.next_step(c)
                assert len(b.groups) == 2
                assert all(len(g.members) == 4 and g.error is None for g in b.groups)
                assert sum(g.refills for g in b.groups) == 3
                assert len(b.failed) == 1
                f = b.failed[0]
                assert f.prompt_id == "p2" and f.refills == 0 and f.members == []
                assert isinstance(f.error, sail_tinker.InvalidArgumentError)
                assert s.stats()["refills"] == 3
        # The refills ran under keys of their own: 8 good members + 3 failed.
        assert emu.stats()["inference_runs_total"] == 11
        await c.aclose()

    with sail_tinker.Emulator(faults=faults) as emu:
        asyncio.run(main(emu))
