"""Fake tinker_cookbook.rl.rollouts: do_group_rollout runs every env of the
group to its end, asking the policy with ``await policy(observation, stop)``."""
from __future__ import annotations

import asyncio

from tinker_cookbook.completers import TokenCompleter
from tinker_cookbook.rl.types import (Env, EnvGroupBuilder, Trajectory, TrajectoryGroup,
                                      Transition)


async def do_single_rollout(policy: TokenCompleter, env: Env) -> Trajectory:
    transitions = []
    ob, stop = await env.initial_observation()
    while True:
        ac = await policy(ob, stop)
        step = await env.step(ac.tokens)
        transitions.append(Transition(ob, ac, step.reward, step.episode_done))
        ob, stop = step.next_observation, step.next_stop_condition
        if step.episode_done:
            return Trajectory(transitions, ob)


async def do_group_rollout(env_group_builder: EnvGroupBuilder,
                           policy: TokenCompleter) -> TrajectoryGroup:
    envs = await env_group_builder.make_envs()
    trajectories = await asyncio.gather(*(do_single_rollout(policy, env) for env in envs))
    rewards_and_metrics = await env_group_builder.compute_group_rewards(trajectories, envs)
    rewards = [sum(t.reward for t in traj.transitions) + group_reward
               for traj, (group_reward, _) in zip(trajectories, rewards_and_metrics)]
    return TrajectoryGroup(trajectories, rewards, [m for _, m in rewards_and_metrics])
