"""Fake tinker.types: ModelInput and CheckpointArchiveUrlResponse."""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field


@dataclass
class CheckpointArchiveUrlResponse:
    url: str
    expires: datetime.datetime


@dataclass
class ModelInput:
    chunks: list[list[int]] = field(default_factory=list)

    @classmethod
    def from_ints(cls, tokens: list[int]) -> "ModelInput":
        return cls([list(tokens)])

    def to_ints(self) -> list[int]:
        return [t for chunk in self.chunks for t in chunk]

    @property
    def length(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)
