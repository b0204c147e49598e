#!/usr/bin/python3
"""A GRPO-shaped sampling loop through sail_tinker, against the embedded
emulator: each step samples a group of n completions per prompt, scores them
with a toy reward, and computes group-relative advantages (the numbers a
trainer would feed its loss together with the sampled logprobs).

Run it with PYTHONPATH=<build>/python (or after installing the package):

    /usr/bin/python3 examples/python/grpo_loop.py [--steps 3] [--prompts 8] [--group 4]

Against Sail instead of the emulator, drop the Emulator and let the
completer read SAIL_API_KEY from the environment (and pick a real model).
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys

import sail_tinker

MODEL = "emulator/toy"
PERIOD = 1  # the toy vocabulary's "." token


class ModelInput:
    """Stands in for tinker.ModelInput: anything with to_ints() works."""

    def __init__(self, tokens: list[int]):
        self.tokens = tokens

    def to_ints(self) -> list[int]:
        return self.tokens


def reward(tokens: list[int]) -> float:
    """Toy reward: prefer short answers that end with a period."""
    return (1.0 if tokens and tokens[-1] == PERIOD else 0.0) - 0.01 * len(tokens)


async def step(completer: sail_tinker.SailTokenCompleter, prompts: list[ModelInput],
               group: int) -> dict:
    # Every group in flight at once; each group is one sample_group call.
    groups = await asyncio.gather(*(completer.sample_group(p, group, stop=[PERIOD])
                                    for p in prompts))
    rewards, advantages, logprob_sums = [], [], []
    for members in groups:
        rs = [reward(m.tokens) for m in members]
        mean = statistics.fmean(rs)
        std = statistics.pstdev(rs) or 1.0
        rewards.extend(rs)
        advantages.extend((r - mean) / std for r in rs)
        logprob_sums.extend(sum(m.logprobs) for m in members)
    # A policy-gradient surrogate: -sum(advantage * logprob of the sample).
    surrogate = -statistics.fmean(a * lp for a, lp in zip(advantages, logprob_sums))
    return {
        "samples": len(rewards),
        # The toy model mixes each sample's Idempotency-Key into its random
        # stream, so the members of a group differ (and a replay does not).
        "distinct": statistics.fmean(len({tuple(m.tokens) for m in g}) for g in groups),
        "mean_reward": statistics.fmean(rewards),
        "stopped": sum(m.stop_reason == "stop" for g in groups for m in g),
        "surrogate": surrogate,
    }


async def main(args: argparse.Namespace) -> int:
    async with sail_tinker.Emulator(latency={"priority": {"queued": 0.02}}) as emu:
        async with sail_tinker.SailTokenCompleter(
                MODEL, max_tokens=24, temperature=1.0, emulator=emu,
                # Poll the emulator often (Sail's default timing is seconds).
                runtime_options={"all_windows": {"first_poll": 0.005, "max_poll": 0.05}},
        ) as completer:
            total = 0
            for s in range(args.steps):
                prompts = [ModelInput([3 + (s * 7 + i * 5 + j) % 60 for j in range(16)])
                           for i in range(args.prompts)]
                out = await step(completer, prompts, args.group)
                total += out["samples"]
                print(f"step {s}: {out['samples']} samples, mean reward "
                      f"{out['mean_reward']:+.3f}, {out['stopped']} stopped at '.', "
                      f"{out['distinct']:.1f} distinct completions per group, "
                      f"surrogate {out['surrogate']:+.3f}", flush=True)
            st = emu.stats()
            print(f"done: {total} samples, {st['inference_runs_total']} inference runs, "
                  f"max runs per key {st['max_runs_per_key']}")
            if st["inference_runs_total"] != total or st["max_runs_per_key"] != 1:
                return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=4)
    sys.exit(asyncio.run(main(parser.parse_args())))
