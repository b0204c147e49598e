"""``sail_tinker.tinker``: the names of Sail's ``sail.tinker`` module
(https://docs.sailresearch.com/sdk-tinker), so that a script written against
it changes only its import line::

    from sail.tinker import SailTokenCompleter, get_tinker_checkpoint_signed_url_async
    # becomes
    from sail_tinker.tinker import SailTokenCompleter, get_tinker_checkpoint_signed_url_async

The remaining differences are listed in docs/python.md.
"""
from __future__ import annotations

from ._completer import SailTokenCompleter, get_tinker_checkpoint_signed_url_async
from .errors import InferenceError, InferenceHTTPError, SailError

__all__ = [
    "SailTokenCompleter",
    "get_tinker_checkpoint_signed_url_async",
    "SailError",
    "InferenceError",
    "InferenceHTTPError",
]
