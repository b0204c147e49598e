"""The emulator's heavy-tailed latency through Python's Emulator(latency=...):
a named profile (by name, or with a scale), a per-window log-normal by its
p99 / median ratio, and ValueError naming a bad profile or ratio."""
from __future__ import annotations

import asyncio

import pytest

import sail_tinker
from conftest import ModelInput, completer, prompt


@pytest.mark.parametrize("latency", [
    {"profile": "heavy-tail", "scale": 0.002},
    {"profile": "measured", "scale": 0.0005},
    {"all": {"median": 0.002, "p99_ratio": 10}},
])
def test_a_heavy_tailed_emulator_still_answers(latency):
    with sail_tinker.Emulator(latency=latency) as emu:
        c = completer(emu, max_tokens=4)
        group = asyncio.run(c.sample_group(ModelInput(prompt(3)), 3))
        assert len(group) == 3
        assert emu.stats()["inference_runs_total"] == 3


def test_a_profile_by_name():
    with sail_tinker.Emulator(latency="heavy-tail") as emu:
        emu.set_latency({"profile": "targets", "scale": 0.001})


@pytest.mark.parametrize("latency, field", [
    ({"profile": "nope"}, "latency.profile"),
    ({"profile": "measured", "scale": 0}, "latency.scale"),
    ({"priority": {"median": 0.01, "p99_ratio": 0.5}}, "latency.priority.p99_ratio"),
])
def test_bad_latency_is_a_value_error_naming_it(latency, field):
    with pytest.raises(ValueError) as e:
        sail_tinker.Emulator(latency=latency)
    assert field in str(e.value)
