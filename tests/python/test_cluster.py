"""Cluster mode: two `sail-tinker serve` processes, a node SIGKILLed mid-run:
every sample completes, none runs twice; and TLS between trainer and node."""
from __future__ import annotations

import asyncio
import signal

import pytest

import sail_tinker
from conftest import TOY_MODEL, prompt
from serve_nodes import ServeNode, make_certs

CLUSTER = {
    "heartbeat_interval": 0.2,
    "connection_timeout": 1.0,
    "connect_timeout": 5.0,
    "retry_min": 0.05,
    "retry_max": 0.5,
}


@pytest.fixture
def nodes(emu):
    started = []
    try:
        for _ in range(2):
            started.append(ServeNode(emu))
        yield started
    finally:
        for n in started:
            n.close()


def test_two_nodes_and_one_killed_mid_run(emu, nodes):
    # Samples stay queued 2 s at Sail, so the kill finds work on the node.
    emu.set_latency({"priority": {"queued": 2.0}})
    c = sail_tinker.SailTokenCompleter(TOY_MODEL, 8, temperature=0.0,
                                       nodes=[n.address for n in nodes],
                                       cluster_options=CLUSTER)
    assert c.is_cluster
    assert c.wait_ready(2, 30)
    n = 40

    async def main():
        tasks = [asyncio.ensure_future(c(prompt(i))) for i in range(n)]
        assert await emu.wait_until_async("posts", n, 60)  # every sample reached Sail
        status = c.nodes()
        victim = max(range(2), key=lambda i: status[i]["in_flight"])
        assert status[victim]["in_flight"] > 0
        nodes[victim].signal(signal.SIGKILL)
        return victim, await asyncio.gather(*tasks)

    victim, outs = asyncio.run(main())
    for i, out in enumerate(outs):
        want = emu.expected_sample(prompt(i), TOY_MODEL, 0.0, 1.0, 8)
        assert out.tokens == want["token_ids"]
        assert out.stop_reason == "length"
    st = emu.stats()
    assert st["inference_runs_total"] == n  # one inference per sample ...
    assert st["max_runs_per_key"] == 1      # ... never two for one key
    assert any(posts > 1 for posts in st["posts_per_key"].values())  # replayed by key
    status = c.nodes()
    assert status[victim]["rerouted"] > 0
    assert status[victim]["losses"] >= 1
    assert status[victim]["state"] != "ready"
    assert sum(s["completed"] for s in status) == n
    assert nodes[victim].proc.wait(30) == -signal.SIGKILL
    c.close()
    survivor = nodes[1 - victim]
    assert survivor.stop() == 0


def test_completers_with_equal_configuration_share_a_cluster(emu, nodes):
    kw = dict(nodes=[n.address for n in nodes], cluster_options=CLUSTER)
    a = sail_tinker.SailTokenCompleter(TOY_MODEL, 8, **kw)
    b = sail_tinker.SailTokenCompleter(TOY_MODEL, 8, **kw)
    assert a.wait_ready(2, 30)

    async def main():
        return await asyncio.gather(a(prompt(1)), b(prompt(2)), b.sample_group(prompt(3), 3))

    x, y, group = asyncio.run(main())
    assert len(x.tokens) == len(y.tokens) == 8 and len(group) == 3
    # One cluster: its counters include both completers' samples.
    assert sum(s["completed"] for s in a.nodes()) == 5
    a.close()
    # The cluster lives on for b.
    assert len(asyncio.run(b(prompt(4))).tokens) == 8
    b.close()


def test_tls_between_trainer_and_node(emu, tmp_path):
    certs = make_certs(str(tmp_path))
    node = ServeNode(emu, [f"--openssl.certificate={certs['node_cert']}",
                           f"--openssl.key={certs['node_key']}",
                           f"--openssl.cafile={certs['ca']}"])
    try:
        c = sail_tinker.SailTokenCompleter(
            TOY_MODEL, 8, nodes=[node.address], tls_certificate=certs["trainer_cert"],
            tls_key=certs["trainer_key"], tls_cafile=certs["ca"], cluster_options=CLUSTER)
        assert c.wait_ready(1, 30)
        assert len(asyncio.run(c(prompt(1))).tokens) == 8
        c.close()
        # A trainer without a certificate of the cluster CA is refused.
        anon = sail_tinker.SailTokenCompleter(
            TOY_MODEL, 8, nodes=[node.address], tls=True,
            cluster_options={**CLUSTER, "queue_timeout": 1.0})
        with pytest.raises(sail_tinker.NodeDownError):
            asyncio.run(anon(prompt(1)))
        assert anon.nodes()[0]["connects"] == 0
        anon.close()
    finally:
        node.close()


def test_a_failed_group_member_never_cancels_its_siblings_on_the_nodes(emu):
    # `serve` fails a whole group on its first failed member (its default
    # group policy); the binding sends the members as samples of one group,
    # so the siblings still finish.
    node = ServeNode(emu)
    try:
        c = sail_tinker.SailTokenCompleter(TOY_MODEL, 8, nodes=[node.address],
                                           cluster_options=CLUSTER)
        assert c.wait_ready(1, 30)
        emu.set_faults({"scripted": ["status_500"], "routes": ["create"]})
        members = asyncio.run(c.sample_group(prompt(1), 3, return_exceptions=True))
        failed = [m for m in members if isinstance(m, sail_tinker.InferenceHTTPError)]
        assert len(failed) == 1 and failed[0].status_code == 500
        assert sum(1 for m in members if isinstance(m, sail_tinker.TokensWithLogprobs)) == 2
        # One prompt_cache_key for the group.
        assert len(set(emu.stats()["prompt_cache_keys"].values())) == 1
        c.close()
    finally:
        node.close()


def test_a_voyages_headers_are_read_per_call_in_cluster_mode():
    class Voyage:
        span = "s-0"

        def headers(self):
            return {"X-Sail-Voyage-Id": "voy_c", "X-Sail-Voyage-Span-Id": self.span}

    with sail_tinker.Emulator(request_log_capacity=100) as emu:
        node = ServeNode(emu)
        try:
            voyage = Voyage()
            c = sail_tinker.SailTokenCompleter(TOY_MODEL, 4, nodes=[node.address],
                                               cluster_options=CLUSTER, voyage=voyage)
            assert c.wait_ready(1, 30)

            async def main():
                await c(prompt(1))
                voyage.span = "s-1"
                await c(prompt(2))

            asyncio.run(main())
            spans = [e["headers"].get("X-Sail-Voyage-Span-Id") for e in emu.request_log()
                     if e["route"] == "POST /v1/responses"]
            assert spans == ["s-0", "s-1"]
            assert c.stats()["completed"] == 2
            c.close()
        finally:
            node.close()
