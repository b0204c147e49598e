"""The result type of a sample, shaped like tinker-cookbook's TokensWithLogprobs."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TokensWithLogprobs"]


@dataclass(slots=True)
class TokensWithLogprobs:
    """Sampled token ids, their logprobs (or None) and the stop reason.

    ``tokens`` and ``maybe_logprobs`` are what tinker-cookbook's
    ``TokensWithLogprobs`` carries; ``stop_reason`` is the model's reason
    ("stop", "length", ...), else the response status, else "unknown".
    """

    tokens: list[int]
    maybe_logprobs: list[float] | None
    stop_reason: str = "unknown"
    #: A durable completer's (run=): the step and the adapter version label.
    step: int | str | None = None
    version: str | None = None

    @property
    def logprobs(self) -> list[float]:
        """The logprobs; ValueError when the response carried none (as the seed)."""
        if self.maybe_logprobs is None:
            raise ValueError("Logprobs are not available")
        return self.maybe_logprobs
