"""The seed's validation rules (Sail's SailTokenCompleter, /sdk-tinker), through the Python
constructor and call: ValueError (InvalidArgumentError, naming the field) for
the seed's ValueError cases, TypeError for wrong types."""
from __future__ import annotations

import asyncio
import json

import pytest

import sail_tinker
from conftest import FAST, TOY_MODEL, ModelInput, completer

URL = "https://storage.example/ckpt.tar?X-Goog-Signature=abc"


# One model with known windows and no LoRA serving; the rest are unknown.
MODELS = {"acme/m1": {"windows": ["priority", "standard"], "lora": False}}


def make(emu, **kw):
    args = dict(model=TOY_MODEL, max_tokens=8)
    args.update(kw)
    return sail_tinker.SailTokenCompleter(emulator=emu, runtime_options={**FAST, "models": MODELS},
                                          **args)


@pytest.mark.parametrize("kw, field", [
    (dict(model=""), "model"),
    (dict(max_tokens=0), "max_tokens"),
    (dict(max_tokens=-5), "max_tokens"),
    (dict(temperature=-0.1), "temperature"),
    (dict(temperature=2.5), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_p=-0.5), "top_p"),
    (dict(completion_window=""), "completion_window"),
    (dict(lora="a", tinker_lora_signed_url=URL, adapter_config={"r": 8}), "lora"),
    (dict(tinker_lora_signed_url=URL), "adapter_config"),
    (dict(tinker_lora_signed_url="not a url", adapter_config={"r": 8}), "tinker_lora_signed_url"),
    (dict(lora="emulator-lora", completion_window="asap"), "completion_window"),
    (dict(tinker_lora_signed_url=URL, adapter_config={"r": 8}, completion_window="asap"),
     "completion_window"),
    (dict(tinker_lora_signed_url=URL, adapter_config="not json"), "adapter_config"),
    (dict(tinker_lora_signed_url=URL, adapter_config="[1, 2]"), "adapter_config"),
    (dict(metadata={"completion_window": "flex"}), "metadata.completion_window"),
    (dict(timeout=0), "timeout"),
    (dict(timeout=-1.0), "timeout"),
    (dict(voyage={"id": ""}), "voyage.id"),
    (dict(voyage={"id": "v1", "span_id": "bad\nspan"}), "voyage.span_id"),
    # A model table from runtime_options: a known model's windows and LoRA
    # support are checked ...
    (dict(model="acme/m1", completion_window="flex"), "completion_window"),
    (dict(model="acme/m1", lora="emulator-lora"), "lora"),
])
def test_value_errors_name_the_field(emu, kw, field):
    with pytest.raises(ValueError) as info:
        make(emu, **kw)
    err = info.value
    assert isinstance(err, sail_tinker.InvalidArgumentError)
    assert err.kind == "invalid_argument"
    assert err.field == field


def test_unknown_models_and_windows_are_the_servers_to_judge(emu):
    # ... an unknown model may use any window; Sail answers a 400 for one it
    # does not know, typed, with its body.
    make(emu, model="acme/m1", completion_window="standard").close()
    c = make(emu, completion_window="some-future-window")
    with pytest.raises(sail_tinker.HTTPError) as info:
        asyncio.run(c([1, 2, 3]))
    assert info.value.http_status == 400
    assert "completion_window" in info.value.body


def test_a_bad_model_table_is_refused(emu):
    with pytest.raises(ValueError) as info:
        make(emu).close()
        sail_tinker.SailTokenCompleter(TOY_MODEL, 8, emulator=emu,
                                       runtime_options={"models": {"m": {"windows": "flex"}}})
    assert info.value.field == "models.m.windows"


@pytest.mark.parametrize("kw", [
    dict(model=None),
    dict(model=3),
    dict(max_tokens="8"),
    dict(max_tokens=8.0),
    dict(max_tokens=True),
    dict(temperature="hot"),
    dict(adapter_config=[1, 2]),
    dict(metadata=[("a", "b")]),
    dict(metadata={"a": 1}),
    dict(timeout="soon"),
    dict(voyage=42),
])
def test_type_errors(emu, kw):
    with pytest.raises(TypeError):
        make(emu, **kw)


def test_adapter_config_as_dict_or_json_string(emu):
    for cfg in ({"r": 8, "alpha": 16}, json.dumps({"r": 8, "alpha": 16})):
        c = make(emu, tinker_lora_signed_url=URL, adapter_config=cfg, tinker_lora_name="mine")
        c.close()


def test_defaults_are_the_seeds(emu):
    c = make(emu)
    assert (c.temperature, c.top_p, c.completion_window) == (1.0, 1.0, "priority")
    c.close()


def test_call_validation(emu):
    c = completer(emu)

    async def main():
        with pytest.raises(ValueError) as info:
            await c([])
        assert info.value.field == "prompt"
        with pytest.raises(ValueError) as info:
            await c(ModelInput([1, 2, 2**31]))
        assert info.value.field == "prompt"
        with pytest.raises(ValueError):
            await c([1, -1])
        with pytest.raises(ValueError):
            await c([1, 2**70])
        with pytest.raises(TypeError):
            await c([1, 2.0])
        with pytest.raises(TypeError):
            await c([1, "2"])
        with pytest.raises(TypeError):
            await c([1, True])
        with pytest.raises(TypeError):
            await c("1 2 3")
        with pytest.raises(ValueError) as info:
            await c([1, 2], stop=[1, "x"])
        assert info.value.field == "stop"
        with pytest.raises(ValueError):
            await c([1, 2], stop=[""])
        with pytest.raises(ValueError):
            await c([1, 2], stop=-3)
        with pytest.raises(TypeError):
            await c([1, 2], stop=1.5)
        with pytest.raises(TypeError):
            await c([1, 2], stop=[[1]])
        with pytest.raises(ValueError) as info:
            await c([1, 2], max_tokens=0)
        assert info.value.field == "max_tokens"
        with pytest.raises(ValueError) as info:
            await c.sample_group([1, 2], 0)
        assert info.value.field == "n"

    asyncio.run(main())
    # Nothing invalid reached the emulator.
    assert emu.counter("posts") == 0


def test_logprobs_raises_value_error_when_none(emu):
    c = completer(emu, request_logprobs=False)
    out = asyncio.run(c([5, 6, 7]))
    assert out.maybe_logprobs is None
    assert len(out.tokens) == 8
    with pytest.raises(ValueError):
        out.logprobs


def test_no_api_key_is_not_configured(monkeypatch):
    monkeypatch.delenv("SAIL_API_KEY", raising=False)
    with pytest.raises(sail_tinker.NotConfiguredError) as info:
        sail_tinker.SailTokenCompleter(TOY_MODEL, 8)
    assert info.value.field == "SAIL_API_KEY"
    # Validation comes first: a bad configuration is a ValueError even so.
    with pytest.raises(ValueError):
        sail_tinker.SailTokenCompleter(TOY_MODEL, 0)


def test_environment_configures_the_runtime(emu, monkeypatch):
    # SAIL_API_KEY / SAIL_BASE_URL as for the C++ runtime (from_env).
    monkeypatch.setenv("SAIL_API_KEY", emu.api_key)
    monkeypatch.setenv("SAIL_BASE_URL", emu.base_url)
    c = sail_tinker.SailTokenCompleter(TOY_MODEL, 4, runtime_options=FAST)
    out = asyncio.run(c([1, 2, 3]))
    assert len(out.tokens) == 4
    # Keyword arguments override the environment.
    monkeypatch.setenv("SAIL_API_KEY", "sk_wrong")
    c2 = sail_tinker.SailTokenCompleter(TOY_MODEL, 4, api_key=emu.api_key, runtime_options=FAST)
    assert len(asyncio.run(c2([1, 2, 3])).tokens) == 4


def test_unknown_runtime_options_are_refused(emu):
    with pytest.raises(ValueError) as info:
        sail_tinker.SailTokenCompleter(TOY_MODEL, 8, emulator=emu,
                                       runtime_options={"wokers": 4})
    assert info.value.field == "runtime_options.wokers"


@pytest.mark.parametrize("options, field", [
    ({"workers": 0}, "runtime_options.workers"),
    ({"poll_jitter": 1.0}, "runtime_options.poll_jitter"),
    ({"call_timeout": 0}, "runtime_options.call_timeout"),
    ({"retry": {"max_delay": 0.1, "max_attempts": -1}}, "runtime_options.retry.max_attempts"),
    ({"resolver_retry": {"max_attempts": 0}}, "runtime_options.resolver_retry.max_attempts"),
    ({"windows": {"priority": {"deadline": 0}}}, "runtime_options.windows.priority.deadline"),
    ({"max_connections": 0}, "runtime_options.max_connections"),
    ({"io_threads": 257}, "runtime_options.io_threads"),
])
def test_runtime_options_out_of_range_are_refused_by_the_options(emu, options, field):
    # The ranges are the C++ options structs' validate(), the same that checks
    # caf-application.ini; the error names the dict key.
    with pytest.raises(sail_tinker.InvalidArgumentError) as info:
        sail_tinker.SailTokenCompleter(TOY_MODEL, 8, emulator=emu, runtime_options=options)
    assert info.value.kind == "invalid_argument"
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


def test_cluster_options_out_of_range_are_refused_by_the_options():
    with pytest.raises(sail_tinker.InvalidArgumentError) as info:
        sail_tinker.SailTokenCompleter(TOY_MODEL, 8, nodes=["127.0.0.1:1"],
                                       cluster_options={"max_attempts": 0})
    assert info.value.field == "cluster_options.max_attempts"


def test_nodes_exclude_local_options(emu):
    with pytest.raises(ValueError):
        sail_tinker.SailTokenCompleter(TOY_MODEL, 8, nodes=["127.0.0.1:1"], api_key="sk_x")
    with pytest.raises(ValueError) as info:
        sail_tinker.SailTokenCompleter(TOY_MODEL, 8, nodes=["no-port"])
    assert info.value.field == "nodes"
