"""The embedded Sail + Tinker emulator, for tests and examples."""
from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any, Iterable, Mapping

from . import _native

__all__ = ["Emulator"]


class Emulator:
    """A local Sail + Tinker emulator on a real loopback socket (C++,
    emulator/emulator.hpp): the raw-token Responses API with background
    create + poll, Idempotency-Key replay, a deterministic toy model, a
    latency model per completion window and fault injection.

    Use it as a context manager::

        with sail_tinker.Emulator() as emu:
            completer = sail_tinker.SailTokenCompleter("emulator/toy", 16, emulator=emu)

    ``latency``: {"priority": {"queued": seconds, "per_token": seconds}, ...}
    ("all" for every window); a heavy tail per window with {"median": seconds,
    "p99_ratio": x} (log-normal, seeded per Idempotency-Key); a named profile
    with {"profile": "measured" | "targets" | "heavy-tail", "scale": x} (every
    duration times x; windows given too apply on top), or just the name.
    ``faults``: {"scripted": ["status_500", ...], "probability": {"status_429":
    0.1}, "routes": ["create", "poll", "tinker"], ...} (fault kind names as in
    emulator.hpp);
    ``wire_variants``: ["reject-include", "stop-token-ids", "top-level"]: depart
    from the guessed wire details as one [wire] alternative expects
    (emulator/wire_variants.hpp; check with :func:`sail_tinker.doctor`).
    """

    def __init__(self, *, latency: Mapping | str | None = None, faults: Mapping | None = None,
                 seed: int | None = None, threads: int | None = None,
                 api_key: str | None = None, tinker_api_key: str | None = None,
                 known_loras: Iterable[str] | None = None,
                 known_checkpoints: Iterable[str] | None = None,
                 default_max_output_tokens: int | None = None,
                 prompt_cache_min_tokens: int | None = None,
                 archive: str | None = None, still_building_calls: int | None = None,
                 vocabulary: str | None = None,
                 model_windows: Mapping[str, Iterable[str]] | None = None,
                 record_arrivals: bool | None = None,
                 request_log_capacity: int | None = None,
                 wire_variants: Iterable[str] | None = None,
                 host: str | None = None, port: int | None = None) -> None:
        options = {
            "latency": ({"profile": latency} if isinstance(latency, str)
                        else dict(latency) if latency is not None else None),
            "faults": dict(faults) if faults is not None else None,
            "seed": seed,
            "threads": threads,
            "api_key": api_key,
            "tinker_api_key": tinker_api_key,
            "known_loras": set(known_loras) if known_loras is not None else None,
            "known_checkpoints": set(known_checkpoints) if known_checkpoints is not None else None,
            "default_max_output_tokens": default_max_output_tokens,
            "prompt_cache_min_tokens": prompt_cache_min_tokens,
            "archive": archive,
            "still_building_calls": still_building_calls,
            "vocabulary": vocabulary,
            "model_windows": ({m: set(ws) for m, ws in model_windows.items()}
                              if model_windows is not None else None),
            "record_arrivals": record_arrivals,
            "request_log_capacity": request_log_capacity,
            "wire_variants": list(wire_variants) if wire_variants is not None else None,
            "host": host,
            "port": port,
        }
        self._native = _native.Emulator({k: v for k, v in options.items() if v is not None})

    # -- where it is ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """"http://127.0.0.1:<port>": the Sail base (no /v1) and the Tinker base."""
        return self._native.base_url

    @property
    def api_key(self) -> str:
        """The Sail API key the emulator accepts."""
        return self._native.api_key

    @property
    def tinker_api_key(self) -> str:
        return self._native.tinker_api_key

    @property
    def port(self) -> int:
        return self._native.port

    @property
    def seed(self) -> int:
        return self._native.seed

    # -- what it saw --------------------------------------------------------------------------

    def stats(self) -> dict:
        """requests {route: {status: n}}, inference_runs {key: n},
        inference_runs_total, max_runs_per_key, faults, posts_per_key,
        polls_per_response {response id: n}, responses, tinker_calls, ..."""
        return self._native.stats()

    def request_log(self) -> list[dict]:
        """The request log (``request_log_capacity=`` entries, off by default):
        per request method, target, route, status, headers (Idempotency-Key,
        X-Sail-Voyage-*), request_body and response_body, read from the
        emulator's /_emulator/requests route. Holds signed URLs verbatim:
        test data."""
        with urllib.request.urlopen(self.base_url + "/_emulator/requests", timeout=30) as r:
            return json.loads(r.read())

    def counter(self, name: str, key: str = "") -> int:
        """posts, polls, inference_runs, responses, tinker_calls, posts_of
        (key = Idempotency-Key) or polls_of (key = response id)."""
        return self._native.counter(name, key)

    def wait_until(self, name: str, at_least: int, timeout: float = 60.0, key: str = "") -> bool:
        """Blocks until counter(name, key) >= at_least, woken by the
        emulator's counter updates (no polling; the GIL is released)."""
        return self._native.wait_until(name, at_least, timeout, key)

    async def wait_until_async(self, name: str, at_least: int, timeout: float = 60.0,
                               key: str = "") -> bool:
        return await asyncio.get_running_loop().run_in_executor(
            None, self._native.wait_until, name, at_least, timeout, key)

    # -- steering -----------------------------------------------------------------------------

    def set_latency(self, latency: Mapping | str) -> None:
        """Replaces the latency model for requests accepted from now on (the
        forms of ``latency=`` above)."""
        self._native.set_latency({"profile": latency} if isinstance(latency, str)
                                 else dict(latency))

    def set_faults(self, faults: Mapping) -> None:
        self._native.set_faults(dict(faults))

    def add_known_lora(self, name: str) -> None:
        self._native.add_known_lora(name)

    def set_still_building_calls(self, n: int) -> None:
        self._native.set_still_building_calls(n)

    def checkpoint_ttl(self, checkpoint: str) -> int | None:
        return self._native.checkpoint_ttl(checkpoint)

    def expected_sample(self, prompt: Any, model: str, temperature: float = 1.0,
                        top_p: float = 1.0, max_output_tokens: int = 16, stop: Any = None,
                        seed: int | None = None, key: str = "") -> dict:
        """What the toy model answers for these request fields: token_ids,
        logprobs, text, stop_reason. Without a seed the Idempotency-Key
        (``key``) is mixed into the random stream; greedy answers
        (temperature 0) depend on the prompt and model only."""
        to_ints = getattr(prompt, "to_ints", None)
        prompt = to_ints() if to_ints is not None else prompt
        return self._native.expected_sample(prompt, model, temperature, top_p,
                                            max_output_tokens, stop, seed, key)

    # -- lifetime -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._native.running

    def stop(self) -> None:
        """Stops serving and joins the emulator's threads. Idempotent."""
        self._native.stop()

    close = stop

    def __enter__(self) -> "Emulator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def __aenter__(self) -> "Emulator":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.stop)

    def __repr__(self) -> str:
        return f"Emulator({self.base_url if self.running else 'stopped'})"
