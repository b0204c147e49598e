// Completion webhooks and adaptive polling through the whole in-process stack:
// a spawned completer against the emulator, which delivers its
// webhooks to the runtime's receiver over real loopback sockets. Covers the
// token check, duplicate / late / unknown / oversized / malformed deliveries,
// lost webhooks falling back to polling, terminal outcomes mapped as for polls,
// byte-identical creates, notice delay, adaptive polling converging on the
// wire (poll arrivals recorded by the emulator), and a cluster re-routing a
// webhook sample with its original body.
#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <boost/json/parse.hpp>

#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/emulator/emulator.hpp"
#include "support/cluster_fixture.hpp"
#include "support/pool_testing.hpp"
#include "support/stack_fixture.hpp"
#include "support/sync_http.hpp"

using namespace sail;
using namespace sail::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

using sample_future = std::future<token_completer::sample_result>;

/// Runtime options with the receiver on and the safety-net polls far away
/// (a test that wants them sets its own).
void with_webhooks(runtime_options& o) {
  o.webhook.enabled = true;
  for (auto& [w, t] : o.pool.windows) {
    t.webhook_first_poll = 10min;
    t.webhook_poll = 10min;
  }
}

sample_request keyed(const std::string& key, int64_t first) {
  sample_request req;
  req.prompt.tokens = {first, 2, 3};
  req.key = key;
  return req;
}

/// Samples key `prefix + i` with prompt {10 + i, 2, 3}, for i in 0..n-1
/// (check_results knows the answers), without waiting.
std::vector<sample_future> start_all(token_completer& tc, const std::string& prefix, int n) {
  std::vector<sample_future> fs;
  for (int i = 0; i < n; ++i)
    fs.push_back(tc.sample(keyed(prefix + std::to_string(i), 10 + i)));
  return fs;
}

/// The answers, in order (each bounded by two minutes).
std::vector<token_completer::sample_result> results_of(std::vector<sample_future>& fs) {
  std::vector<token_completer::sample_result> out;
  for (auto& f : fs) {
    if (f.wait_for(120s) != std::future_status::ready)
      FAIL("no answer within two minutes");
    out.push_back(f.get());
  }
  return out;
}

std::vector<token_completer::sample_result> run_all(token_completer& tc, const std::string& prefix,
                                                    int n) {
  auto fs = start_all(tc, prefix, n);
  return results_of(fs);
}

/// The model's answer for key `prefix + i`.
void check_results(const emulator::server& emu, const std::string& prefix,
                   const std::vector<token_completer::sample_result>& rs) {
  for (size_t i = 0; i < rs.size(); ++i) {
    auto key = prefix + std::to_string(i);
    INFO(key << ": " << (rs[i] ? std::string{"ok"} : render(rs[i].error())));
    REQUIRE(rs[i]);
    auto want = expected_sample(emu, stack_fixture::config(), {10 + static_cast<int64_t>(i), 2, 3},
                                8, key);
    CHECK(std::vector<int32_t>(want.token_ids.begin(), want.token_ids.end()) == rs[i]->tokens);
  }
}

size_t gets_for(const emulator::stats& st, const std::string& key) {
  auto t = st.timings.find(key);
  if (t == st.timings.end())
    return 0;
  auto p = st.poll_arrivals.find(t->second.id);
  return p == st.poll_arrivals.end() ? 0 : p->second.size();
}

uint64_t hook(const completer_stats& s, const std::string& k) {
  auto i = s.pool.webhooks.find(k);
  return i == s.pool.webhooks.end() ? 0 : i->second;
}

/// POSTs `body` to the runtime's receiver with `token`.
sync_result deliver(runtime& rt, const std::string& body, const std::string& token) {
  sync_http c{"127.0.0.1", rt.webhook_port()};
  return c.post("/sail/webhook", body,
                {{"Authorization", "Bearer " + token}, {"Content-Type", "application/json"}});
}

/// A "completed" response body for response `id` whose output carries
/// `token_ids` (a JSON array's items).
std::string completed_body(const std::string& id, const std::string& token_ids) {
  return R"({"id":")" + id
         + R"(","object":"response","status":"completed","output":[{"type":"message",)"
           R"("content":[{"type":"output_text","text":"x","token_ids":[)"
         + token_ids + R"(],"stop_reason":"stop"}]}]})";
}

/// The distinct bodies of the creates the emulator received, per
/// Idempotency-Key.
std::map<std::string, std::set<std::string>> create_bodies(const emulator::server& emu) {
  std::map<std::string, std::set<std::string>> bodies;
  for (auto& e : emu.request_log())
    if (e.method == "POST")
      bodies[e.header("Idempotency-Key")].insert(e.request_body);
  return bodies;
}

/// Waits until the emulator accepted the create of `key`; its response id.
std::string response_id_of(const emulator::server& emu, const std::string& key) {
  std::string id;
  REQUIRE(emu.wait_until(
    [&](const emulator::stats& s) {
      auto t = s.timings.find(key);
      if (t == s.timings.end())
        return false;
      id = t->second.id;
      return true;
    },
    30s));
  return id;
}

emulator::options slow_emulator(std::chrono::milliseconds queued) {
  auto o = test_emulator_options();
  o.threads = 2;
  o.webhook_retry_delay = 20ms;
  for (auto* w : o.latency.all())
    w->queued = queued;
  return o;
}

} // namespace

TEST_CASE("webhooks: results arrive by webhook, no GET before the safety net",
          "[webhook][stack]") {
  stack_fixture f{slow_emulator(100ms), with_webhooks};
  auto endpoint = f.rt->webhook();
  REQUIRE_FALSE(endpoint.empty());
  CHECK(endpoint.url == "http://127.0.0.1:" + std::to_string(f.rt->webhook_port())
                          + "/sail/webhook");
  auto tc = f.completer();
  constexpr int n = 12;
  auto rs = run_all(tc, "wh-", n);
  check_results(f.emu, "wh-", rs);
  auto st = f.emu.snapshot();
  for (int i = 0; i < n; ++i)
    CHECK(gets_for(st, "wh-" + std::to_string(i)) == 0);
  // The emulator counts a delivery once it read the receiver's 200, which can
  // come after the sample's result reached the caller: wait for it.
  REQUIRE(f.emu.wait_until([](const emulator::stats& s) { return s.webhooks.delivered == n; },
                           30s));
  CHECK(st.max_runs_per_key == 1);
  auto ps = f.pool_stats();
  CHECK(hook(ps, "received") == n);
  CHECK(hook(ps, "applied") == n);
  CHECK(hook(ps, "unknown") == 0);
  CHECK(ps.pool.polls == 0);
  REQUIRE(ps.pool.polls_per_sample.counts.size() == polls_buckets.size() + 1);
  CHECK(ps.pool.polls_per_sample.counts[0] == n); // every sample: 0 GETs
  // The create body names the receiver and carries the token (Sail's
  // /webhooks page); the token reaches nothing the completer reports.
  for (auto& e : f.emu.request_log()) {
    if (e.method != "POST")
      continue;
    auto meta = json::parse(e.request_body).at("metadata").as_object();
    CHECK(std::string_view{meta.at("completion_webhook").as_string()} == endpoint.url);
    CHECK(std::string_view{meta.at("webhook_token").as_string()} == endpoint.token);
  }
  CHECK(caf::deep_to_string(endpoint).find(endpoint.token) == std::string::npos);
}

TEST_CASE("webhooks: every webhook lost, every sample completes by polling",
          "[webhook][stack]") {
  auto eo = slow_emulator(50ms);
  eo.faults.webhook_drop = 1.0;
  stack_fixture f{eo, [](runtime_options& o) {
                    with_webhooks(o);
                    // The safety net, shortened; the rule is the same.
                    for (auto& [w, t] : o.pool.windows) {
                      t.webhook_first_poll = 80ms;
                      t.webhook_poll = 40ms;
                    }
                    o.pool.poll_jitter = 0.1;
                  }};
  auto tc = f.completer();
  constexpr int n = 10;
  auto rs = run_all(tc, "lost-", n);
  check_results(f.emu, "lost-", rs);
  auto st = f.emu.snapshot();
  CHECK(st.webhooks.dropped == n);
  CHECK(st.webhooks.attempts == 0);
  for (int i = 0; i < n; ++i) {
    auto key = "lost-" + std::to_string(i);
    INFO(key);
    auto& polls = st.poll_arrivals.at(st.timings.at(key).id);
    REQUIRE_FALSE(polls.empty());
    // First safety-net poll no earlier than webhook_first_poll (minus the
    // jitter) after the create arrived.
    auto gap = std::chrono::duration<double, std::milli>(polls.front().at
                                                         - st.arrivals.at(key).front().at);
    CHECK(gap.count() >= 80.0 * 0.9 - 1.0);
  }
  auto ps = f.pool_stats();
  CHECK(hook(ps, "received") == 0);
  CHECK(ps.completed == n);
}

TEST_CASE("webhooks: duplicate and late deliveries are answered 200 and ignored",
          "[webhook][stack]") {
  SECTION("Sail delivers twice") {
    auto eo = slow_emulator(50ms);
    eo.faults.webhook_duplicate = 1.0;
    stack_fixture f{eo, with_webhooks};
    auto tc = f.completer();
    constexpr int n = 8;
    auto rs = run_all(tc, "dup-", n);
    check_results(f.emu, "dup-", rs);
    REQUIRE(f.emu.wait_until(
      [](const emulator::stats& s) { return s.webhooks.delivered == 2 * n; }, 30s));
    auto st = f.emu.snapshot();
    CHECK(st.webhooks.answers.at(200) == 2 * n);
    CHECK(st.max_runs_per_key == 1);
    // A duplicate that reached the worker before the sample finished comes
    // back as the worker's verdict, after the receiver's 200: wait for it.
    REQUIRE(sail::test::wait_for_pool(*f.rt, [](const completer_stats& s) {
      return hook(s, "applied") + hook(s, "duplicate") == 2 * n;
    }));
    auto ps = f.pool_stats();
    CHECK(hook(ps, "received") == 2 * n);
    CHECK(hook(ps, "applied") == n);
    CHECK(hook(ps, "duplicate") == n);
    CHECK(ps.completed == n);
  }
  SECTION("a poll finished the sample before its webhook") {
    auto eo = slow_emulator(20ms);
    eo.faults.webhook_delay = 400ms;
    stack_fixture f{eo, [](runtime_options& o) {
                      with_webhooks(o);
                      for (auto& [w, t] : o.pool.windows) {
                        t.webhook_first_poll = 60ms;
                        t.webhook_poll = 20ms;
                      }
                    }};
    auto tc = f.completer();
    constexpr int n = 6;
    auto rs = run_all(tc, "late-", n);
    check_results(f.emu, "late-", rs);
    REQUIRE(f.emu.wait_until([](const emulator::stats& s) { return s.webhooks.delivered == n; },
                             30s));
    REQUIRE(sail::test::wait_for_pool(
      *f.rt, [](const completer_stats& s) { return hook(s, "duplicate") == n; }));
    auto ps = f.pool_stats();
    CHECK(hook(ps, "received") == n);
    CHECK(hook(ps, "duplicate") == n);
    CHECK(hook(ps, "applied") == 0);
    CHECK(ps.completed == n);
  }
}

TEST_CASE("webhooks: a delivery for an unknown id is answered 200 and counted",
          "[webhook][stack]") {
  stack_fixture f{slow_emulator(0ms), with_webhooks};
  auto body = R"({"id":"resp_nobody","object":"response","status":"completed","output":[]})";
  auto r = deliver(*f.rt, body, f.rt->webhook().token);
  REQUIRE(r.ok());
  CHECK(r.status() == 200);
  auto ps = f.pool_stats();
  CHECK(hook(ps, "received") == 1);
  CHECK(hook(ps, "unknown") == 1);
  CHECK(ps.completed == 0);
}

TEST_CASE("webhooks: a delivery without the right token gets 401 and changes nothing",
          "[webhook][stack]") {
  stack_fixture f{slow_emulator(400ms), with_webhooks};
  auto tc = f.completer();
  auto fs = start_all(tc, "forged-", 1);
  auto id = response_id_of(f.emu, "forged-0");
  // A forged "completed" body for the live response, with a wrong token.
  auto wrong = f.rt->webhook().token;
  wrong.back() = wrong.back() == 'a' ? 'b' : 'a';
  auto r = deliver(*f.rt, completed_body(id, "63,63,63"), wrong);
  REQUIRE(r.ok());
  CHECK(r.status() == 401);
  CHECK(r.body().find(f.rt->webhook().token) == std::string::npos);
  // The sample ends with the emulator's own result, by its real webhook.
  check_results(f.emu, "forged-", results_of(fs));
  auto ps = f.pool_stats();
  CHECK(hook(ps, "rejected_unauthorized") == 1);
  CHECK(hook(ps, "received") == 1);
  CHECK(hook(ps, "applied") == 1);
}

TEST_CASE("webhooks: oversized and malformed deliveries are refused typed, nothing is "
          "lost",
          "[webhook][stack]") {
  stack_fixture f{slow_emulator(300ms), [](runtime_options& o) {
                    with_webhooks(o);
                    o.webhook.body_limit = 16 * 1024;
                  }};
  auto tc = f.completer();
  auto fs = start_all(tc, "rx-", 4);
  auto id = response_id_of(f.emu, "rx-0");
  auto token = f.rt->webhook().token;
  auto big = R"({"id":")" + id + R"(","status":"completed","pad":")" + std::string(20000, 'x')
             + R"("})";
  CHECK(deliver(*f.rt, big, token).status() == 413);
  CHECK(deliver(*f.rt, "{not json", token).status() == 400);
  CHECK(deliver(*f.rt, R"({"status":"completed"})", token).status() == 400);
  check_results(f.emu, "rx-", results_of(fs));
  auto ps = f.pool_stats();
  CHECK(hook(ps, "rejected_too_large") == 1);
  CHECK(hook(ps, "rejected_malformed") == 2);
  CHECK(hook(ps, "applied") == 4);
}

TEST_CASE("webhooks: a delivery is decoded exactly like a poll's answer",
          "[webhook][stack]") {
  // A delivery whose output is malformed (a float token id) fails its sample
  // with the poll decoder's typed error.
  stack_fixture f{slow_emulator(500ms), with_webhooks};
  auto tc = f.completer();
  auto fut = tc.sample(keyed("bad-output", 10));
  auto id = response_id_of(f.emu, "bad-output");
  CHECK(deliver(*f.rt, completed_body(id, "1.5"), f.rt->webhook().token).status() == 200);
  REQUIRE(fut.wait_for(60s) == std::future_status::ready);
  auto res = fut.get();
  REQUIRE_FALSE(res);
  CHECK(code_of(res.error()) == errc::inference_error);
  CHECK(render(res.error()).find(f.rt->webhook().token) == std::string::npos);
}

TEST_CASE("webhooks: failed, incomplete and cancelled responses map as for polls",
          "[webhook][stack]") {
  for (std::string outcome : {"failed", "incomplete", "cancelled", "completed"}) {
    INFO(outcome);
    auto run = [&](bool webhooks) {
      stack_fixture f{slow_emulator(30ms), [&](runtime_options& o) {
                        if (webhooks)
                          with_webhooks(o);
                      }};
      auto cfg = stack_fixture::config();
      cfg.metadata["emulator_outcome"] = outcome;
      auto tc = f.completer(cfg);
      auto res = tc.sample(keyed("outcome-" + outcome, 10)).get();
      if (webhooks)
        CHECK(hook(f.pool_stats(), "applied") == 1);
      return res;
    };
    auto by_poll = run(false);
    auto by_hook = run(true);
    REQUIRE(static_cast<bool>(by_poll) == static_cast<bool>(by_hook));
    if (by_poll) {
      CHECK(*by_poll == *by_hook);
    } else {
      CHECK(code_of(by_poll.error()) == code_of(by_hook.error()));
      CHECK(info_of(by_poll.error())->message == info_of(by_hook.error())->message);
    }
    CHECK(static_cast<bool>(by_poll) == (outcome == "completed" || outcome == "incomplete"));
  }
}

TEST_CASE("webhooks: a retried create stays byte-identical under its key",
          "[webhook][stack]") {
  auto eo = slow_emulator(30ms);
  // The first create is accepted but answered 503: the worker retries it.
  eo.faults.scripted = {emulator::fault_kind::status_503};
  eo.faults.after_accept_fraction = 1.0;
  eo.faults.routes = emulator::route_create;
  stack_fixture f{eo, with_webhooks};
  auto tc = f.completer();
  auto res = tc.sample(keyed("retried", 10)).get();
  REQUIRE(res);
  auto st = f.emu.snapshot();
  CHECK(st.arrivals.at("retried").size() == 2);
  CHECK(st.inference_runs.at("retried") == 1);
  CHECK(st.count("POST /v1/responses", 400) == 0);
  auto bodies = create_bodies(f.emu).at("retried");
  CHECK(bodies.size() == 1);
  CHECK(bodies.begin()->find(f.rt->webhook().url) != std::string::npos);
}

TEST_CASE("webhooks: notice delay from the response's completed_at",
          "[webhook][stack]") {
  auto eo = slow_emulator(50ms);
  eo.emit_completed_at = true;
  stack_fixture f{eo, with_webhooks};
  auto tc = f.completer();
  constexpr int n = 5;
  auto rs = run_all(tc, "notice-", n);
  check_results(f.emu, "notice-", rs);
  auto ps = f.pool_stats();
  REQUIRE(ps.pool.notice_delay.counts.size() == notice_buckets_ms.size() + 1);
  uint64_t counted = 0;
  for (auto c : ps.pool.notice_delay.counts)
    counted += c;
  CHECK(counted == n);
  // Without completed_at nothing is measured.
  stack_fixture g{slow_emulator(10ms), with_webhooks};
  auto tg = g.completer();
  REQUIRE(tg.sample(keyed("no-notice", 10)).get());
  CHECK(g.pool_stats().pool.notice_delay.counts.empty());
}

TEST_CASE("adaptive polling: converges on the learned latency (poll arrivals on the "
          "wire)",
          "[webhook][adaptive][stack]") {
  // Every response takes 800 ms. The configured timing (first poll 10 ms,
  // x1.5, cap 100 ms) costs about 12 GETs per sample; once the pool has seen
  // min_samples samples it plans the first poll near the learned low
  // quantile and needs a few.
  constexpr int wave = 12;
  stack_fixture f{slow_emulator(800ms), [](runtime_options& o) {
                    for (auto& [w, t] : o.pool.windows) {
                      t.first_poll = 10ms;
                      t.max_poll = 100ms;
                    }
                    o.pool.poll_growth = 1.5;
                    o.pool.poll_jitter = 0.1;
                    o.pool.adaptive.min_samples = wave;
                    o.pool.adaptive.polls = 4;
                  }};
  auto tc = f.completer();
  auto first = run_all(tc, "a1-", wave);
  check_results(f.emu, "a1-", first);
  auto second = run_all(tc, "a2-", wave);
  check_results(f.emu, "a2-", second);
  auto st = f.emu.snapshot();
  auto summarize = [&](const std::string& prefix, double& mean_gets, double& min_first_ms) {
    size_t gets = 0;
    min_first_ms = 1e9;
    for (int i = 0; i < wave; ++i) {
      auto key = prefix + std::to_string(i);
      auto& polls = st.poll_arrivals.at(st.timings.at(key).id);
      gets += polls.size();
      auto first_ms = std::chrono::duration<double, std::milli>(polls.front().at
                                                                - st.arrivals.at(key).front().at)
                        .count();
      min_first_ms = std::min(min_first_ms, first_ms);
    }
    mean_gets = static_cast<double>(gets) / wave;
  };
  double gets1 = 0;
  double gets2 = 0;
  double first1 = 0;
  double first2 = 0;
  summarize("a1-", gets1, first1);
  summarize("a2-", gets2, first2);
  INFO("configured timing: " << gets1 << " GETs per sample, first poll >= " << first1
                             << " ms; learned plan: " << gets2 << " GETs, first poll >= "
                             << first2 << " ms");
  CHECK(first1 < 100.0);
  // The learned first poll sits near the low quantile of 800 ms latency.
  CHECK(first2 >= 500.0);
  CHECK(gets2 * 2 <= gets1);
  CHECK(gets2 <= 4 + 2);
}

TEST_CASE("webhooks in a cluster: a re-routed sample keeps its first node's webhook "
          "and body",
          "[webhook][cluster]") {
  emulator::server emu{slow_emulator(3s)};
  std::vector<std::unique_ptr<test_node>> nodes;
  std::vector<std::unique_ptr<tcp_relay>> relays;
  std::vector<node_address> addrs;
  for (int i = 0; i < 2; ++i) {
    test_node::settings s;
    s.tweak = with_webhooks;
    nodes.push_back(std::make_unique<test_node>(emu, s));
    relays.push_back(std::make_unique<tcp_relay>(nodes.back()->port()));
    addrs.push_back({"127.0.0.1", relays.back()->port()});
  }
  std::vector<std::string> urls{nodes[0]->rt().webhook().url, nodes[1]->rt().webhook().url};
  REQUIRE(urls[0] != urls[1]);
  test_trainer trainer{addrs, toy_config()};
  REQUIRE(trainer.cl().wait_ready(2, 30s));
  constexpr int n = 16;
  std::vector<std::future<cluster::sample_result>> fs;
  for (int i = 0; i < n; ++i)
    fs.push_back(trainer.cl().sample(numbered_prompt(i)));
  REQUIRE(wait_for_post_arrivals(emu, n));
  // Lose node 0 (like SIGKILL): its samples go to node 1 with their keys.
  auto before = trainer.cl().status();
  REQUIRE(before[0].in_flight > 0);
  relays[0]->cut();
  for (auto& f : fs) {
    REQUIRE(f.wait_for(120s) == std::future_status::ready);
    auto r = f.get();
    INFO((r ? std::string{"ok"} : render(r.error())));
    REQUIRE(r);
  }
  auto after = trainer.cl().status();
  CHECK(after[0].rerouted > 0);
  auto st = emu.snapshot();
  CHECK(st.max_runs_per_key == 1);
  CHECK(st.count("POST /v1/responses", 400) == 0);
  // Every create under one key carried the same bytes, naming the webhook of
  // the node the sample was first sent to; re-routed keys arrived twice.
  size_t replayed = 0;
  for (auto& [key, set] : create_bodies(emu)) {
    INFO(key);
    CHECK(set.size() == 1);
    auto meta = json::parse(*set.begin()).at("metadata").as_object();
    auto url = std::string{meta.at("completion_webhook").as_string()};
    CHECK((url == urls[0] || url == urls[1]));
    if (st.arrivals.at(key).size() > 1) {
      ++replayed;
      CHECK(url == urls[0]);
    }
  }
  CHECK(replayed > 0);
  trainer.stop();
  for (auto& node : nodes)
    node->stop();
}
