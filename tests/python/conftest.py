"""Shared fixtures of the binding's tests (run by ctest: PYTHONPATH points at
<build>/python, SAIL_TINKER_BIN at the sail-tinker executable)."""
from __future__ import annotations

import os
import socket

import pytest

import sail_tinker

TOY_MODEL = "emulator/toy"

# Fast polling and retries against the emulator (the defaults suit Sail).
FAST = {
    "all_windows": {"first_poll": 0.002, "max_poll": 0.02},
    "retry": {"base_delay": 0.002, "max_delay": 0.02},
    "seed": 7,
}


class ModelInput:
    """The part of tinker.ModelInput a completer uses."""

    def __init__(self, tokens):
        self._tokens = list(tokens)

    def to_ints(self):
        return list(self._tokens)


def prompt(i: int, n: int = 12) -> list[int]:
    """A prompt that differs with i (the same i, the same prompt)."""
    return [(i * 31 + j * 7) % 61 + 3 for j in range(n)]


@pytest.fixture
def emu():
    with sail_tinker.Emulator() as e:
        yield e


@pytest.fixture(autouse=True)
def fresh_process_state():
    """Every test starts without runtimes and leaves none behind."""
    yield
    sail_tinker.shutdown()


def completer(emu, max_tokens: int = 8, **kw) -> sail_tinker.SailTokenCompleter:
    kw.setdefault("runtime_options", FAST)
    return sail_tinker.SailTokenCompleter(TOY_MODEL, max_tokens, emulator=emu, **kw)


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sail_tinker_bin() -> str:
    path = os.environ.get("SAIL_TINKER_BIN")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("SAIL_TINKER_BIN must name the sail-tinker executable (ctest sets it)")
    return path
