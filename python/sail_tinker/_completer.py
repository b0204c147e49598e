"""SailTokenCompleter: the seed's Python class, backed by the C++ runtime."""
from __future__ import annotations

import asyncio
import copy
import datetime
import json
import warnings
import weakref
from typing import Any, Mapping, Sequence

from . import _native
from ._types import TokenCompleter, TokensWithLogprobs
from .errors import InferenceError, InvalidArgumentError

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
    if callable(getattr(value, "headers", None)):
        return _voyage_headers(value.headers())
    if hasattr(value, "id"):
        return {k: getattr(value, k, None) for k in ("id", "span_id", "agent_id")}
    raise TypeError(f"voyage must be a dict, an object with .id or .headers(), or an id "
                    f"string, not {type(value).__name__}")


# The attribution headers (docs/wire-contract.md) and the fields they carry.
_VOYAGE_HEADERS = {"x-sail-voyage-id": "id", "x-sail-voyage-span-id": "span_id",
                   "x-sail-voyage-agent-id": "agent_id"}


def _voyage_headers(headers: Any) -> dict | None:
    """A Voyage's headers() (None or empty: no voyage for this call)."""
    if not headers:
        return None
    if not isinstance(headers, Mapping):
        raise TypeError(f"voyage.headers() must return a dict, not {type(headers).__name__}")
    out: dict = {"id": None, "span_id": None, "agent_id": None}
    for name, value in headers.items():
        field = _VOYAGE_HEADERS.get(str(name).lower())
        if field is None:
            raise InvalidArgumentError(f"voyage header {name!r} is not one the completer sends "
                                       f"({', '.join(sorted(_VOYAGE_HEADERS))})", field="voyage")
        out[field] = value
    return out


def _is_voyage_context(value: Any) -> bool:
    """A Voyage-like object: its attribution is read anew on every call (Sail's
    SDK computes the headers per call, https://docs.sailresearch.com/voyages-sdk-inference);
    the dict and str forms are fixed."""
    return value is not None and not isinstance(value, (str, Mapping))


# Errors of a sample refused before anything was sent: its budget
# reservation is released, not spent. Overloaded and unavailable are not
# among them: a cluster's lost node or a full connection queue can report
# them for a sample Sail already accepted (and bills), so their worst case
# stays spent and the cap is never exceeded.
_REFUSED = (InvalidArgumentError,)


# Distinct voyages of one completer with their own native completer, at most
# (idle ones beyond this are closed).
_MAX_VOYAGES = 64


def _positive_int(value: Any, field: str) -> None:
    """None, or an int > 0 (TypeError / InvalidArgumentError naming field)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int or None, not {type(value).__name__}")
    if value <= 0:
        raise InvalidArgumentError(f"{field} must be > 0", field=field)


def _add_counts(out: dict, more: dict) -> None:
    """A completer's own counters added to another's: the keys
    _native.own_stat_keys() names (in_flight, completed, failed_by_kind,
    usage: messages/types.hpp's description); the pool's are shared, not
    added."""
    for key in _native.own_stat_keys():
        if key in more:
            out[key] = _added(out.get(key), more[key])


def _row_key(row: dict) -> tuple:
    return tuple(v for v in row.values() if isinstance(v, str))


def _added(a: Any, b: Any) -> Any:
    """a + b for a counter, a dict of counters, or a table's rows (dicts
    keyed by their str fields, e.g. usage's model and window)."""
    if a is None:
        return copy.deepcopy(b)
    if isinstance(b, dict):
        return {k: a.get(k, 0) + b.get(k, 0) for k in {**a, **b}}
    if isinstance(b, list):
        rows = {_row_key(r): dict(r) for r in a}
        for r in b:
            old = rows.get(_row_key(r))
            rows[_row_key(r)] = dict(r) if old is None else {
                k: v if isinstance(v, str) else v + r[k] for k, v in old.items()}
        return [rows[k] for k in sorted(rows)]
    return a + b


def _voyage_key(voyage: dict | None) -> tuple | None:
    return None if voyage is None else tuple(voyage.get(k) for k in ("id", "span_id", "agent_id"))


def _options(value: Mapping | None, name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict, not {type(value).__name__}")
    # Sorted, so that equal options name the same shared runtime.
    return {k: (_options(v, name) if isinstance(v, Mapping) else v)
            for k, v in sorted(value.items())}


class SailTokenCompleter(TokenCompleter):
    """Token ids in, sampled token ids + logprobs + stop reason out.

    A tinker-cookbook ``TokenCompleter`` returning its ``TokensWithLogprobs``
    when tinker_cookbook is importable (otherwise the binding's classes of
    the same shape).

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
    (see docs/python.md). ``context_window=`` caps each call's max_tokens so
    that prompt + max_tokens fits, as tinker-cookbook's TinkerTokenCompleter.

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
                 context_window: int | None = None,
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
        _positive_int(context_window, "context_window")
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
        self.context_window = context_window
        self.request_logprobs = request_logprobs
        self._voyage_source = voyage if _is_voyage_context(voyage) else None
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
            make = _native.cluster_completer
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
            make = _native.local_completer
        self._native = self._durable(make(config, target), config)
        # Per distinct voyage of a Voyage-like object: (config, target, maker)
        # make the others, kept with their calls in flight.
        self._make = (config, target, make)
        self._voyages = {_voyage_key(config["voyage"]): self._native}
        self._busy: dict[int, int] = {}
        # The counters of those closed to stay within _MAX_VOYAGES.
        self._retired: dict = {}

    # -- sampling -------------------------------------------------------------------------

    async def __call__(self, model_input: Any, stop: Any = None,
                       max_tokens: int | None = None) -> TokensWithLogprobs:
        """One sample. ``model_input``: tinker's ModelInput or a list of ints;
        ``stop``: None, an int, a str, a list of ints or a list of strs;
        ``max_tokens``: a per-call cap (the effective cap is the smaller one).
        Cancelling the awaiting task cancels the sample."""
        prompt = _prompt(model_input)
        max_tokens = self._cap(prompt, max_tokens)
        native = self._native_now()
        holds = self._reserve(prompt, max_tokens, 1)
        loop = asyncio.get_running_loop()
        try:
            fut, key = _dispatcher(loop).sample(loop, native, prompt, stop, max_tokens)
        except BaseException:
            self._release(holds)
            raise
        self._enter(native)
        try:
            out = await fut
        except asyncio.CancelledError:
            try:
                native.cancel(key)
            finally:
                self._settle(holds, [None])
            raise
        except BaseException as e:
            self._settle(holds, [e])
            raise
        finally:
            self._leave(native)
        self._settle(holds, [out])
        return self._result(out)

    async def sample_group(self, model_input: Any, n: int, stop: Any = None,
                           max_tokens: int | None = None, *,
                           return_exceptions: bool = False) -> list[Any]:
        """n samples of one prompt (one prompt_cache_key): GRPO's group. A
        failed member never cancels its siblings (Sail bills them anyway):
        the call waits for every member, then raises the first failed
        member's error, or with ``return_exceptions=True`` returns the
        failures in place of their members. Cancelling the awaiting task
        cancels the whole group."""
        prompt = _prompt(model_input)
        max_tokens = self._cap(prompt, max_tokens)
        native = self._native_now()
        holds = self._reserve(prompt, max_tokens, n)
        loop = asyncio.get_running_loop()
        try:
            futures, group = _dispatcher(loop).sample_group(loop, native, prompt, n, stop,
                                                            max_tokens)
        except BaseException:
            self._release(holds)
            raise
        self._enter(native)
        try:
            members = await asyncio.gather(*futures, return_exceptions=True)
        except asyncio.CancelledError:
            try:
                native.cancel(group)
            finally:
                self._settle(holds, [None] * n)
            raise
        finally:
            self._leave(native)
        self._settle(holds, members)
        members = [m if isinstance(m, BaseException) else self._result(m) for m in members]
        if not return_exceptions:
            for m in members:
                if isinstance(m, BaseException):
                    raise m
        return members

    def _cap(self, prompt: Any, max_tokens: Any) -> Any:
        """The per-call cap with context_window: prompt + max_tokens fits."""
        if self.context_window is None or not isinstance(prompt, Sequence) \
                or isinstance(prompt, str):
            return max_tokens
        room = self.context_window - len(prompt)
        if room <= 0:
            raise InvalidArgumentError(f"Prompt length ({len(prompt)}) exceeds context window "
                                       f"({self.context_window}). No room for generation.",
                                       field="context_window")
        if max_tokens is None:
            return min(room, self.max_tokens)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            return max_tokens  # the type error is the native call's
        return min(max_tokens, room)

    def _durable(self, native: Any, config: dict) -> Any:
        """A native completer made durable when this completer has run=."""
        if self._run is not None:
            _native.make_durable(native, self._run._native, config, str(self._step),
                                 self._version)
        return native

    def _result(self, out: Any) -> Any:
        # Without request_logprobs a result never carries logprobs, whatever
        # the response held.
        if not self.request_logprobs and out.maybe_logprobs is not None:
            out.maybe_logprobs = None
        if self._run is not None:
            out.step = self._step
            out.version = self._version
        return out

    def _native_now(self) -> Any:
        """The native completer of this call's voyage (a Voyage-like object's
        attribution as of now)."""
        if self._voyage_source is None or self._native.closed:
            return self._native  # a closed completer refuses the call
        voyage = _voyage(self._voyage_source)
        key = _voyage_key(voyage)
        native = self._voyages.get(key)
        if native is None:
            config, target, make = self._make
            config = {**config, "voyage": voyage}
            native = self._durable(make(config, target), config)
            self._voyages[key] = native
            if len(self._voyages) > _MAX_VOYAGES:
                for k, other in list(self._voyages.items()):
                    if other is not self._native and other is not native \
                            and not self._busy.get(id(other)):
                        _add_counts(self._retired, other.stats())
                        other.close()
                        del self._voyages[k]
        return native

    def _enter(self, native: Any) -> None:
        self._busy[id(native)] = self._busy.get(id(native), 0) + 1

    def _leave(self, native: Any) -> None:
        left = self._busy[id(native)] - 1
        if left:
            self._busy[id(native)] = left
        else:
            del self._busy[id(native)]

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

    def _settle(self, holds: list, outs: list) -> None:
        """Per sample: its result, its exception, or None (cancelled: what it
        was billed is unknown). A refused sample frees its reservation (nothing
        was sent); a failed or unknown one keeps its worst case as spent."""
        if any(o is not None and not isinstance(o, BaseException) and o.usage is None
               for o in outs):
            warnings.warn("a response carried no valid usage: the sample's usage is unknown "
                          "(None, not 0) and its worst case stays spent", RuntimeWarning,
                          stacklevel=3)
        for h, o in zip(holds, outs):
            if isinstance(o, _REFUSED):
                self._budget.release(h)
            else:
                usage = None if o is None or isinstance(o, BaseException) else o.usage
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
        out = self._native.stats()
        if self._voyage_source is not None:
            _add_counts(out, self._retired)
            for other in self._voyages.values():
                if other is not self._native and not other.closed:
                    _add_counts(out, other.stats())
        return out

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
        for native in list(self._voyages.values()):
            native.close()

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

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


async def get_tinker_checkpoint_signed_url_async(service_client: Any = None,
                                                 tinker_path: Any = None,
                                                 ttl_seconds: int | None = None, *,
                                                 base_url: str | None = None,
                                                 api_key: str | None = None,
                                                 options: Mapping | None = None) -> str:
    """The signed archive URL of a Tinker checkpoint ("tinker://run/kind/name"),
    setting its TTL first when ttl_seconds is given. Feed the result to
    SailTokenCompleter(tinker_lora_signed_url=).

    As Sail's helper (https://docs.sailresearch.com/sdk-tinker): given a Tinker
    ``ServiceClient`` (anything with ``create_rest_client()``), its REST
    client's ``set_checkpoint_ttl_from_tinker_path_async(tinker_path,
    ttl_seconds)`` runs first when ttl_seconds is given, then
    ``get_checkpoint_archive_url_from_tinker_path_async(tinker_path)``; the URL
    is unwrapped from a bare string or ``url`` / ``signed_url`` /
    ``archive_url`` / ``checkpoint_archive_url`` of an object or mapping.
    InferenceError when the client lacks those methods or the answer holds
    no URL.

    With ``service_client=None`` -- or the binding's earlier form
    ``(tinker_path, ttl_seconds)`` -- the C++ resolver does the work
    (retries, "still building" waits, the URL cache): TINKER_API_KEY and
    TINKER_BASE_URL as the C++ resolver, ``base_url=`` / ``api_key=``
    override."""
    if isinstance(service_client, str):
        # (tinker_path, ttl_seconds) positionally, the earlier form.
        if tinker_path is not None and ttl_seconds is not None:
            raise TypeError("ttl_seconds given twice")
        service_client, tinker_path, ttl_seconds = None, service_client, (
            tinker_path if tinker_path is not None else ttl_seconds)
    if not isinstance(tinker_path, str):
        raise TypeError(f"tinker_path must be a str, not {type(tinker_path).__name__}")
    if service_client is not None:
        if base_url is not None or api_key is not None or options is not None:
            raise ValueError("base_url, api_key and options configure the built-in resolver; "
                             "a service_client brings its own")
        return await _signed_url_from_service_client(service_client, tinker_path, ttl_seconds)
    loop = asyncio.get_running_loop()
    target = {"base_url": base_url, "api_key": api_key,
              "options": _options(options, "options")}
    resolver = await loop.run_in_executor(None, _native.resolver, target)
    return await _dispatcher(loop).resolve(loop, resolver, tinker_path, ttl_seconds)


_URL_KEYS = ("url", "signed_url", "archive_url", "checkpoint_archive_url")


async def _signed_url_from_service_client(service_client: Any, tinker_path: str,
                                          ttl_seconds: Any) -> str:
    _positive_int(ttl_seconds, "ttl_seconds")

    def method(obj: Any, name: str) -> Any:
        fn = getattr(obj, name, None)
        if not callable(fn):
            raise InferenceError(f"the Tinker client ({type(obj).__name__}) has no {name}()",
                                 field=name)
        return fn

    rest = method(service_client, "create_rest_client")()
    if ttl_seconds is not None:
        await method(rest, "set_checkpoint_ttl_from_tinker_path_async")(tinker_path, ttl_seconds)
    answer = await method(rest, "get_checkpoint_archive_url_from_tinker_path_async")(tinker_path)
    url = answer if isinstance(answer, str) else None
    for key in _URL_KEYS if url is None else ():
        value = answer.get(key) if isinstance(answer, Mapping) else getattr(answer, key, None)
        if isinstance(value, str) and value:
            url = value
            break
    if not url:
        # The answer itself is not shown: it may hold secrets in fields we do
        # not know.
        raise InferenceError(f"the Tinker archive answer ({type(answer).__name__}) holds no URL "
                             f"({', '.join(_URL_KEYS)})")
    return url


def shutdown() -> None:
    """Stops every runtime, cluster and resolver of the process (open samples
    fail with SampleCancelledError). Later calls start them again. Runs
    automatically at interpreter exit. Step samplers still open are dropped
    first without acknowledging their last batch (reopen the run to go on)."""
    from ._sampler import _release_all
    _release_all()
    _native.shutdown(False)
