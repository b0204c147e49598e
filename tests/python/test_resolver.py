"""get_tinker_checkpoint_signed_url_async, backed by the C++ resolver, and
its URL feeding a completer's tinker_lora_signed_url."""
from __future__ import annotations

import asyncio

import pytest

import sail_tinker
from conftest import FAST, TOY_MODEL, prompt

CKPT = "tinker://run-1/sampler_weights/step-100"
FAST_RESOLVER = {"retry": {"base_delay": 0.002, "max_delay": 0.02, "still_building_delay": 0.005},
                 "seed": 11}


def resolve(emu, path=CKPT, ttl=None, **kw):
    kw.setdefault("base_url", emu.base_url)
    kw.setdefault("api_key", emu.tinker_api_key)
    kw.setdefault("options", FAST_RESOLVER)
    return asyncio.run(sail_tinker.get_tinker_checkpoint_signed_url_async(path, ttl, **kw))


@pytest.mark.parametrize("archive", ["redirect", "json"])
def test_signed_url_with_ttl(archive):
    with sail_tinker.Emulator(archive=archive, still_building_calls=2) as emu:
        url = resolve(emu, ttl=3600)
        assert url.startswith(emu.base_url + "/_emulator/archive/")
        assert emu.checkpoint_ttl(CKPT) == 3600
        # TTL first, then the archive (the first two answered "still building").
        assert emu.stats()["tinker_calls"][CKPT] == ["ttl", "archive", "archive", "archive"]


def test_the_url_feeds_a_completer(emu):
    url = resolve(emu)
    c = sail_tinker.SailTokenCompleter(TOY_MODEL, 8, tinker_lora_signed_url=url,
                                       adapter_config={"rank": 8}, tinker_lora_name="step-100",
                                       emulator=emu, runtime_options=FAST)
    out = asyncio.run(c(prompt(1)))
    assert len(out.tokens) == 8


def test_a_completer_resolves_a_checkpoint_itself(emu):
    c = sail_tinker.SailTokenCompleter(TOY_MODEL, 8, tinker_checkpoint=CKPT, tinker_ttl_seconds=600,
                                       adapter_config='{"rank": 8}', emulator=emu,
                                       runtime_options={**FAST, "resolver_retry": FAST_RESOLVER["retry"]})
    out = asyncio.run(c(prompt(1)))
    assert len(out.tokens) == 8
    assert emu.checkpoint_ttl(CKPT) == 600


def test_resolver_errors(emu, monkeypatch):
    with pytest.raises(ValueError) as info:
        resolve(emu, path="tinker://run-1/bogus_kind/x")
    assert info.value.field == "tinker_path"
    with pytest.raises(ValueError):
        resolve(emu, ttl=0)
    with pytest.raises(TypeError):
        resolve(emu, path=42)
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    with pytest.raises(sail_tinker.NotConfiguredError):
        resolve(emu, api_key=None)
    with pytest.raises(sail_tinker.HTTPError) as info:
        resolve(emu, api_key="tml-wrong-key")
    assert info.value.http_status == 401
    assert "tml-wrong-key" not in str(info.value)


def test_unknown_checkpoint_is_an_http_error():
    with sail_tinker.Emulator(known_checkpoints=[CKPT]) as emu:
        assert resolve(emu)
        with pytest.raises(sail_tinker.HTTPError) as info:
            resolve(emu, path="tinker://run-1/sampler_weights/other")
        assert info.value.http_status == 404
