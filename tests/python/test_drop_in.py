"""Drop-in for code written against Sail's sail.tinker: a user's RL script runs
with only its import line changed (tinker.ServiceClient for the signed URL,
tinker-cookbook's do_group_rollout with the completer as its policy), and the
helper's, the errors' and the results' shapes of Sail's SDK
(https://docs.sailresearch.com/sdk-tinker, /voyages-sdk-errors,
/voyages-sdk-inference)."""
from __future__ import annotations

import asyncio
import datetime
import json
import os
import subprocess
import sys

import pytest

import sail_tinker
import sail_tinker.tinker
from conftest import TOY_MODEL, completer, prompt

HERE = os.path.dirname(os.path.abspath(__file__))
FAKES = os.path.join(HERE, "fakes")
CKPT = "tinker://run-1/sampler_weights/step-7"


def run(coro):
    return asyncio.run(coro)


def creates(emu) -> list[dict]:
    """The bodies of every create the emulator answered."""
    return [json.loads(e["request_body"]) for e in emu.request_log()
            if e["route"] == "POST /v1/responses"]


# -- the user's script ---------------------------------------------------------------------

def run_script(emu, **env) -> dict:
    """Runs scripts/rl_loop_sail_tinker.py in its own interpreter with the fakes
    of tinker and tinker_cookbook importable (as a user's environment has the
    real ones) and the emulator as Sail and Tinker."""
    child = dict(os.environ)
    child["PYTHONPATH"] = os.pathsep.join([FAKES, os.environ.get("PYTHONPATH", "")])
    child.update({"SAIL_BASE_URL": emu.base_url, "SAIL_API_KEY": emu.api_key,
                  "TINKER_BASE_URL": emu.base_url, "TINKER_API_KEY": emu.tinker_api_key})
    child.update(env)
    proc = subprocess.run([sys.executable, os.path.join(HERE, "scripts", "rl_loop_sail_tinker.py")],
                          env=child, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("archive", ["redirect", "json"])
def test_an_rl_script_for_sail_tinker_runs_unchanged(archive):
    with sail_tinker.Emulator(archive=archive, request_log_capacity=1000) as emu:
        report = run_script(emu, RL_STEPS="2")
        steps = report["steps"]
        assert len(steps) == 2
        stats = emu.stats()
        urls = {}
        for s in steps:
            # TTL set first, then the archive URL, through the ServiceClient.
            assert stats["tinker_calls"][s["path"]] == ["ttl", "archive"]
            assert emu.checkpoint_ttl(s["path"]) == 3600
            assert s["signed_url"].startswith(emu.base_url + "/_emulator/archive/")
            # The completer is tinker-cookbook's TokenCompleter and its
            # results are tinker-cookbook's TokensWithLogprobs.
            assert s["policy_is_token_completer"]
            assert s["result_types"] == ["tinker_cookbook.completers.TokensWithLogprobs"]
            assert s["samples"] == 6
            assert all(0 < n <= 6 for n in s["tokens"])
            assert s["logprobs"] == s["tokens"]
            assert set(s["stop_reasons"]) <= {"stop", "length"}
            urls[s["path"].rsplit("/", 1)[1]] = s["signed_url"]
        assert len(set(urls.values())) == 2
        # Every create carries its step's signed URL and the adapter config.
        bodies = creates(emu)
        assert len(bodies) == 12
        for body in bodies:
            md = body["metadata"]
            assert md["tinker_lora_signed_url"] == urls[md["tinker_lora_name"]]
            assert json.loads(md["adapter_config"])["peft_type"] == "LORA"
        assert stats["max_runs_per_key"] == 1


def test_without_tinker_cookbook_the_binding_has_its_own_classes(emu):
    # This process has no tinker_cookbook on its path.
    assert not sail_tinker.USES_TINKER_COOKBOOK
    out = run(completer(emu)(prompt(1)))
    assert type(out) is sail_tinker.TokensWithLogprobs
    assert isinstance(completer(emu), sail_tinker.TokenCompleter)
    # The cookbook's default stop reason.
    assert sail_tinker.TokensWithLogprobs([1], None).stop_reason == "stop"


def test_the_tinker_module_has_sail_tinkers_names():
    from sail_tinker.tinker import (InferenceError, InferenceHTTPError, SailError,
                                    SailTokenCompleter, get_tinker_checkpoint_signed_url_async)
    assert SailTokenCompleter is sail_tinker.SailTokenCompleter
    assert get_tinker_checkpoint_signed_url_async is sail_tinker.get_tinker_checkpoint_signed_url_async
    assert issubclass(InferenceHTTPError, InferenceError) and issubclass(InferenceError, SailError)


# -- get_tinker_checkpoint_signed_url_async(service_client, ...) -------------------------------

class FakeRest:
    def __init__(self, answer, calls):
        self.answer, self.calls = answer, calls

    async def set_checkpoint_ttl_from_tinker_path_async(self, path, ttl_seconds):
        self.calls.append(("ttl", path, ttl_seconds))

    async def get_checkpoint_archive_url_from_tinker_path_async(self, path):
        self.calls.append(("archive", path))
        return self.answer


class FakeService:
    def __init__(self, answer, rest=FakeRest):
        self.answer, self.rest, self.calls = answer, rest, []

    def create_rest_client(self):
        return self.rest(self.answer, self.calls)


class Answer:
    def __init__(self, **kw):
        self.__dict__.update(kw)


URL = "https://storage.example/ckpt.tar?X-Signature=abc"


@pytest.mark.parametrize("answer", [
    URL,
    Answer(url=URL, expires=datetime.datetime(2030, 1, 1)),
    Answer(signed_url=URL),
    {"archive_url": URL},
    {"checkpoint_archive_url": URL},
    {"url": "", "signed_url": URL},
])
def test_a_service_clients_answer_is_unwrapped(answer):
    svc = FakeService(answer)
    got = run(sail_tinker.get_tinker_checkpoint_signed_url_async(svc, CKPT, ttl_seconds=600))
    assert got == URL
    assert svc.calls == [("ttl", CKPT, 600), ("archive", CKPT)]
    svc = FakeService(answer)
    assert run(sail_tinker.get_tinker_checkpoint_signed_url_async(svc, CKPT)) == URL
    assert svc.calls == [("archive", CKPT)]


def test_a_service_client_without_the_calls_or_the_url_is_an_inference_error():
    with pytest.raises(sail_tinker.InferenceError, match="holds no URL"):
        run(sail_tinker.get_tinker_checkpoint_signed_url_async(FakeService({"expires": 1}), CKPT))
    with pytest.raises(sail_tinker.InferenceError, match="holds no URL"):
        run(sail_tinker.get_tinker_checkpoint_signed_url_async(FakeService(None), CKPT))

    class NoTtl:
        def __init__(self, answer, calls):
            self.inner = FakeRest(answer, calls)

        async def get_checkpoint_archive_url_from_tinker_path_async(self, path):
            return await self.inner.get_checkpoint_archive_url_from_tinker_path_async(path)

    svc = FakeService(URL, rest=NoTtl)
    with pytest.raises(sail_tinker.InferenceError, match="set_checkpoint_ttl_from_tinker_path_async"):
        run(sail_tinker.get_tinker_checkpoint_signed_url_async(svc, CKPT, ttl_seconds=60))
    # Without a TTL the archive call alone is enough.
    assert run(sail_tinker.get_tinker_checkpoint_signed_url_async(svc, CKPT)) == URL
    with pytest.raises(sail_tinker.InferenceError, match="create_rest_client"):
        run(sail_tinker.get_tinker_checkpoint_signed_url_async(object(), CKPT))
    with pytest.raises(ValueError):
        run(sail_tinker.get_tinker_checkpoint_signed_url_async(FakeService(URL), CKPT, 0))
    with pytest.raises(TypeError):
        run(sail_tinker.get_tinker_checkpoint_signed_url_async(FakeService(URL), None))


def test_the_earlier_form_and_none_use_the_built_in_resolver(emu, monkeypatch):
    monkeypatch.setenv("TINKER_BASE_URL", emu.base_url)
    monkeypatch.setenv("TINKER_API_KEY", emu.tinker_api_key)
    fn = sail_tinker.get_tinker_checkpoint_signed_url_async
    a = run(fn(CKPT, 120))
    b = run(fn(None, CKPT, ttl_seconds=240))
    assert a.startswith(emu.base_url) and b.startswith(emu.base_url)
    assert emu.checkpoint_ttl(CKPT) == 240
    assert emu.stats()["tinker_calls"][CKPT][0] == "ttl"


# -- errors as Sail's SDK documents them ---------------------------------------------------

def test_every_failure_of_an_inference_call_is_an_inference_error():
    for cls in (sail_tinker.InferenceHTTPError, sail_tinker.SailTimeoutError,
                sail_tinker.OverloadedError, sail_tinker.TransportError,
                sail_tinker.SampleCancelledError, sail_tinker.NotConfiguredError,
                sail_tinker.NodeDownError, sail_tinker.UnavailableError):
        assert issubclass(cls, sail_tinker.InferenceError), cls
    assert sail_tinker.HTTPError is sail_tinker.InferenceHTTPError
    assert issubclass(sail_tinker.InvalidArgumentError, ValueError)


def test_an_unknown_lora_is_an_inference_http_error_with_the_parsed_body(emu):
    c = completer(emu, lora="no-such-lora")
    try:
        run(c(prompt(1)))
    except sail_tinker.InferenceError as e:  # the SDK's catch-all catches it
        err = e
    assert isinstance(err, sail_tinker.InferenceHTTPError)
    assert err.status_code == 404 == err.http_status
    assert isinstance(err.response, dict)
    assert err.response["error"]["code"] == "lora_not_found"
    assert err.response == json.loads(err.body)


def test_a_malformed_response_is_an_inference_error_with_the_response(emu):
    emu.set_faults({"probability": {"missing_token_ids": 1.0}})
    with pytest.raises(sail_tinker.InferenceError) as info:
        run(completer(emu)(prompt(1)))
    err = info.value
    assert type(err) is sail_tinker.InferenceError
    assert isinstance(err.response, dict)
    assert err.response["id"]
    assert err.response["status"] == "completed"


def test_the_response_is_the_raw_text_when_it_does_not_parse():
    err = sail_tinker.InferenceError("bad", body="<html>sk_[REDACTED]</html>")
    assert err.response == "<html>sk_[REDACTED]</html>"
    assert sail_tinker.InferenceError("bad").response is None
    assert sail_tinker.InferenceHTTPError("x", http_status=502, body="<html/>").response is None


def test_a_missing_api_key_is_an_inference_error(monkeypatch):
    monkeypatch.delenv("SAIL_API_KEY", raising=False)
    with pytest.raises(sail_tinker.InferenceError) as info:
        sail_tinker.SailTokenCompleter(model=TOY_MODEL, max_tokens=8)
    assert info.value.field == "SAIL_API_KEY"


# -- results -----------------------------------------------------------------------------

def test_request_logprobs_false_never_yields_logprobs(emu):
    c = completer(emu, request_logprobs=False)

    async def main():
        return await c(prompt(1)), await c.sample_group(prompt(2), 3)

    one, group = run(main())
    for out in [one, *group]:
        assert out.maybe_logprobs is None
        with pytest.raises(ValueError):
            out.logprobs


def test_context_window_caps_max_tokens(emu):
    toks = prompt(3, n=10)
    c = completer(emu, max_tokens=8, temperature=0.0, context_window=13)

    async def main():
        return await c(toks), await c(toks, max_tokens=2), await c.sample_group(toks, 2)

    capped, per_call, group = run(main())
    assert len(capped.tokens) == 3 and capped.stop_reason == "length"
    assert len(per_call.tokens) == 2
    assert [len(g.tokens) for g in group] == [3, 3]
    posts = emu.counter("posts")
    with pytest.raises(ValueError) as info:
        run(c(prompt(4, n=13)))
    assert info.value.field == "context_window"
    assert emu.counter("posts") == posts
    with pytest.raises(TypeError):
        completer(emu, context_window=1.5)


# -- voyage ------------------------------------------------------------------------------

class Voyage:
    """Shaped like Sail's SDK's voyage context: headers() per call."""

    def __init__(self):
        self.span = 0
        self.calls = 0

    def headers(self):
        self.calls += 1
        return {"X-Sail-Voyage-Id": "voy_1", "X-Sail-Voyage-Span-Id": f"span-{self.span}"}


def test_a_voyages_headers_are_computed_per_call():
    with sail_tinker.Emulator(request_log_capacity=1000) as emu:
        voyage = Voyage()
        c = completer(emu, voyage=voyage)

        async def main():
            for span in range(3):
                voyage.span = span
                await c(prompt(span))
            voyage.span = 0
            await c.sample_group(prompt(9), 2)

        run(main())
        posts = [e for e in emu.request_log() if e["route"] == "POST /v1/responses"]
        spans = [e["headers"].get("X-Sail-Voyage-Span-Id") for e in posts]
        assert spans[:3] == ["span-0", "span-1", "span-2"]
        assert spans[3:] == ["span-0", "span-0"]
        assert all(e["headers"].get("X-Sail-Voyage-Id") == "voy_1" for e in posts)
        assert voyage.calls >= 5
        assert c.stats()["completed"] == 5
        c.close()
        assert c.closed


def test_the_dict_and_str_voyages_stay_fixed_and_bad_headers_are_refused():
    with sail_tinker.Emulator(request_log_capacity=100) as emu:
        run(completer(emu, voyage="voy_str")(prompt(1)))
        run(completer(emu, voyage={"id": "voy_dict", "agent_id": "a1"})(prompt(2)))
        posts = [e["headers"] for e in emu.request_log() if e["route"] == "POST /v1/responses"]
        assert posts[0]["X-Sail-Voyage-Id"] == "voy_str"
        assert posts[1]["X-Sail-Voyage-Id"] == "voy_dict"
        assert posts[1]["X-Sail-Voyage-Agent-Id"] == "a1"

        class Odd:
            def headers(self):
                return {"X-Other": "1"}

        with pytest.raises(ValueError) as info:
            completer(emu, voyage=Odd())
        assert info.value.field == "voyage"


# -- sample_group ------------------------------------------------------------------------

def test_a_failed_group_member_never_cancels_its_siblings(emu):
    # The first create answers 500 (surfaces at once): one member fails.
    emu.set_faults({"scripted": ["status_500"], "routes": ["create"]})
    c = completer(emu)
    members = run(c.sample_group(prompt(1), 4, return_exceptions=True))
    failed = [m for m in members if isinstance(m, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], sail_tinker.InferenceHTTPError)
    assert failed[0].status_code == 500
    assert sum(1 for m in members if isinstance(m, sail_tinker.TokensWithLogprobs)) == 3
    assert c.stats()["completed"] == 3

    emu.set_faults({"scripted": ["status_500"], "routes": ["create"]})
    with pytest.raises(sail_tinker.InferenceHTTPError):
        run(c.sample_group(prompt(2), 4))
    # The error came once every member had finished: the siblings completed,
    # none was cancelled.
    st = c.stats()
    assert st["completed"] == 6 and st["in_flight"] == 0
    assert "cancelled" not in st["failed_by_kind"]


def test_many_voyages_stay_bounded_and_counted(emu):
    # More distinct voyages than the completer keeps: idle ones are closed,
    # their counters kept; a closed completer refuses a new voyage too.
    voyage = Voyage()
    c = completer(emu, max_tokens=2, voyage=voyage)

    async def main():
        for span in range(70):
            voyage.span = span
            assert len((await c(prompt(span))).tokens) == 2

    run(main())
    assert len(c._voyages) <= 65
    st = c.stats()
    assert st["completed"] == 70 and st["in_flight"] == 0
    # The closed voyages' usage is kept too (summed per model and window).
    assert [(u["model"], u["samples"]) for u in st["usage"]] == [(TOY_MODEL, 70)]
    c.close()
    voyage.span = 1000
    with pytest.raises(sail_tinker.SampleCancelledError):
        run(c(prompt(1)))
