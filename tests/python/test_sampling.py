"""A tinker-cookbook-shaped call through the binding against the emulator's
deterministic toy model: tokens, logprobs and stop_reason as the model
answers them. Greedy samples (temperature 0) depend on the prompt and model
only, so they are predicted exactly; sampled ones are checked for shape."""
from __future__ import annotations

import asyncio
import math

import pytest

import sail_tinker
from conftest import TOY_MODEL, ModelInput, completer, prompt


def greedy(emu, tokens, max_tokens, stop=None):
    return emu.expected_sample(tokens, TOY_MODEL, temperature=0.0, max_output_tokens=max_tokens,
                               stop=stop)


def test_cookbook_shaped_call_matches_the_model(emu):
    c = completer(emu, max_tokens=16, temperature=0.0)
    p = ModelInput(prompt(1))
    free = greedy(emu, p.to_ints(), 16)
    assert free["stop_reason"] == "length" and len(free["token_ids"]) == 16
    # A StopCondition of token ids (tinker-cookbook's list[int] form): the
    # fourth greedy token stops generation and is included.
    stop_token = free["token_ids"][3]
    want = greedy(emu, p.to_ints(), 16, stop=[stop_token])

    async def main():
        return await c(p, [stop_token]), await c(p)

    stopped, unstopped = asyncio.run(main())
    assert isinstance(stopped, sail_tinker.TokensWithLogprobs)
    assert stopped.tokens == want["token_ids"]
    assert stopped.tokens[-1] == stop_token
    assert stopped.maybe_logprobs == pytest.approx(want["logprobs"])
    assert stopped.logprobs == stopped.maybe_logprobs
    assert stopped.stop_reason == "stop"
    assert unstopped.tokens == free["token_ids"]
    assert unstopped.stop_reason == "length"


@pytest.mark.parametrize("stop", ["int", "list_int", "str", "list_str"])
def test_every_stop_form(emu, stop):
    c = completer(emu, max_tokens=16, temperature=0.0)
    toks = prompt(2)
    first6 = greedy(emu, toks, 6)
    stop_token = first6["token_ids"][5]
    # A stop string: the end of the first six greedy tokens' text.
    tail = first6["text"][-3:]
    value = {"int": stop_token, "list_int": [stop_token], "str": tail, "list_str": [tail]}[stop]
    want = greedy(emu, toks, 16, stop=value)
    assert want["stop_reason"] == "stop"
    out = asyncio.run(c(toks, value))
    assert out.tokens == want["token_ids"]
    assert out.stop_reason == "stop"


def test_per_call_max_tokens_caps_the_output(emu):
    c = completer(emu, max_tokens=16, temperature=0.0)
    toks = prompt(3)
    out = asyncio.run(c(toks, max_tokens=5))
    assert out.tokens == greedy(emu, toks, 5)["token_ids"]
    assert out.stop_reason == "length"
    # The configuration's cap wins when it is the smaller one.
    out = asyncio.run(c(toks, max_tokens=100))
    assert len(out.tokens) == 16


def test_sampled_outputs_have_the_right_shape(emu):
    c = completer(emu, max_tokens=12, temperature=1.0, top_p=0.9)

    async def main():
        return await asyncio.gather(*(c(prompt(i)) for i in range(20)))

    outs = asyncio.run(main())
    for out in outs:
        assert len(out.tokens) == 12
        assert all(isinstance(t, int) and 0 <= t < 64 for t in out.tokens)
        assert len(out.logprobs) == 12
        assert all(math.isfinite(x) and x <= 0.0 for x in out.logprobs)
        assert out.stop_reason == "length"
    st = emu.stats()
    # One Idempotency-Key per sample, each run once.
    assert st["inference_runs_total"] == 20
    assert len(st["inference_runs"]) == 20
    assert st["max_runs_per_key"] == 1


def test_sample_group(emu):
    c = completer(emu, max_tokens=8, temperature=0.0)
    toks = prompt(4)
    group = asyncio.run(c.sample_group(ModelInput(toks), 4))
    want = greedy(emu, toks, 8)["token_ids"]
    assert len(group) == 4
    assert all(g.tokens == want for g in group)
    st = emu.stats()
    assert st["inference_runs_total"] == 4
    assert st["max_runs_per_key"] == 1
    keys = sorted(st["inference_runs"])
    # Member keys are <group key>.<i>.
    assert len({k.rsplit(".", 1)[0] for k in keys}) == 1
    assert sorted(k.rsplit(".", 1)[1] for k in keys) == ["0", "1", "2", "3"]


def test_group_members_are_sampled_under_their_own_keys(emu):
    # Sampled (not greedy): each member is the toy model's answer under its
    # Idempotency-Key <group key>.<i>, all members share one prompt_cache_key.
    c = completer(emu, max_tokens=12, temperature=1.0)
    toks = prompt(6)
    group = asyncio.run(c.sample_group(toks, 4))
    st = emu.stats()
    keys = sorted(st["inference_runs"], key=lambda k: int(k.rsplit(".", 1)[1]))
    assert len(keys) == 4
    for member, key in zip(group, keys):
        want = emu.expected_sample(toks, TOY_MODEL, 1.0, 1.0, 12, key=key)
        assert member.tokens == want["token_ids"]
        assert member.logprobs == pytest.approx(want["logprobs"])
    assert len({st["prompt_cache_keys"][k] for k in keys}) == 1
    assert st["prompt_cache_keys"][keys[0]] != ""


def test_plain_lists_and_tuples_are_prompts(emu):
    c = completer(emu, max_tokens=4, temperature=0.0)
    toks = prompt(5)

    async def main():
        return await c(toks), await c(tuple(toks))

    a, b = asyncio.run(main())
    assert a.tokens == b.tokens == greedy(emu, toks, 4)["token_ids"]


def test_stats_count_the_samples(emu):
    c = completer(emu, max_tokens=4)

    async def main():
        await asyncio.gather(*(c(prompt(i)) for i in range(10)))

    asyncio.run(main())
    s = c.stats()
    assert s["completed"] == 10
    assert s["in_flight"] == 0
    assert s["polls"] >= 0
