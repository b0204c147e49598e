"""The result type of a sample and the completer's base class: tinker-cookbook's
own when it is importable, else the binding's classes of the same shape.

tinker-cookbook (https://github.com/thinking-machines-lab/tinker-cookbook,
tinker_cookbook/completers.py) defines ``TokenCompleter`` (``async
__call__(model_input, stop, *, max_tokens=None)``) and the dataclass
``TokensWithLogprobs(tokens, maybe_logprobs, stop_reason="stop")`` with a
``logprobs`` property raising ValueError when there are none.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["TokensWithLogprobs", "TokenCompleter", "Usage", "USES_TINKER_COOKBOOK"]


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


try:
    # A cookbook that is installed but fails to import (a missing dependency
    # of it) leaves the binding on its own classes rather than unusable.
    from tinker_cookbook.completers import TokenCompleter, TokensWithLogprobs
    USES_TINKER_COOKBOOK = True
except ImportError:
    USES_TINKER_COOKBOOK = False

    @dataclass(slots=True)
    class TokensWithLogprobs:  # type: ignore[no-redef]
        """Sampled token ids, their logprobs (or None) and the stop reason.

        ``tokens``, ``maybe_logprobs`` and ``stop_reason`` as tinker-cookbook's
        ``TokensWithLogprobs``; the completer's ``stop_reason`` is the model's
        reason ("stop", "length", ...), else the response status, else "unknown".
        """

        tokens: list[int]
        maybe_logprobs: list[float] | None
        stop_reason: str = "stop"
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

    class TokenCompleter:  # type: ignore[no-redef]
        """Token ids in, TokensWithLogprobs out (tinker-cookbook's interface)."""

        async def __call__(self, model_input: Any, stop: Any, *,
                           max_tokens: int | None = None) -> Any:
            raise NotImplementedError


def _make_result(tokens: list[int], maybe_logprobs: list[float] | None, stop_reason: str,
                 usage: Usage | None) -> Any:
    """A sample's result: tinker-cookbook's TokensWithLogprobs (three fields)
    or the binding's, with ``usage`` set as an attribute on either."""
    out = TokensWithLogprobs(tokens, maybe_logprobs, stop_reason)
    out.usage = usage
    return out
