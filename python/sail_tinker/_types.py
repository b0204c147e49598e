"""The result type of a sample, shaped like tinker-cookbook's TokensWithLogprobs."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TokensWithLogprobs", "Usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    """The tokens Sail billed for one sample (its response's ``usage``).

    ``cached_tokens`` is part of ``input_tokens`` (billed at the cached input
    price); ``reasoning_tokens`` is Sail's output_tokens_details count.
    """

    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int = 0


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
    #: What Sail billed for the sample; None when the response carried no
    #: (or a malformed) usage: unknown, never zero.
    usage: Usage | None = None
    #: A durable completer's (run=): the step and the adapter version label.
    step: int | str | None = None
    version: str | None = None

    @property
    def logprobs(self) -> list[float]:
        """The logprobs; ValueError when the response carried none (as the seed)."""
        if self.maybe_logprobs is None:
            raise ValueError("Logprobs are not available")
        return self.maybe_logprobs
