"""sail_tinker: sail-tinker's C++ runtime (CAF actors, pooled HTTP client,
cluster of service nodes) as an asyncio TokenCompleter.

    import sail_tinker
    completer = sail_tinker.SailTokenCompleter("moonshotai/Kimi-K2.6", max_tokens=256)
    out = await completer(model_input, stop=["\\n"])   # TokensWithLogprobs
    out.tokens, out.maybe_logprobs, out.stop_reason

Scripts written against Sail's ``sail.tinker`` import from
``sail_tinker.tinker`` instead (same names).

See docs/python.md.
"""
from __future__ import annotations

import atexit as _atexit

from . import _native
from ._completer import SailTokenCompleter, get_tinker_checkpoint_signed_url_async, shutdown
from ._doctor import doctor
from ._emulator import Emulator
from ._run import Run
from ._sampler import GroupSampler, SampledGroup, StepBatch, _release_all
from ._types import USES_TINKER_COOKBOOK, TokenCompleter, TokensWithLogprobs, Usage, _make_result
from .errors import (BudgetExceededError, HTTPError, InferenceError, InferenceHTTPError,
                     InvalidArgumentError, NodeDownError, NotConfiguredError, OverloadedError,
                     SailError, SailTimeoutError, SailIOError, SampleCancelledError,
                     TransportError, UnavailableError, _from_native)

__all__ = [
    "SailTokenCompleter",
    "TokensWithLogprobs",
    "TokenCompleter",
    "USES_TINKER_COOKBOOK",
    "Usage",
    "Run",
    "GroupSampler",
    "StepBatch",
    "SampledGroup",
    "get_tinker_checkpoint_signed_url_async",
    "Emulator",
    "doctor",
    "shutdown",
    "SailError",
    "InvalidArgumentError",
    "InferenceError",
    "InferenceHTTPError",
    "HTTPError",
    "SailTimeoutError",
    "OverloadedError",
    "TransportError",
    "SampleCancelledError",
    "NotConfiguredError",
    "NodeDownError",
    "SailIOError",
    "UnavailableError",
    "BudgetExceededError",
]

__version__ = "0.1.0"

_native._init(_make_result, Usage, _from_native)


def _at_exit() -> None:
    # Before the interpreter finalizes: stop the actor systems (their threads
    # call into Python through the notifier), then the notifier thread.
    _release_all()
    _native.shutdown(True)


_atexit.register(_at_exit)
