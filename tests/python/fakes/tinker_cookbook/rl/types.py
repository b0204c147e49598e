"""Fake tinker_cookbook.rl.types: the environment interfaces a rollout uses."""
from __future__ import annotations

from dataclasses import dataclass, field

import tinker

from tinker_cookbook.completers import StopCondition, TokensWithLogprobs

Observation = tinker.ModelInput


@dataclass
class StepResult:
    reward: float
    episode_done: bool
    next_observation: Observation
    next_stop_condition: StopCondition
    metrics: dict = field(default_factory=dict)


@dataclass
class Transition:
    ob: Observation
    ac: TokensWithLogprobs
    reward: float
    episode_done: bool


@dataclass
class Trajectory:
    transitions: list[Transition]
    final_ob: Observation


@dataclass
class TrajectoryGroup:
    trajectories_G: list[Trajectory]
    final_rewards_G: list[float]
    metrics_G: list[dict]


class Env:
    async def initial_observation(self) -> tuple[Observation, StopCondition]:
        raise NotImplementedError

    async def step(self, action: list[int]) -> StepResult:
        raise NotImplementedError


class EnvGroupBuilder:
    async def make_envs(self) -> list[Env]:
        raise NotImplementedError

    async def compute_group_rewards(self, trajectory_group: list[Trajectory],
                                    env_group: list[Env]) -> list[tuple[float, dict]]:
        return [(0.0, {}) for _ in trajectory_group]
