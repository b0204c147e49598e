"""SailTokenCompleter: the seed's Python class, backed by the C++ runtime."""
from __future__ import annotations

import asyncio
import datetime
import json
import warnings
import weakref
from typing import Any, Mapping, Sequence

from . import _native
from ._types import TokensWithLogprobs
from .errors import InvalidArgumentError, OverloadedError, UnavailableError

__all__ = ["SailTokenCompleter", "get_tinker_checkpoint_signed_url_async", "shutdown"]

# One dispatcher per event loop: the futures of that loop's calls in flight
# and the queue their results arrive in (C++, see python/src/delivery.hpp).
# Weak keys: a dispatcher never keeps a loop alive.
_dispatchers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]" = \
    weakref.WeakKeyDictionary()


def _dispatcher(loop: asyncio.AbstractEventLoop):
    d = _dispatchers.get(loop)
    if d is None:
        d = _native.Dispatcher(loop)
        _dispatchers[loop] = d
    return d


def _prompt(model_input: Any) -> Any:
    """tinker's ModelInput (anything with to_ints()) or a sequence of ints."""
    to_ints = getattr(model_input, "to_ints", None)
    return to_ints() if to_ints is not None else model_input


def _seconds(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} must be seconds (int or float) or a timedelta, "
                        f"not {type(value).__name__}")
    return float(value)


def _adapter_config(value: Any) -> str | None:
    # The contract's two forms: an object, or a string holding JSON (checked
    # by the C++ validation, which raises ValueError for anything else).
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        try:
            return json.dumps(dict(value), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"adapter_config is not JSON-serializable: {e}") from None
    raise TypeError(f"adapter_config must be a dict or a JSON string, not {type(value).__name__}")


def _voyage(value: Any) -> dict | None:
    """A dict {id, span_id?, agent_id?}, an object with those attributes, or an id."""
    if value is None:
        return None
    if isinstance(value, str):
        return {"id": value}
    if isinstance(value, Mapping):
        unknown = set(value) - {"id", "span_id", "agent_id"}
        if unknown:
            raise ValueError(f"voyage has unknown keys: {sorted(unknown)}")
        return {k: value.get(k) for k in ("id", "span_id", "agent_id")}
    if hasattr(value, "id"):
        return {k: getattr(value, k, None) for k in ("id", "span_id", "agent_id")}
    raise TypeError(f"voyage must be a dict, an object with .id, or an id string, "
                    f"not {type(value).__name__}")


def _options(value: Mapping | None, name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict, not {type(value).__name__}")
    # Sorted, so that equal options name the same shared runtime.
    return {k: (_options(v, name) if isinstance(v, Mapping) else v)
            for k, v in sorted(value.items())}


class SailTokenCompleter:
    """Token ids in, sampled token ids + logprobs + stop reason out.

    The seed's parameters and defaults (model, max_tokens, temperature=1.0,
    top_p=1.0, completion_window="priority", lora, tinker_lora_signed_url,
    adapter_config (dict or JSON string), tinker_lora_name, metadata, timeout
    (seconds or timedelta, per HTTP call), voyage), validated at construction
    (ValueError / TypeError as the seed).

    Where samples go (keyword-only):

    - default: the process's local runtime (one per endpoint, shared by every
      completer), configured from the environment exactly as the C++ runtime
      (SAIL_API_KEY, SAIL_BASE_URL, ...); ``base_url=`` / ``api_key=``
      override; ``emulator=`` takes both from a sail_tinker.Emulator.
    - ``nodes=["host:port", ...]``: a cluster of ``sail-tinker serve`` nodes
      (TLS with ``tls_certificate`` / ``tls_key`` / ``tls_cafile``, or
      ``tls=True/False`` to force encryption on or off).

    ``runtime_options`` / ``cluster_options`` tune the pool and the cluster
    (see docs/python.md).

    Spending (keyword-only): ``prices=`` a prices file path or a dict of the
    same shape ({"prices": [{"model", "window", "input", "cached_input",
    "output"}]}, USD per 1M tokens); ``budget_usd=`` (needs a price for this
    model and window) and ``budget_tokens=`` (input + output tokens) cap what
    this completer's samples may be billed: each call first reserves its
    worst case (prompt + max tokens, no cache discount) and settles at its
    usage; a call that does not fit raises BudgetExceededError and nothing is
    sent (calls in flight complete). ``budget`` shows what was spent. With
    ``run=``, a sample answered from the run's journal counts at its recorded
    usage (it was billed once, earlier).

    Durable samples (docs/python.md, "Durable runs"): ``run=`` a
    sail_tinker.Run and ``step=`` (an int or a str, required with run=)
    journal every sample; ``version=`` labels the adapter (default: the
    Tinker checkpoint path, else the LoRA name). Results then carry
    ``step`` and ``version``.
    """

    def __init__(self, model: str, max_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, completion_window: str = "priority",
                 lora: str | None = None, tinker_lora_signed_url: str | None = None,
                 adapter_config: Mapping | str | None = None,
                 tinker_lora_name: str | None = None,
                 metadata: Mapping[str, str] | None = None,
                 timeout: float | datetime.timedelta | None = None,
                 voyage: Any = None, *,
                 request_logprobs: bool = True,
                 tinker_checkpoint: str | None = None,
                 tinker_ttl_seconds: int | None = None,
                 base_url: str | None = None, api_key: str | None = None,
                 tinker_base_url: str | None = None, tinker_api_key: str | None = None,
                 emulator: Any = None,
                 runtime_options: Mapping | None = None,
                 nodes: Sequence[str] | None = None,
                 tls: bool | None = None,
                 tls_certificate: str | None = None, tls_key: str | None = None,
                 tls_cafile: str | None = None,
                 cluster_options: Mapping | None = None,
                 run: Any = None, step: int | str | None = None,
                 version: str | None = None,
                 prices: Any = None,
                 budget_usd: float | None = None,
                 budget_tokens: int | None = None) -> None:
        if not isinstance(model, str):
            raise TypeError(f"model must be a str, not {type(model).__name__}")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise TypeError(f"max_tokens must be an int, not {type(max_tokens).__name__}")
        for name, value in (("temperature", temperature), ("top_p", top_p)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, not {type(value).__name__}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a dict of str to str, not {type(metadata).__name__}")
        config = {
            "model": model,
            "max_tokens": max_tokens,
            "temperature": float(temperature),
            "top_p": float(top_p),
            "completion_window": completion_window,
            "lora": lora,
            "tinker_lora_signed_url": tinker_lora_signed_url,
            "adapter_config": _adapter_config(adapter_config),
            "tinker_lora_name": tinker_lora_name,
            "tinker_checkpoint": tinker_checkpoint,
            "tinker_ttl_seconds": tinker_ttl_seconds,
            "metadata": dict(metadata) if metadata is not None else None,
            "timeout": _seconds(timeout, "timeout"),
            "voyage": _voyage(voyage),
            "request_logprobs": request_logprobs,
        }
        if run is None and (step is not None or version is not None):
            raise ValueError("step= and version= label a durable run's samples: pass run=")
        if run is not None:
            if step is None:
                raise ValueError("run= needs step= (an int or a str)")
            if isinstance(step, bool) or not isinstance(step, (int, str)):
                raise TypeError(f"step must be an int or a str, not {type(step).__name__}")
            if version is not None and not isinstance(version, str):
                raise TypeError(f"version must be a str, not {type(version).__name__}")
            if version is None:
                # As adapter_identity in C++: never a signed URL's query.
                url = tinker_lora_signed_url
                version = (tinker_checkpoint or tinker_lora_name or lora
                           or (url.split("?")[0].split("#")[0] if url else None))
        self._run = run
        self._step = step
        self._version = version
        if emulator is not None:
            base_url = base_url if base_url is not None else emulator.base_url
            api_key = api_key if api_key is not None else emulator.api_key
            if tinker_checkpoint is not None:
                tinker_base_url = tinker_base_url or emulator.base_url
                tinker_api_key = tinker_api_key or emulator.tinker_api_key
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.completion_window = completion_window
        self._budget = None
        if prices is not None or budget_usd is not None or budget_tokens is not None:
            if budget_usd is not None and (isinstance(budget_usd, bool)
                                           or not isinstance(budget_usd, (int, float))):
                raise TypeError(f"budget_usd must be a number, not {type(budget_usd).__name__}")
            if budget_tokens is not None and (isinstance(budget_tokens, bool)
                                              or not isinstance(budget_tokens, int)):
                raise TypeError(f"budget_tokens must be an int, "
                                f"not {type(budget_tokens).__name__}")
            if prices is not None and not isinstance(prices, (str, Mapping)):
                prices = str(prices)  # os.PathLike
            self._budget = _native.Budget(
                dict(prices) if isinstance(prices, Mapping) else prices,
                float(budget_usd) if budget_usd is not None else None, budget_tokens)
            # A USD cap without this pair's price: refused before anything is sent.
            self._budget.check_priced(model, completion_window)
        if nodes is not None:
            if base_url is not None or api_key is not None or runtime_options is not None:
                raise ValueError("nodes= sends samples to service nodes (which hold the Sail "
                                 "key); base_url, api_key and runtime_options do not apply")
            target = {
                "nodes": list(nodes) if not isinstance(nodes, str) else nodes,
                "tls": tls,
                "tls_certificate": tls_certificate,
                "tls_key": tls_key,
                "tls_cafile": tls_cafile,
                "options": _options(cluster_options, "cluster_options"),
            }
            self._native = _native.cluster_completer(config, target)
        else:
            if tls is not None or tls_certificate or tls_key or tls_cafile or cluster_options:
                raise ValueError("TLS and cluster options apply to nodes= only")
            target = {
                "base_url": base_url,
                "api_key": api_key,
                "tinker_base_url": tinker_base_url,
                "tinker_api_key": tinker_api_key,
                "options": _options(runtime_options, "runtime_options"),
            }
            self._native = _native.local_completer(config, target)
        if run is not None:
            _native.make_durable(self._native, run._native, config, str(step), version)

    # -- sampling -------------------------------------------------------------------------

    async def __call__(self, model_input: Any, stop: Any = None,
                       max_tokens: int | None = None) -> TokensWithLogprobs:
        """One sample. ``model_input``: tinker's ModelInput or a list of ints;
        ``stop``: None, an int, a str, a list of ints or a list of strs;
        ``max_tokens``: a per-call cap (the effective cap is the smaller one).
        Cancelling the awaiting task cancels the sample."""
        loop = asyncio.get_running_loop()
        prompt = _prompt(model_input)
        holds = self._reserve(prompt, max_tokens, 1)
        try:
            fut, key = _dispatcher(loop).sample(loop, self._native, prompt, stop, max_tokens)
        except BaseException:
            self._release(holds)
            raise
        try:
            out = await fut
        except asyncio.CancelledError:
            self._native.cancel(key)
            self._settle(holds, None)
            raise
        except (InvalidArgumentError, OverloadedError, UnavailableError):
            self._release(holds)  # refused before anything was sent
            raise
        except BaseException:
            self._settle(holds, None)
            raise
        self._settle(holds, [out])
        if self._run is not None:
            out.step = self._step
            out.version = self._version
        return out

    async def sample_group(self, model_input: Any, n: int, stop: Any = None,
                           max_tokens: int | None = None) -> list[TokensWithLogprobs]:
        """n samples of one prompt (one prompt_cache_key): GRPO's group. Fails
        with the first member's error (the others are cancelled)."""
        loop = asyncio.get_running_loop()
        prompt = _prompt(model_input)
        holds = self._reserve(prompt, max_tokens, n)
        try:
            fut, group = _dispatcher(loop).sample_group(loop, self._native, prompt, n, stop,
                                                        max_tokens)
        except BaseException:
            self._release(holds)
            raise
        try:
            outs = await fut
        except asyncio.CancelledError:
            self._native.cancel(group)
            self._settle(holds, None)
            raise
        except (InvalidArgumentError, OverloadedError, UnavailableError):
            self._release(holds)
            raise
        except BaseException:
            self._settle(holds, None)
            raise
        self._settle(holds, outs)
        if self._run is not None:
            for r in outs:
                r.step = self._step
                r.version = self._version
        return outs

    # -- spending -------------------------------------------------------------------------

    @property
    def budget(self) -> dict | None:
        """What this completer's samples were billed, when it has prices or a
        cap: spent_usd (None without a USD cap), spent_tokens, reserved_usd,
        reserved_tokens (in flight), limit_usd, limit_tokens, exhausted."""
        b = self._budget
        if b is None:
            return None
        return {"spent_usd": b.spent_usd if b.limit_usd is not None else None,
                "spent_tokens": b.spent_tokens, "reserved_usd": b.reserved_usd,
                "reserved_tokens": b.reserved_tokens, "limit_usd": b.limit_usd,
                "limit_tokens": b.limit_tokens, "exhausted": b.exhausted}

    def cost(self, result: TokensWithLogprobs) -> float | None:
        """USD of a result at this completer's prices; None when its usage or
        its price is unknown (or no prices were given)."""
        if self._budget is None:
            return None
        return self._budget.cost(self.model, self.completion_window, result.usage)

    def _reserve(self, prompt: Any, max_tokens: int | None, n: int) -> list:
        b = self._budget
        if b is None or (b.limit_usd is None and b.limit_tokens is None):
            return []
        cap = self.max_tokens if max_tokens is None else min(self.max_tokens, max_tokens)
        holds = []
        try:
            for _ in range(n):
                holds.append(b.reserve(self.model, self.completion_window, len(prompt),
                                       max(cap, 0)))
        except BaseException:
            self._release(holds)
            raise
        return holds

    def _release(self, holds: list) -> None:
        for h in holds:
            self._budget.release(h)

    def _settle(self, holds: list, outs: list | None) -> None:
        if outs is not None and any(o.usage is None for o in outs):
            warnings.warn("a response carried no valid usage: the sample's usage is unknown "
                          "(None, not 0) and its worst case stays spent", RuntimeWarning,
                          stacklevel=3)
        for i, h in enumerate(holds):
            usage = outs[i].usage if outs is not None and i < len(outs) else None
            self._budget.settle(h, self.model, self.completion_window, usage)

    # -- introspection --------------------------------------------------------------------

    @property
    def is_cluster(self) -> bool:
        return self._native.is_cluster

    @property
    def closed(self) -> bool:
        return self._native.closed

    def stats(self) -> dict:
        """The completer's counters (cluster mode: summed over the nodes).
        Blocks briefly (the GIL is released)."""
        return self._native.stats()

    def nodes(self) -> list[dict]:
        """Cluster mode: each node's address, state, in_flight, completed,
        rerouted, losses, ... (empty for a local completer)."""
        return self._native.nodes()

    def wait_ready(self, n: int = 1, timeout: float = 30.0) -> bool:
        """Cluster mode: blocks (GIL released) until n nodes are ready."""
        return self._native.wait_ready(n, timeout)

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Ends this completer: open samples fail with SampleCancelledError; a
        cluster shuts down with its last completer. Idempotent."""
        self._native.close()

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._native.close)

    def __enter__(self) -> "SailTokenCompleter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> "SailTokenCompleter":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        where = "cluster" if self.is_cluster else "local"
        return (f"SailTokenCompleter(model={self.model!r}, max_tokens={self.max_tokens}, "
                f"completion_window={self.completion_window!r}, {where})")


async def get_tinker_checkpoint_signed_url_async(tinker_path: str,
                                                 ttl_seconds: int | None = None, *,
                                                 base_url: str | None = None,
                                                 api_key: str | None = None,
                                                 options: Mapping | None = None) -> str:
    """The signed archive URL of a Tinker checkpoint ("tinker://run/kind/name"),
    setting its TTL first when ttl_seconds is given. TINKER_API_KEY and
    TINKER_BASE_URL as the C++ resolver (``base_url=`` / ``api_key=``
    override). Feed the result to SailTokenCompleter(tinker_lora_signed_url=)."""
    if not isinstance(tinker_path, str):
        raise TypeError(f"tinker_path must be a str, not {type(tinker_path).__name__}")
    loop = asyncio.get_running_loop()
    target = {"base_url": base_url, "api_key": api_key,
              "options": _options(options, "options")}
    resolver = await loop.run_in_executor(None, _native.resolver, target)
    return await _dispatcher(loop).resolve(loop, resolver, tinker_path, ttl_seconds)


def shutdown() -> None:
    """Stops every runtime, cluster and resolver of the process (open samples
    fail with SampleCancelledError). Later calls start them again. Runs
    automatically at interpreter exit."""
    _native.shutdown(False)
