"""sail_tinker.Run: a durable run, so that a training loop killed mid-step
and started again pays for no sample twice (docs/python.md, "Durable runs")."""
from __future__ import annotations

import asyncio
from typing import Any

from . import _native

__all__ = ["Run"]


class Run:
    """The journal of a training loop's samples (SQLite, WAL) at ``path``.

    Opens or creates it: a new journal takes ``run_id`` (default: a generated
    id, kept in the journal); an existing one keeps its own id (ValueError if
    ``run_id`` names another). Pass it to
    ``SailTokenCompleter(..., run=run, step=S)``: every sample of that
    completer is then journaled under a key derived from (run id, step, the
    call, its occurrence in the step), so the same loop run again after a
    crash gets each finished sample from the journal, re-attaches to those
    Sail accepted, re-sends the journaled-but-unanswered ones byte-identical,
    and creates only the rest.

    ``with Run(path) as run:`` / ``async with`` close it (close() commits
    what is recorded).
    """

    def __init__(self, path: str, run_id: str | None = None) -> None:
        if not isinstance(path, str):
            raise TypeError(f"path must be a str, not {type(path).__name__}")
        self._native = _native.Run(path, run_id)

    @property
    def id(self) -> str:
        return self._native.id

    @property
    def path(self) -> str:
        return self._native.path

    @property
    def closed(self) -> bool:
        return self._native.closed

    def stats(self) -> dict[str, dict[str, int]]:
        """Per step (as a str): samples ``fresh`` (created now),
        ``from_journal`` (answered with no request), ``reattached`` (polled
        by their journaled response id), ``resent`` (journaled body sent
        again under its key) and ``failed``, for the calls of this process."""
        return self._native.stats()

    def group_sampler(self, prompts: Any, *, group_size: int = 8, groups_per_step: int = 64,
                      overprovision: float = 0.25, max_staleness: int = 1,
                      max_refills: int = 8) -> Any:
        """A step sampler on this run (docs/python.md, "Step sampler"):
        ``batch = await sampler.next_step(completer)`` returns
        ``groups_per_step`` complete groups of ``group_size`` members while
        ``overprovision`` x K more stay in flight for the next step; nothing
        billed is dropped. ``prompts``: a list (or iterable) of dicts {"id",
        "prompt", optional "n" (= group_size), "max_tokens", "stop", "meta"}
        (the rollout input format) or (id, tokens) pairs, ids unique."""
        from ._sampler import GroupSampler
        return GroupSampler(self, prompts, group_size=group_size,
                            groups_per_step=groups_per_step, overprovision=overprovision,
                            max_staleness=max_staleness, max_refills=max_refills)

    def close(self) -> None:
        """Commits everything recorded and closes the journal; completers
        on this run fail later calls with SampleCancelledError. Idempotent."""
        self._native.close()

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._native.close)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> "Run":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"Run(path={self.path!r}, id={self.id!r}{', closed' if self.closed else ''})"
