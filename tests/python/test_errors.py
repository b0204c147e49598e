"""Every error kind arrives as its Python class with its fields: kind,
message, field, http_status, body (redacted)."""
from __future__ import annotations

import asyncio
import json

import pytest

import sail_tinker
from conftest import FAST, TOY_MODEL, completer, closed_port, prompt

SLOW = {"priority": {"queued": 60.0}}


def run(coro):
    return asyncio.run(coro)


def test_inference_error_carries_the_malformed_body(emu):
    emu.set_faults({"probability": {"missing_token_ids": 1.0}})
    c = completer(emu)
    with pytest.raises(sail_tinker.InferenceError) as info:
        run(c(prompt(1)))
    err = info.value
    assert err.kind == "inference_error"
    assert isinstance(err, sail_tinker.SailError)
    doc = json.loads(err.body)  # the offending response, as Sail sent it
    assert doc["status"] == "completed"
    assert "token_ids" not in json.dumps(doc["output"])
    assert err.body in str(err) or str(err).endswith("...]")


def test_http_error_has_status_and_body(emu):
    emu.set_faults({"scripted": ["status_500"], "routes": ["create"]})
    c = completer(emu)
    with pytest.raises(sail_tinker.HTTPError) as info:
        run(c(prompt(1)))
    err = info.value
    assert err.kind == "http_error"
    assert err.http_status == 500
    assert "error" in json.loads(err.body)


def test_unknown_lora_is_the_servers_404(emu):
    c = completer(emu, lora="no-such-lora")
    with pytest.raises(sail_tinker.HTTPError) as info:
        run(c(prompt(1)))
    assert info.value.http_status == 404
    assert "lora" in info.value.body


def test_a_rejected_key_never_shows(emu):
    secret = "sk_live_do_not_print_me_0123456789"
    c = sail_tinker.SailTokenCompleter(TOY_MODEL, 8, base_url=emu.base_url, api_key=secret,
                                       runtime_options=FAST)
    with pytest.raises(sail_tinker.HTTPError) as info:
        run(c(prompt(1)))
    err = info.value
    assert err.http_status == 401
    for text in (str(err), repr(err), err.body, err.message):
        assert secret not in text


def test_timeout(emu):
    emu.set_latency(SLOW)
    c = completer(emu, runtime_options={**FAST, "windows": {"priority": {"deadline": 0.3}}})
    with pytest.raises(sail_tinker.SailTimeoutError) as info:
        run(c(prompt(1)))
    assert info.value.kind == "timeout"
    assert isinstance(info.value, TimeoutError)


def test_overloaded(emu):
    emu.set_latency(SLOW)
    c = completer(emu, runtime_options={**FAST, "max_in_flight": 1, "max_queued": 0})

    async def main():
        first = asyncio.ensure_future(c(prompt(1)))
        assert await emu.wait_until_async("posts", 1, 30)
        with pytest.raises(sail_tinker.OverloadedError) as info:
            await c(prompt(2))
        assert info.value.kind == "overloaded"
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first

    run(main())


def test_transport_error():
    c = sail_tinker.SailTokenCompleter(
        TOY_MODEL, 8, base_url=f"http://127.0.0.1:{closed_port()}", api_key="sk_test",
        runtime_options={**FAST, "retry": {"max_attempts": 1}})
    with pytest.raises(sail_tinker.TransportError) as info:
        run(c(prompt(1)))
    assert info.value.kind == "transport_error"
    assert isinstance(info.value, ConnectionError)


def test_closing_the_completer_cancels_its_samples(emu):
    emu.set_latency(SLOW)
    c = completer(emu)

    async def main():
        task = asyncio.ensure_future(c(prompt(1)))
        assert await emu.wait_until_async("posts", 1, 30)
        await c.aclose()
        with pytest.raises(sail_tinker.SampleCancelledError) as info:
            await task
        assert info.value.kind == "cancelled"
        # A closed completer refuses new work.
        with pytest.raises(sail_tinker.SampleCancelledError):
            await c(prompt(2))

    run(main())
    assert c.closed


def test_not_configured(monkeypatch):
    monkeypatch.delenv("SAIL_API_KEY", raising=False)
    with pytest.raises(sail_tinker.NotConfiguredError) as info:
        sail_tinker.SailTokenCompleter(TOY_MODEL, 8)
    assert info.value.kind == "not_configured"


def test_node_down():
    c = sail_tinker.SailTokenCompleter(
        TOY_MODEL, 8, nodes=[f"127.0.0.1:{closed_port()}"],
        cluster_options={"connect_timeout": 0.5, "retry_min": 0.05, "retry_max": 0.2,
                         "queue_timeout": 0.5})
    with pytest.raises(sail_tinker.NodeDownError) as info:
        run(c(prompt(1)))
    assert info.value.kind == "node_down"
    assert c.nodes()[0]["state"] in ("connecting", "lost")
    c.close()


def test_unavailable_when_sail_keeps_failing(emu):
    # Every create fails with 503: the breaker opens after three failures in a
    # row, and from then on a new sample is refused at once, typed.
    emu.set_faults({"probability": {"status_503": 1.0}, "routes": ["create"]})
    options = dict(FAST)
    options["breaker"] = {"min_failures": 3, "failure_ratio": 0.5,
                          "consecutive_failures": 3, "open_delay": 60.0,
                          "max_open_delay": 60.0}
    c = completer(emu, runtime_options=options, timeout=30.0)

    async def main():
        first = asyncio.ensure_future(c(prompt(1)))
        # Condition wait on the pool's own counters (not a timed sleep).
        for _ in range(2000):
            if c.stats()["guard"]["breaker"] == "open":
                break
            await asyncio.sleep(0.01)
        assert c.stats()["guard"]["breaker"] == "open"
        with pytest.raises(sail_tinker.UnavailableError) as info:
            await c(prompt(2))
        first.cancel()
        return info.value

    err = run(main())
    assert err.kind == "unavailable"
    assert isinstance(err, sail_tinker.SailError)
    assert "probe" in err.message
    assert c.stats()["guard"]["rejected"] >= 1
    c.close()


def test_breaker_options_are_checked_by_the_options_themselves(emu):
    with pytest.raises(sail_tinker.InvalidArgumentError) as info:
        completer(emu, runtime_options={"breaker": {"failure_ratio": 2.0}})
    assert info.value.field == "runtime_options.breaker.failure_ratio"


def test_errors_pickle_with_their_fields():
    import pickle
    err = sail_tinker.HTTPError("boom", field="", http_status=503, body='{"error": 1}')
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is sail_tinker.HTTPError
    assert (back.http_status, back.body, back.message) == (503, '{"error": 1}', "boom")
    for cls in (sail_tinker.UnavailableError, sail_tinker.SailIOError):
        back = pickle.loads(pickle.dumps(cls("x")))
        assert type(back) is cls
