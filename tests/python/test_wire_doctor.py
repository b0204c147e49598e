"""sail_tinker.doctor() (the C++ wire doctor) and the wire switches of the
runtime options, against the emulator's wire variants: the doctor names the
failing assumption and the setting that works; a completer with that setting
samples the variant correctly (greedy samples are predicted exactly)."""
from __future__ import annotations

import asyncio
import json

import pytest

import sail_tinker
from conftest import FAST, TOY_MODEL

PROMPT = [4, 5, 6]

# variant -> (failing check, its verdict, wire key, the value that works)
VARIANTS = {
    "reject-include": ("A2", "refused", "logprobs", "field"),
    "stop-token-ids": ("A1", "ignored", "stop_field", "stop_token_ids"),
    "top-level": ("D1-D4", "elsewhere", "layout", "top_level"),
}


def check(report, check_id):
    return next(c for c in report["checks"] if c["id"] == check_id)


def test_without_yes_nothing_is_sent():
    with sail_tinker.Emulator() as emu:
        report = sail_tinker.doctor(emulator=emu)
        assert report["sent"] is False
        assert report["max_samples"] == 5
        assert report["max_output_tokens"] == 40
        assert report["checks"] == []
        assert emu.counter("posts") == 0


def test_defaults_hold_against_the_default_emulator():
    with sail_tinker.Emulator() as emu:
        report = sail_tinker.doctor(yes=True, emulator=emu, model=TOY_MODEL)
        assert report["holds"] is True, report
        assert {c["id"]: c["verdict"] for c in report["checks"]} == {
            "A1": "held", "A2": "held", "D1-D4": "held"}
        assert report["ini"] == "[wire]\n"
        assert report["samples_sent"] == emu.counter("posts") == 2


def test_tinker_path_checks_ttl_archive_and_a_lora_sample():
    with sail_tinker.Emulator() as emu:
        report = sail_tinker.doctor(yes=True, emulator=emu, model=TOY_MODEL,
                                    tinker_path="tinker://run-1/sampler_weights/s1",
                                    adapter_config={"r": 8})
        assert report["holds"] is True, report
        verdicts = {c["id"]: c["verdict"] for c in report["checks"]}
        assert verdicts["tinker-ttl"] == verdicts["tinker-archive"] == verdicts["A3"] == "held"
        assert emu.checkpoint_ttl("tinker://run-1/sampler_weights/s1") == 3600
        # Neither key nor the signed URL's query reaches the report.
        text = json.dumps(report)
        assert "Signature=" not in text
        assert emu.api_key not in text and emu.tinker_api_key not in text


def test_bad_wire_option_names_the_key():
    with pytest.raises(sail_tinker.InvalidArgumentError) as e:
        sail_tinker.doctor(runtime_options={"wire": {"stop_field": "stops"}})
    assert e.value.field == "runtime_options.wire.stop_field"
    with pytest.raises(sail_tinker.InvalidArgumentError) as e:
        sail_tinker.SailTokenCompleter(TOY_MODEL, 8, base_url="http://127.0.0.1:9",
                                       api_key="sk_x",
                                       runtime_options={"wire": {"layuot": "top_level"}})
    assert "wire.layuot" in e.value.field
    with pytest.raises(sail_tinker.InvalidArgumentError) as e:
        sail_tinker.Emulator(wire_variants=["nope"])
    assert e.value.field == "wire_variants"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_doctor_finds_the_setting_and_a_completer_samples_with_it(variant):
    check_id, verdict, key, value = VARIANTS[variant]
    with sail_tinker.Emulator(wire_variants=[variant]) as emu:
        report = sail_tinker.doctor(yes=True, emulator=emu, model=TOY_MODEL)
        assert report["holds"] is False
        c = check(report, check_id)
        assert c["verdict"] == verdict, report
        assert c["working"] == value
        if verdict == "refused":
            assert c["status"] == 400 and "invalid_request_error" in c["body"]
        assert report["working"][key] == value
        assert f'{key.replace("_", "-")} = "{value}"' in report["ini"]
        # The recommended settings, as the runtime options take them.
        wire = report["working"]
        again = sail_tinker.doctor(yes=True, emulator=emu, model=TOY_MODEL,
                                   runtime_options={"wire": wire})
        assert again["holds"] is True, again
        free = emu.expected_sample(PROMPT, TOY_MODEL, temperature=0.0, max_output_tokens=8)
        stop = next(t for i, t in enumerate(free["token_ids"])
                    if i >= 2 and t not in free["token_ids"][:i])
        want = emu.expected_sample(PROMPT, TOY_MODEL, temperature=0.0, max_output_tokens=8,
                                   stop=[stop])
        assert want["stop_reason"] == "stop"
        c = sail_tinker.SailTokenCompleter(TOY_MODEL, 8, temperature=0.0, emulator=emu,
                                           runtime_options={**FAST, "wire": wire})
        out = asyncio.run(c(PROMPT, [stop]))
        assert out.tokens == want["token_ids"]
        assert out.maybe_logprobs == pytest.approx(want["logprobs"])
        assert out.stop_reason == "stop"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_durable_completer_encodes_with_the_wire_settings(variant, tmp_path):
    # A durable completer encodes (and journals) its create bodies itself:
    # with the runtime's [wire], as a plain completer does.
    _, _, key, value = VARIANTS[variant]
    with sail_tinker.Emulator(wire_variants=[variant]) as emu:
        free = emu.expected_sample(PROMPT, TOY_MODEL, temperature=0.0, max_output_tokens=8)
        stop = next(t for i, t in enumerate(free["token_ids"])
                    if i >= 2 and t not in free["token_ids"][:i])
        want = emu.expected_sample(PROMPT, TOY_MODEL, temperature=0.0, max_output_tokens=8,
                                   stop=[stop])

        async def go():
            with sail_tinker.Run(str(tmp_path / "run.journal")) as run:
                with sail_tinker.SailTokenCompleter(
                        TOY_MODEL, 8, temperature=0.0, emulator=emu, run=run, step=0,
                        runtime_options={**FAST, "wire": {key: value}}) as c:
                    return await c(PROMPT, [stop])

        out = asyncio.run(go())
        assert out.tokens == want["token_ids"]
        assert out.maybe_logprobs == pytest.approx(want["logprobs"])
        assert out.stop_reason == "stop"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_step_sampler_encodes_with_the_wire_settings(variant, tmp_path):
    # The sampler's groups go through durable fronts of their own: they too
    # encode with the completer's runtime [wire].
    _, _, key, value = VARIANTS[variant]
    with sail_tinker.Emulator(wire_variants=[variant]) as emu:
        free = emu.expected_sample(PROMPT, TOY_MODEL, temperature=0.0, max_output_tokens=8)
        stop = next(t for i, t in enumerate(free["token_ids"])
                    if i >= 2 and t not in free["token_ids"][:i])
        want = emu.expected_sample(PROMPT, TOY_MODEL, temperature=0.0, max_output_tokens=8,
                                   stop=[stop])

        async def go():
            with sail_tinker.Run(str(tmp_path / "run.journal")) as run:
                with sail_tinker.SailTokenCompleter(
                        TOY_MODEL, 8, temperature=0.0, emulator=emu,
                        runtime_options={**FAST, "wire": {key: value}}) as c:
                    async with run.group_sampler([{"id": "a", "prompt": PROMPT, "stop": [stop]}],
                                                 group_size=1, groups_per_step=1) as s:
                        return await s.next_step(c)

        batch = asyncio.run(go())
        assert not batch.failed, batch.failed
        (out,) = batch.groups[0].members
        assert out.tokens == want["token_ids"]
        assert out.stop_reason == "stop"
