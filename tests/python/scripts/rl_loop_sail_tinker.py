"""An RL loop shaped like the public scripts written against Sail's
sail.tinker (e.g. the PokerBench GRPO example): per training step, the
checkpoint's signed URL through tinker.ServiceClient() with a TTL, a new
SailTokenCompleter with tinker_lora_signed_url + adapter_config, and a gather
of tinker-cookbook's do_group_rollout with the completer as the policy.

The only change from such a script is its import line (sail.tinker ->
sail_tinker.tinker). Run by test_drop_in.py with the fakes of tinker and
tinker_cookbook on PYTHONPATH and the emulator's endpoints in the environment
(SAIL_BASE_URL, SAIL_API_KEY, TINKER_BASE_URL, TINKER_API_KEY); prints a JSON
report of what it saw.
"""
from __future__ import annotations

import asyncio
import json
import os

import tinker
from tinker_cookbook.completers import TokenCompleter
from tinker_cookbook.rl.rollouts import do_group_rollout
from tinker_cookbook.rl.types import Env, EnvGroupBuilder, StepResult

from sail_tinker.tinker import SailTokenCompleter, get_tinker_checkpoint_signed_url_async

MODEL = os.environ.get("RL_MODEL", "emulator/toy")
RUN = os.environ.get("RL_RUN", "run-1")
STEPS = int(os.environ.get("RL_STEPS", "2"))
GROUPS = 2
GROUP_SIZE = 3
ADAPTER_CONFIG = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": "all",
                  "task_type": "CAUSAL_LM"}


class GuessEnv(Env):
    def __init__(self, seed: int) -> None:
        self.seed = seed

    async def initial_observation(self):
        prompt = [(self.seed * 13 + j * 5) % 50 + 3 for j in range(10)]
        return tinker.ModelInput.from_ints(prompt), [63]

    async def step(self, action):
        return StepResult(reward=float(len(action)), episode_done=True,
                          next_observation=tinker.ModelInput.from_ints([]),
                          next_stop_condition=[63])


class GuessGroup(EnvGroupBuilder):
    def __init__(self, group: int) -> None:
        self.group = group

    async def make_envs(self):
        return [GuessEnv(self.group * 10 + i) for i in range(GROUP_SIZE)]


async def main() -> dict:
    service_client = tinker.ServiceClient()
    report = {"steps": []}
    for step in range(STEPS):
        path = f"tinker://{RUN}/sampler_weights/step-{step}"
        signed_url = await get_tinker_checkpoint_signed_url_async(service_client, path,
                                                                  ttl_seconds=3600)
        policy = SailTokenCompleter(model=MODEL, max_tokens=6,
                                    tinker_lora_signed_url=signed_url,
                                    adapter_config=ADAPTER_CONFIG,
                                    tinker_lora_name=f"step-{step}")
        groups = await asyncio.gather(*(do_group_rollout(GuessGroup(g), policy)
                                        for g in range(GROUPS)))
        actions = [t.ac for group in groups for traj in group.trajectories_G
                   for t in traj.transitions]
        report["steps"].append({
            "path": path,
            "signed_url": signed_url,
            "policy_is_token_completer": isinstance(policy, TokenCompleter),
            "result_types": sorted({f"{type(a).__module__}.{type(a).__qualname__}"
                                    for a in actions}),
            "samples": len(actions),
            "tokens": [len(a.tokens) for a in actions],
            "logprobs": [len(a.logprobs) for a in actions],
            "stop_reasons": sorted({a.stop_reason for a in actions}),
            "rewards": [r for group in groups for r in group.final_rewards_G],
        })
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
