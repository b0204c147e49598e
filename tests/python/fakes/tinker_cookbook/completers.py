"""Fake tinker_cookbook.completers: TokensWithLogprobs and TokenCompleter as
tinker-cookbook defines them (tinker_cookbook/completers.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import tinker

StopCondition: TypeAlias = list[str] | list[int]


@dataclass
class TokensWithLogprobs:
    tokens: list[int]
    maybe_logprobs: list[float] | None
    stop_reason: tinker.StopReason = "stop"

    @property
    def logprobs(self) -> list[float]:
        if self.maybe_logprobs is None:
            raise ValueError("Logprobs are not available")
        return self.maybe_logprobs


class TokenCompleter:
    async def __call__(self, model_input: tinker.ModelInput, stop: StopCondition, *,
                       max_tokens: int | None = None) -> TokensWithLogprobs:
        raise NotImplementedError
