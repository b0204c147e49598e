"""sail_tinker.doctor(): the C++ wire doctor (net/wire_doctor.hpp)."""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from . import _native
from ._completer import _adapter_config, _options, _seconds

__all__ = ["doctor"]


def doctor(*, yes: bool = False, model: str = "moonshotai/Kimi-K2.6",
           completion_window: str = "priority", prompt: Iterable[int] = (1, 2, 3),
           max_tokens: int = 8, timeout: Any = 900.0,
           base_url: str | None = None, api_key: str | None = None,
           tinker_base_url: str | None = None, tinker_api_key: str | None = None,
           tinker_path: str | None = None, adapter_config: Any = None,
           ttl_seconds: int = 3600, runtime_options: Mapping | None = None,
           emulator: Any = None) -> dict:
    """Checks the unpublished wire details (``runtime_options={"wire": {...}}``,
    the [wire] group of the CLI) against the endpoint, as ``sail-tinker
    doctor`` does, and returns its report as a dict: ``sent``, the worst case
    (``max_samples``, ``max_prompt_tokens``, ``max_output_tokens``),
    ``samples_sent``, ``checks`` (one dict per assumption: ``id``,
    ``verdict`` held | refused | ignored | elsewhere | failed | not_checked,
    ``detail``, ``status``, ``body``, ``working``), ``holds`` (the settings
    checked work), ``working`` (the wire settings that work, as the
    ``runtime_options["wire"]`` dict takes them) and ``ini`` (the same as a
    [wire] group).

    Without ``yes=True`` nothing is sent: only the worst case is stated.
    ``tinker_path`` (with ``adapter_config``) also checks the Tinker TTL and
    archive-URL calls and one LoRA sample through the signed URL.
    ``emulator=`` takes the endpoint and keys from a sail_tinker.Emulator.
    """
    if emulator is not None:
        base_url = base_url if base_url is not None else emulator.base_url
        api_key = api_key if api_key is not None else emulator.api_key
        if tinker_path is not None:
            tinker_base_url = tinker_base_url or emulator.base_url
            tinker_api_key = tinker_api_key or emulator.tinker_api_key
    target = {
        "base_url": base_url,
        "api_key": api_key,
        "tinker_base_url": tinker_base_url,
        "tinker_api_key": tinker_api_key,
        "options": _options(runtime_options, "runtime_options"),
    }
    text = _native.doctor(target, model, completion_window, [int(t) for t in prompt],
                          int(max_tokens), _seconds(timeout, "timeout"), tinker_path or "",
                          _adapter_config(adapter_config) or "", int(ttl_seconds), bool(yes))
    return json.loads(text)
