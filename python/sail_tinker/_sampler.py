"""sail_tinker.GroupSampler: training steps that do not wait for the slowest
sample, without throwing away anything Sail billed (docs/python.md, "Step
sampler"). A thin layer over the C++ step sampler (actors/step_sampler.hpp):
its blocking calls run on the sampler's own worker thread with the GIL
released, so the event loop never blocks."""
from __future__ import annotations

import asyncio
import concurrent.futures
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _native
from ._completer import _prompt

__all__ = ["GroupSampler", "SampledGroup", "StepBatch"]

# Samplers alive, released before the actor systems stop at interpreter exit.
_alive: "weakref.WeakSet[GroupSampler]" = weakref.WeakSet()


def _release_all() -> None:
    """Interpreter exit: drops every sampler's C++ side without acknowledging
    its last batch (delivered again when the run is reopened)."""
    for s in list(_alive):
        s._native.release()
        s._worker.shutdown(wait=False)


@dataclass
class SampledGroup:
    """One group of ``group_size`` members sampled from one prompt."""

    #: The prompt's id and its position in the prompt list.
    prompt_id: str
    index: int
    #: Its step label in the durable run ("grp-<index>-<prompt id>").
    label: str
    #: The members (TokensWithLogprobs with ``usage``, ``step`` = the step that
    #: launched the group and ``version`` = the adapter version that sampled it),
    #: in completion order; a failed group: those it has.
    members: list
    version: str
    launched_step: int
    #: The step it is delivered in, and how many versions it lags behind
    #: that step's version.
    step: int
    staleness: int
    #: Replacement members (a member failed after the completer's retries).
    refills: int
    #: The prompt's ``meta`` (dict prompts), as given.
    meta: Any = None
    #: Failed groups: the error (a sail_tinker error instance).
    error: BaseException | None = None


@dataclass
class StepBatch:
    """What a step returns: up to K complete groups within max_staleness
    (oldest launch first), the staler ones and the failed ones."""

    step: int
    version: str
    groups: list[SampledGroup] = field(default_factory=list)
    stale: list[SampledGroup] = field(default_factory=list)
    failed: list[SampledGroup] = field(default_factory=list)

    def __iter__(self):
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    @property
    def all_groups(self) -> list[SampledGroup]:
        """groups + stale + failed: everything this batch delivers."""
        return self.groups + self.stale + self.failed


def _normalize(prompts: Any, group_size: int) -> tuple[list[tuple], dict[str, Any]]:
    """(id, prompt tokens, stop, max_tokens) tuples and the metas by id."""
    if hasattr(prompts, "__aiter__") and not hasattr(prompts, "__iter__"):
        raise TypeError("prompts must be an iterable (async iterables are not supported: "
                        "collect them into a list first)")
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Iterable):
        raise TypeError(f"prompts must be an iterable of prompts, not {type(prompts).__name__}")
    out: list[tuple] = []
    metas: dict[str, Any] = {}
    for i, p in enumerate(prompts):
        if isinstance(p, Mapping):
            unknown = set(p) - {"id", "prompt", "n", "max_tokens", "stop", "meta"}
            if unknown:
                raise ValueError(f"prompts[{i}]: unknown field(s) {sorted(unknown)}")
            if "id" not in p or "prompt" not in p:
                raise ValueError(f"prompts[{i}] needs an id and a prompt")
            pid, tokens = p["id"], p["prompt"]
            n = p.get("n")
            if n is not None and n != group_size:
                raise ValueError(f"prompts[{i}]: n={n!r} differs from group_size={group_size} "
                                 "(a sampler's groups all have group_size members)")
            stop, max_tokens = p.get("stop"), p.get("max_tokens")
            if "meta" in p:
                metas[str(pid)] = p["meta"]
        elif isinstance(p, tuple) and len(p) == 2:
            pid, tokens = p
            stop = max_tokens = None
        else:
            raise TypeError(f"prompts[{i}] must be a dict {{'id', 'prompt', ...}} or an "
                            f"(id, tokens) pair, not {type(p).__name__}")
        if not isinstance(pid, str):
            raise TypeError(f"prompts[{i}]: id must be a str, not {type(pid).__name__}")
        out.append((pid, _prompt(tokens), stop, max_tokens))
    return out, metas


class GroupSampler:
    """Made by :meth:`sail_tinker.Run.group_sampler`; see docs/python.md.

    ``await next_step(completer)`` acknowledges the previous batch, keeps
    ceil(K * (1 + overprovision)) groups open with ``completer``'s
    configuration and version, and returns a :class:`StepBatch` as soon as K
    are complete. ``await drain()`` returns every group still open;
    ``close()`` (or ``with`` / ``async with``) acknowledges the last batch.
    """

    def __init__(self, run: Any, prompts: Any, *, group_size: int = 8,
                 groups_per_step: int = 64, overprovision: float = 0.25,
                 max_staleness: int = 1, max_refills: int = 8) -> None:
        for name, value in (("group_size", group_size), ("groups_per_step", groups_per_step),
                            ("max_staleness", max_staleness), ("max_refills", max_refills)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if isinstance(overprovision, bool) or not isinstance(overprovision, (int, float)):
            raise TypeError(f"overprovision must be a number, not {type(overprovision).__name__}")
        normalized, self._metas = _normalize(prompts, group_size)
        self._native = _native.StepSampler(run._native, normalized, {
            "group_size": group_size,
            "groups_per_step": groups_per_step,
            "overprovision": float(overprovision),
            "max_staleness": max_staleness,
            "max_refills": max_refills,
        })
        self.group_size = group_size
        self.groups_per_step = groups_per_step
        # One thread: the C++ sampler has one owner thread at a time.
        self._worker = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sail-tinker-sampler")
        self._lock: asyncio.Lock | None = None
        self._request_logprobs = True
        # Every completer given to next_step / attach, kept for the
        # sampler's life: a dropped SailTokenCompleter stops its completer,
        # and the groups launched with it (billed, carried over) must run on.
        self._completers: list[Any] = []
        _alive.add(self)

    # -- helpers ---------------------------------------------------------------------------

    async def _call(self, fn: Any, *args: Any) -> Any:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._native.closed:
                return fn(*args)  # raises SampleCancelledError at once
            return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    def _target(self, completer: Any, version: str | None) -> tuple[Any, dict, str | None]:
        native = getattr(completer, "_native", None)
        if native is None or not hasattr(completer, "_make"):
            raise TypeError("completer must be a sail_tinker.SailTokenCompleter, "
                            f"not {type(completer).__name__}")
        if version is not None and not isinstance(version, str):
            raise TypeError(f"version must be a str, not {type(version).__name__}")
        config = completer._make[0]
        if not any(c is completer for c in self._completers):
            self._completers.append(completer)
        return native, config, version if version is not None else completer._version

    def _group(self, d: dict) -> SampledGroup:
        for m in d["members"]:
            if not self._request_logprobs and m.maybe_logprobs is not None:
                m.maybe_logprobs = None
            m.step = d["launched_step"]
            m.version = d["version"]
        return SampledGroup(meta=self._metas.get(d["prompt_id"]), **d)

    def _batch(self, d: dict | None) -> StepBatch:
        if d is None:
            return StepBatch(step=0, version="")
        return StepBatch(step=d["step"], version=d["version"],
                         groups=[self._group(g) for g in d["groups"]],
                         stale=[self._group(g) for g in d["stale"]],
                         failed=[self._group(g) for g in d["failed"]])

    # -- the API ---------------------------------------------------------------------------

    async def next_step(self, completer: Any, *, version: str | None = None) -> StepBatch:
        """Acknowledges the previous batch, launches up to the provisioned
        count with ``completer`` (a SailTokenCompleter: its configuration;
        ``version`` labels the adapter, default: the completer's ``version=``
        or its adapter identity) and returns K complete groups (fewer once
        the prompts run out; an empty batch when everything was delivered)."""
        native, config, version = self._target(completer, version)
        self._request_logprobs = completer.request_logprobs
        return self._batch(await self._call(self._native.next_step, native, config, version))

    async def attach(self, completer: Any, *, version: str | None = None) -> None:
        """Makes ``completer`` known for groups of its version resumed from
        the journal (a reopened run), without a step."""
        native, config, version = self._target(completer, version)
        await self._call(self._native.attach, native, config, version)

    async def drain(self) -> StepBatch:
        """Acknowledges the previous batch, waits for every open group and
        returns them all (a step of its own); launches nothing new. Before
        any next_step / attach: an empty batch."""
        return self._batch(await self._call(self._native.drain))

    def stats(self) -> dict[str, int]:
        """launched, resumed (re-launched from the journal), skipped
        (acknowledged in an earlier process), delivered, stale, failed,
        refills, members_completed (billed), members_delivered, in_flight,
        staleness_sum (over delivered members)."""
        return self._native.stats()

    @property
    def closed(self) -> bool:
        return self._native.closed

    def close(self) -> None:
        """Acknowledges the last batch (committed to the journal). Groups
        still open keep running to their end, journaled. Idempotent. Waits
        for a call in flight on the sampler's thread (one owner at a time)."""
        if not self._native.closed:
            self._worker.submit(self._native.close).result()
        self._worker.shutdown(wait=False)

    async def aclose(self) -> None:
        if not self.closed:
            await self._call(self._native.close)
        self._worker.shutdown(wait=False)

    def __enter__(self) -> "GroupSampler":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> "GroupSampler":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (f"GroupSampler(group_size={self.group_size}, "
                f"groups_per_step={self.groups_per_step}{', closed' if self.closed else ''})")
