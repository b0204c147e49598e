#!/usr/bin/python3
"""A durable GRPO-shaped sampling loop through sail_tinker: each step samples
a group of n completions per prompt (single-turn episodes) and, for the
multi-turn episodes, a second turn per member whose prompt is the first
prompt + the sampled tokens + a tool's answer; it scores them with a toy
reward and computes group-relative advantages (the numbers a trainer would
feed its loss together with the sampled logprobs).

Every sample goes through a sail_tinker.Run (a journal next to the loop):
kill the loop at any moment (kill -9) and run the same command again -- the
samples it already had come from the journal, those Sail accepted are polled,
those journaled but unanswered are re-sent under their key, and only the rest
are created: no sample is paid for twice (docs/python.md, "Durable runs").

Run it with PYTHONPATH=<build>/python (or after installing the package):

    /usr/bin/python3 examples/python/grpo_loop.py [--steps 3] [--prompts 4] [--group 4]
        [--journal FILE] [--run-id ID] [--out records.json]
        [--base-url URL --api-key KEY]

Without --base-url it starts an embedded emulator (then the journal is of no
use across runs: a new emulator knows none of the old responses, so the
journal is started afresh). Against Sail, pass --base-url
https://api.sailresearch.com and the key (or SAIL_API_KEY), and a real model.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile

import sail_tinker

MODEL = "emulator/toy"
PERIOD = 1          # the toy vocabulary's "." token
TOOL_ANSWER = [7, 7, 7]  # what a tool "answers" between two turns


class ModelInput:
    """Stands in for tinker.ModelInput: anything with to_ints() works."""

    def __init__(self, tokens: list[int]):
        self.tokens = tokens

    def to_ints(self) -> list[int]:
        return self.tokens


def reward(tokens: list[int]) -> float:
    """Toy reward: prefer short answers that end with a period."""
    return (1.0 if tokens and tokens[-1] == PERIOD else 0.0) - 0.01 * len(tokens)


def prompt_of(step: int, episode: int) -> list[int]:
    return [3 + (step * 7 + episode * 5 + j) % 60 for j in range(16)]


async def episode(completer, step: int, ep: int, group: int, turns: int) -> list[dict]:
    """One group: turn 1 for every member, then (multi-turn) a second turn per
    member on the previous prompt + its sampled tokens + the tool's answer."""
    first_prompt = prompt_of(step, ep)
    members = await completer.sample_group(ModelInput(first_prompt), group, stop=[PERIOD])
    records = []
    prompts = [first_prompt] * group
    outs = members
    for turn in range(1, turns + 1):
        if turn > 1:
            prompts = [p + m.tokens + TOOL_ANSWER for p, m in zip(prompts, outs)]
            # Members in order: the call order within the episode is fixed.
            outs = [await completer(ModelInput(p), stop=[PERIOD]) for p in prompts]
        for i, m in enumerate(outs):
            records.append({"step": step, "episode": ep, "member": i, "turn": turn,
                            "tokens": m.tokens, "logprobs": m.maybe_logprobs,
                            "stop_reason": m.stop_reason, "version": m.version})
    return records


async def run_step(completer, step: int, prompts: int, group: int) -> list[dict]:
    # Every episode in flight at once: even ones single-turn, odd ones two turns.
    eps = await asyncio.gather(*(episode(completer, step, ep, group, 1 + ep % 2)
                                 for ep in range(prompts)))
    return [r for e in eps for r in e]


def summary(step: int, records: list[dict]) -> str:
    finals = [r for r in records if r["turn"] == max(x["turn"] for x in records
                                                       if x["episode"] == r["episode"])]
    rewards, advantages, logprob_sums = [], [], []
    for ep in sorted({r["episode"] for r in finals}):
        group = [r for r in finals if r["episode"] == ep]
        rs = [reward(r["tokens"]) for r in group]
        mean = statistics.fmean(rs)
        std = statistics.pstdev(rs) or 1.0
        rewards.extend(rs)
        advantages.extend((x - mean) / std for x in rs)
        logprob_sums.extend(sum(r["logprobs"] or []) for r in group)
    # A policy-gradient surrogate: -sum(advantage * logprob of the sample).
    surrogate = -statistics.fmean(a * lp for a, lp in zip(advantages, logprob_sums))
    return (f"step {step}: {len(records)} samples, mean reward "
            f"{statistics.fmean(rewards):+.3f}, surrogate {surrogate:+.3f}")


async def main(args: argparse.Namespace) -> int:
    emu = None
    scratch = None
    base_url, api_key = args.base_url, args.api_key
    if base_url is None:
        emu = sail_tinker.Emulator(latency={"all": {"queued": 0.02}})
        base_url, api_key = emu.base_url, emu.api_key
        if args.journal is None:
            scratch = tempfile.TemporaryDirectory(prefix="grpo-")
            args.journal = os.path.join(scratch.name, "grpo.journal")
        # A fresh emulator: an old journal's responses are unknown to it.
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(args.journal + suffix):
                os.remove(args.journal + suffix)
    elif args.journal is None:
        args.journal = "grpo.journal"
    records: list[dict] = []
    try:
        async with sail_tinker.Run(args.journal, run_id=args.run_id) as run:
            print(f"run {run.id}, journal {run.path}", flush=True)
            for s in range(args.steps):
                # A new completer per step, as a trainer does after saving a
                # checkpoint; its samples are labelled with step and version.
                async with sail_tinker.SailTokenCompleter(
                        args.model, max_tokens=args.max_tokens, temperature=1.0,
                        completion_window="asap", base_url=base_url, api_key=api_key,
                        runtime_options={"all_windows": {"first_poll": 0.005,
                                                         "max_poll": 0.05}},
                        run=run, step=s, version=f"policy-step-{s}") as completer:
                    out = await run_step(completer, s, args.prompts, args.group)
                records.extend(out)
                st = run.stats().get(str(s), {})
                print(summary(s, out) + f" ({st.get('fresh', 0)} fresh, "
                      f"{st.get('from_journal', 0)} from the journal, "
                      f"{st.get('reattached', 0)} re-attached, {st.get('resent', 0)} re-sent)",
                      flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(sorted(records, key=lambda r: (r["step"], r["episode"], r["member"],
                                                         r["turn"])), f)
        if emu is not None:
            st = emu.stats()
            print(f"done: {len(records)} samples, {st['inference_runs_total']} inference "
                  f"runs, max runs per key {st['max_runs_per_key']}")
            if st["inference_runs_total"] != len(records) or st["max_runs_per_key"] != 1:
                return 1
        else:
            print(f"done: {len(records)} samples")
    finally:
        sail_tinker.shutdown()
        if emu is not None:
            emu.stop()
        if scratch is not None:
            scratch.cleanup()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--journal", default=None,
                        help="the run's journal (default: grpo.journal; a temporary one "
                             "with the embedded emulator)")
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--out", default=None, help="write every sample's record (JSON)")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--api-key", default=os.environ.get("SAIL_API_KEY"))
    sys.exit(asyncio.run(main(parser.parse_args())))
