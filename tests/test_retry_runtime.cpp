// The one retry path through the path a user takes: completer -> worker pool
// -> worker -> emulator over loopback sockets.
// Attempts are counted by the emulator (stats.arrivals per Idempotency-Key),
// inference runs per key stay 1, and the waits are on events (futures, the
// emulator's wait_until, the pool's breaker listener), never on time.
#include <catch2/catch.hpp>

#include <algorithm>
#include <condition_variable>
#include <future>
#include <mutex>
#include <vector>

#include "support/io_threads.hpp"
#include "support/stack_fixture.hpp"

using namespace sail;
using namespace std::chrono_literals;
using sail::test::stack_fixture;
namespace emu = sail::emulator;

namespace {

template <class T>
void require_error(const caf::expected<T>& res, errc kind) {
  REQUIRE(!res);
  INFO("error: " << render(res.error()));
  CHECK(code_of(res.error()) == kind);
}

uint64_t sail_requests(const emu::stats& st) {
  uint64_t n = 0;
  for (auto& [route, by_status] : st.requests)
    if (route == "POST /v1/responses" || route == "GET /v1/responses/{id}")
      for (auto& [status, count] : by_status)
        n += count;
  return n;
}

/// The breaker's transitions as the pool reports them (on_breaker_change),
/// with the emulator's count of Sail requests at each, waited on by the test.
struct breaker_log {
  struct entry {
    breaker_state state;
    std::string detail;
    uint64_t sail_requests;
  };

  std::mutex mtx;
  std::condition_variable cv;
  std::vector<entry> entries;
  const emu::server* server = nullptr;

  retry_guard::listener listener() {
    return [this](breaker_state s, const std::string& detail) {
      auto n = sail_requests(server->snapshot());
      std::lock_guard<std::mutex> guard{mtx};
      entries.push_back({s, detail, n});
      cv.notify_all();
    };
  }

  /// Waits (bounded) until `n` transitions to `state` were seen; returns the last.
  entry wait_for(breaker_state state, size_t n) {
    std::unique_lock<std::mutex> guard{mtx};
    auto seen = [&] {
      return static_cast<size_t>(std::count_if(entries.begin(), entries.end(),
                                               [&](const entry& e) { return e.state == state; }))
             >= n;
    };
    if (!cv.wait_for(guard, 60s, seen))
      FAIL("the breaker did not become " << to_string(state) << " " << n << " time(s)");
    for (auto i = entries.rbegin(); i != entries.rend(); ++i)
      if (i->state == state)
        return *i;
    return {};
  }
};

} // namespace

// -- deadline-bounded retries -------------------------------------------------------

TEST_CASE("deadline: a create failing ten times in a row still completes, once",
          "[retry][deadline]") {
  // A 6-attempt cap (the old default) would have lost this sample.
  auto eo = sail::test::test_emulator_options();
  eo.faults.routes = emu::route_create;
  using fk = emu::fault_kind;
  eo.faults.scripted = {fk::status_503, fk::status_502, fk::connection_reset, fk::status_503,
                        fk::truncated_body, fk::status_504, fk::status_503, fk::status_529,
                        fk::connection_reset, fk::status_503};
  eo.faults.retry_after = 0s;
  stack_fixture f{eo};
  auto res = f.completer().sample(model_input{1, 2, 3}).get();
  INFO((res ? std::string{"ok"} : render(res.error())));
  REQUIRE(res);
  auto st = f.emu.snapshot();
  REQUIRE(st.arrivals.size() == 1);
  auto& arrivals = st.arrivals.begin()->second;
  CHECK(arrivals.size() == 11);
  for (size_t i = 0; i + 1 < arrivals.size(); ++i)
    CHECK_FALSE(arrivals[i].fault.empty());
  CHECK(arrivals.back().fault.empty());
  CHECK(arrivals.back().status / 100 == 2);
  CHECK(st.max_runs_per_key == 1);
  CHECK(st.inference_runs_total == 1);
}

TEST_CASE("deadline: 200 samples at about 64 % transient faults all complete, runs per key 1",
          "[retry][deadline][idempotency]") {
  auto eo = sail::test::test_emulator_options();
  eo.faults.set(emu::fault_kind::status_503, 0.5)
    .set(emu::fault_kind::connection_reset, 0.15)
    .set(emu::fault_kind::truncated_body, 0.15);
  eo.faults.routes = emu::route_create | emu::route_poll;
  eo.faults.seed = 2024;
  stack_fixture f{eo, [](runtime_options& o) {
                    // This test is about the deadline bound: keep the budget
                    // and the breaker out of the way (tested below).
                    o.pool.retry_budget.ratio = 100;
                    o.pool.breaker.min_failures = 0;
                  }};
  auto tc = f.completer();
  std::vector<std::future<token_completer::sample_result>> futures;
  for (int64_t i = 0; i < 200; ++i)
    futures.push_back(tc.sample(model_input{i, i + 1}));
  size_t ok = 0;
  for (auto& fut : futures) {
    auto res = fut.get();
    INFO((res ? std::string{"ok"} : render(res.error())));
    CHECK(res);
    ok += res ? 1 : 0;
  }
  CHECK(ok == 200);
  auto st = f.emu.snapshot();
  CHECK(st.inference_runs.size() == 200);
  CHECK(st.max_runs_per_key == 1);
  size_t most = 0;
  for (auto& [key, arrivals] : st.arrivals)
    most = std::max(most, arrivals.size());
  // At least one create needed more than 6 attempts (P(none) ~ 1e-6).
  CHECK(most > 6);
  auto stats = f.pool_stats();
  CHECK(stats.failed_by_kind.empty());
}

TEST_CASE("deadline: a sample still failing at its deadline is a typed timeout naming the cause",
          "[retry][deadline]") {
  auto eo = sail::test::test_emulator_options();
  eo.faults.set(emu::fault_kind::status_503, 1.0);
  eo.faults.routes = emu::route_create;
  eo.faults.after_accept_fraction = 0;
  stack_fixture f{eo, [](runtime_options& o) {
                    o.pool.windows["priority"].deadline = 300ms;
                    o.pool.breaker.min_failures = 0;
                  }};
  auto res = f.completer().sample(model_input{1}).get();
  require_error(res, errc::timeout);
  // The message names the last failure (http_503, or the timeout of an
  // attempt cut short by the deadline).
  CHECK(render(res.error()).find("failed (") != std::string::npos);
  auto st = f.emu.snapshot();
  REQUIRE(st.arrivals.size() == 1);
  CHECK(st.arrivals.begin()->second.size() > 1);
  CHECK(st.count("POST /v1/responses", 503) >= 2);
  CHECK(st.inference_runs_total == 0);
}

// -- non-transient errors -----------------------------------------------------------

TEST_CASE("final: non-transient answers surface at once, typed, after one attempt",
          "[retry][final]") {
  SECTION("500 on create") {
    auto eo = sail::test::test_emulator_options();
    eo.faults.routes = emu::route_create;
    eo.faults.set(emu::fault_kind::status_500, 1.0);
    eo.faults.after_accept_fraction = 0;
    stack_fixture f{eo};
    auto res = f.completer().sample(model_input{1}).get();
    require_error(res, errc::http_error);
    CHECK(info_of(res.error())->http_status == 500);
    auto st = f.emu.snapshot();
    REQUIRE(st.arrivals.size() == 1);
    CHECK(st.arrivals.begin()->second.size() == 1);
  }
  SECTION("404 unknown LoRA") {
    stack_fixture f;
    auto cfg = stack_fixture::config();
    cfg.lora = "no-such-lora";
    auto res = f.completer(cfg).sample(model_input{3}).get();
    require_error(res, errc::http_error);
    CHECK(info_of(res.error())->http_status == 404);
    CHECK(f.emu.snapshot().count("POST /v1/responses", 404) == 1);
  }
  SECTION("401 wrong key") {
    stack_fixture f{sail::test::test_emulator_options(),
                    [](runtime_options& o) { o.sail_api_key = "sk_wrong_key_123456"; }};
    auto res = f.completer().sample(model_input{1}).get();
    require_error(res, errc::http_error);
    CHECK(f.emu.snapshot().count("POST /v1/responses", 401) == 1);
  }
  SECTION("malformed JSON on a poll") {
    auto eo = sail::test::test_emulator_options();
    eo.faults.routes = emu::route_poll;
    eo.faults.set(emu::fault_kind::malformed_json, 1.0);
    eo.latency.priority.queued = 20ms;
    stack_fixture f{eo};
    auto res = f.completer().sample(model_input{1}).get();
    require_error(res, errc::inference_error);
    auto st = f.emu.snapshot();
    REQUIRE(st.poll_arrivals.size() == 1);
    CHECK(st.poll_arrivals.begin()->second.size() == 1);
  }
}

// -- Retry-After through the worker -------------------------------------------------

TEST_CASE("Retry-After as an HTTP-date is a floor for the create's retry",
          "[retry][retry_after]") {
  auto eo = sail::test::test_emulator_options();
  eo.faults.routes = emu::route_create;
  eo.faults.scripted = {emu::fault_kind::status_529};
  eo.faults.retry_after = 2s;
  eo.faults.retry_after_http_date = true;
  stack_fixture f{eo};
  REQUIRE(f.completer().sample(model_input{4}).get());
  auto st = f.emu.snapshot();
  REQUIRE(st.arrivals.size() == 1);
  auto& arr = st.arrivals.begin()->second;
  REQUIRE(arr.size() == 2);
  CHECK(arr[0].status == 529);
  // The date has one-second resolution: at least 1 s of the 2 s remain.
  CHECK(arr[1].at - arr[0].at >= 900ms);
}

// -- Sail down, then up: the breaker through the pool -------------------------------

TEST_CASE("breaker: Sail down opens it, new work fails fast, work in flight waits and "
          "completes once Sail is back",
          "[retry][breaker]") {
  breaker_log log;
  auto eo = sail::test::test_emulator_options();
  stack_fixture f{eo, [&](runtime_options& o) {
                    o.pool.breaker.min_failures = 5;
                    o.pool.breaker.failure_ratio = 0.8;
                    o.pool.breaker.open_delay = 2s;
                    o.pool.breaker.max_open_delay = 2s;
                    o.pool.breaker.probe_timeout = 30s;
                    o.pool.on_breaker_change = log.listener();
                  }};
  log.server = &f.emu;
  // Sail hard down: every create and poll answered 503 before acceptance.
  emu::fault_settings down;
  down.set(emu::fault_kind::status_503, 1.0);
  down.routes = emu::route_create | emu::route_poll;
  down.after_accept_fraction = 0;
  f.emu.set_faults(down);
  auto tc = f.completer();
  constexpr int64_t in_flight = 4;
  std::vector<std::future<token_completer::sample_result>> futures;
  for (int64_t i = 0; i < in_flight; ++i)
    futures.push_back(tc.sample(model_input{i + 1}));
  auto opened = log.wait_for(breaker_state::open, 1);
  CHECK(opened.detail.find("(last: http_503); next probe in 2.0s") != std::string::npos);
  // New work is refused at once, typed, saying when the breaker probes next.
  auto refused = tc.sample(model_input{99}).get();
  require_error(refused, errc::unavailable);
  CHECK(render(refused.error()).find("next probe in") != std::string::npos);
  // The probe fails while Sail is down: open again. Meanwhile only the probe
  // and the attempts already on the wire reached Sail, not the retries of
  // the four samples.
  auto reopened = log.wait_for(breaker_state::open, 2);
  CHECK(reopened.detail.find("the probe failed (http_503)") != std::string::npos);
  CHECK(reopened.sail_requests - opened.sail_requests <= static_cast<uint64_t>(in_flight) + 1);
  // Sail is back: the next probe closes the breaker; the held samples finish.
  f.emu.set_faults({});
  auto closed = log.wait_for(breaker_state::closed, 1);
  CHECK(closed.detail == "the probe succeeded");
  for (auto& fut : futures) {
    auto res = fut.get();
    INFO((res ? std::string{"ok"} : render(res.error())));
    CHECK(res);
  }
  REQUIRE(tc.sample(model_input{100}).get());
  auto st = f.emu.snapshot();
  CHECK(st.max_runs_per_key == 1);
  CHECK(st.inference_runs.size() == static_cast<size_t>(in_flight) + 1);
  auto stats = f.pool_stats();
  CHECK(stats.pool.guard.breaker == "closed");
  CHECK(stats.pool.guard.breaker_opened == 1);
  CHECK(stats.pool.guard.probes >= 2);
  CHECK(stats.pool.guard.rejected == 1);
  CHECK(stats.pool.guard.held > 0);
  CHECK(stats.failed_by_kind[to_string(errc::unavailable)] == 1);
}

TEST_CASE("budget: under sustained failure the retries stay within the budget",
          "[retry][budget]") {
  // Half of all create attempts fail; the budget allows 0.1 retries per first
  // attempt plus 5 per second. Retries are deferred (never dropped): every
  // sample completes, and over the run the retries Sail saw stay within
  // floor * (elapsed + window) + ratio * first attempts.
  auto eo = sail::test::test_emulator_options();
  eo.faults.routes = emu::route_create;
  eo.faults.set(emu::fault_kind::status_503, 0.5);
  eo.faults.after_accept_fraction = 0;
  eo.faults.seed = 77;
  constexpr double ratio = 0.1;
  constexpr double floor_per_s = 5;
  stack_fixture f{eo, [&](runtime_options& o) {
                    o.pool.retry_budget.ratio = ratio;
                    o.pool.retry_budget.min_per_second = floor_per_s;
                    o.pool.retry_budget.window = 1s;
                    o.pool.breaker.min_failures = 0;
                  }};
  auto tc = f.completer();
  std::vector<std::future<token_completer::sample_result>> futures;
  for (int64_t i = 0; i < 40; ++i)
    futures.push_back(tc.sample(model_input{i + 7}));
  for (auto& fut : futures) {
    auto res = fut.get();
    INFO((res ? std::string{"ok"} : render(res.error())));
    CHECK(res);
  }
  auto stats = f.pool_stats();
  CHECK(stats.pool.guard.budget_denied > 0);
  auto st = f.emu.snapshot();
  CHECK(st.max_runs_per_key == 1);
  CHECK(st.inference_runs.size() == 40);
  // First attempts: every key's first create and every poll (polls see no
  // faults here); retries: the other creates.
  double first = 0, retries = 0, t_min = 1e300, t_max = 0;
  auto span = [&](const emu::arrival& a) {
    t_min = std::min(t_min, a.ms);
    t_max = std::max(t_max, a.ms);
  };
  for (auto& [key, arrivals] : st.arrivals) {
    first += 1;
    retries += static_cast<double>(arrivals.size() - 1);
    std::for_each(arrivals.begin(), arrivals.end(), span);
  }
  for (auto& [id, arrivals] : st.poll_arrivals) {
    first += static_cast<double>(arrivals.size());
    std::for_each(arrivals.begin(), arrivals.end(), span);
  }
  auto elapsed_s = (t_max - t_min) / 1000.0;
  INFO("first attempts " << first << ", retries " << retries << ", over " << elapsed_s << " s");
  CHECK(retries > 0);
  CHECK(retries <= floor_per_s * (elapsed_s + 1.0) + ratio * first + 1);
}

// -- the HTTP client below the retry path -------------------------------------------

TEST_CASE("http_client: a reset on a pooled connection is replayed once, below the policy",
          "[retry][http_client]") {
  sail::test::io_threads io;
  emu::server server{sail::test::test_emulator_options()};
  auto c = http_client::make(io.context());
  REQUIRE(c);
  auto create = [&](const std::string& key) {
    http_request req;
    req.method = boost::beast::http::verb::post;
    req.url = server.base_url() + "/v1/responses";
    req.headers = {{"Authorization", "Bearer " + server.config().sail_api_key},
                   {"Content-Type", "application/json"},
                   {"Idempotency-Key", key}};
    req.body = R"({"model":"emulator/toy","input":".","raw_prompt_tokens":[1,2,3],)"
               R"("max_output_tokens":4,"background":true})";
    return req;
  };
  // Warm the pool with one connection, then reset it before any response byte.
  REQUIRE(sail::test::fetch(*c, sail::test::get(server.base_url() + "/_emulator/health")));
  emu::fault_settings f;
  f.scripted = {emu::fault_kind::connection_reset};
  server.set_faults(f);
  auto r = sail::test::fetch(*c, create("key-rt2"));
  REQUIRE(r);
  CHECK(r->status / 100 == 2);
  CHECK(c->stats().stale_retries == 1);
  CHECK(server.snapshot().inference_runs.at("key-rt2") == 1);
  // On a fresh connection, resets and truncated bodies are transport errors
  // for the retry policy to judge.
  auto fresh = http_client::make(io.context());
  REQUIRE(fresh);
  server.set_faults(f);
  auto e = sail::test::fetch(*fresh, create("key-rt3"));
  REQUIRE_FALSE(e);
  CHECK(code_of(e.error()) == errc::transport_error);
  f.scripted = {emu::fault_kind::truncated_body};
  server.set_faults(f);
  auto t = sail::test::fetch(*fresh, create("key-rt3"));
  REQUIRE_FALSE(t);
  CHECK(code_of(t.error()) == errc::transport_error);
  CHECK(fresh->stats().stale_retries == 0);
}
