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

__all__ = ["TokensWithLogprobs", "TokenCompleter", "USES_TINKER_COOKBOOK"]


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
