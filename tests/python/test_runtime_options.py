"""The webhook receiver and adaptive polling from Python: the CLI's [webhook]
and [pool] adaptive-* options under runtime_options, checked by the same
validate() as the CLI's (errors name the binding's spelling)."""
from __future__ import annotations

import asyncio

import pytest

import sail_tinker
from conftest import FAST, completer, prompt

# Polls so rare that only a webhook can finish a sample within the test.
RARE_POLLS = {"first_poll": 120.0, "max_poll": 120.0, "webhook_first_poll": 120.0,
              "webhook_poll": 120.0}


def test_samples_finish_by_the_webhook_receiver(emu):
    c = completer(emu, runtime_options={**FAST, "all_windows": RARE_POLLS,
                                        "webhook": {"enabled": True, "host": "127.0.0.1",
                                                    "path": "/hooks/sail"}})

    async def main():
        return await asyncio.gather(c(prompt(1)), c.sample_group(prompt(2), 2))

    one, group = asyncio.run(main())
    assert len(one.tokens) == 8 and len(group) == 2
    # The deliveries finished the samples; no poll was needed.
    st = c.stats()
    assert st["webhooks"]["applied"] == 3
    assert st["polls"] == 0 and emu.counter("polls") == 0
    assert emu.counter("posts") == 3


def test_adaptive_polling_options_reach_the_pool(emu):
    c = completer(emu, runtime_options={**FAST, "adaptive": {"enabled": True, "polls": 4,
                                                             "min_samples": 2,
                                                             "max_gap_factor": 1.5}})
    async def main():
        return [await c(prompt(i)) for i in range(4)]

    assert all(len(out.tokens) == 8 for out in asyncio.run(main()))


@pytest.mark.parametrize("options, field", [
    ({"webhook": {"enabled": True, "path": "hooks"}}, "runtime_options.webhook.path"),
    ({"webhook": {"enabled": True, "host": "0.0.0.0"}},
     "runtime_options.webhook.insecure_plaintext"),
    ({"webhook": {"enabled": True, "public_url": "ftp://example.com/x"}},
     "runtime_options.webhook.public_url"),
    ({"webhook": {"enabled": True, "body_limit": 0}}, "runtime_options.webhook.body_limit"),
    ({"webhook": {"enabled": True, "port": 70000}}, "runtime_options.webhook.port"),
    ({"webhook": {"bogus": 1}}, "runtime_options.webhook.bogus"),
    ({"adaptive": {"polls": 0}}, "runtime_options.adaptive.polls"),
    ({"adaptive": {"max_gap_factor": 0.5}}, "runtime_options.adaptive.max_gap_factor"),
    ({"adaptive": {"typo": 1}}, "runtime_options.adaptive.typo"),
    ({"all_windows": {"webhook_poll": -1}}, "runtime_options.all_windows.webhook_poll"),
])
def test_bad_options_are_refused_as_the_cli_refuses_them(emu, options, field):
    with pytest.raises(sail_tinker.InvalidArgumentError) as info:
        completer(emu, runtime_options=options)
    assert info.value.field == field
    assert emu.counter("posts") == 0


def test_option_types_are_checked(emu):
    with pytest.raises(TypeError):
        completer(emu, runtime_options={"webhook": {"enabled": 1}})
    with pytest.raises(TypeError):
        completer(emu, runtime_options={"webhook": {"host": 127}})
    with pytest.raises(TypeError):
        completer(emu, runtime_options={"adaptive": {"enabled": "yes"}})
    # A plaintext listener off loopback with the CLI's explicit opt-in is accepted.
    c = completer(emu, runtime_options={"webhook": {"enabled": True, "host": "0.0.0.0",
                                                    "insecure_plaintext": True,
                                                    "public_url": "http://127.0.0.1:1/x"}})
    c.close()
