// http_client + retrying_client against the Sail/Tinker emulator over real
// loopback sockets: retryable and final statuses, Retry-After (checked from
// the emulator's recorded arrival times), resets, truncated bodies, slow
// responses vs. deadlines, connection reuse, and idempotent replay under
// injected faults (inference runs per Idempotency-Key stay exactly 1).
#include <catch2/catch.hpp>

#include <future>

#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/http_client.hpp"
#include "sail_tinker/net/retrying_client.hpp"
#include "support/io_threads.hpp"

using namespace sail;
using namespace sail::test;
using namespace std::chrono_literals;
namespace emu = sail::emulator;
using verb = boost::beast::http::verb;

namespace {

struct outcome {
  caf::expected<http_response> result;
  retry_report report;
};

struct fixture {
  explicit fixture(emu::options eo = make_options(), retry_options ro = fast_retries())
    : server(std::move(eo)) {
    auto c = http_client::make(io.context());
    REQUIRE(c);
    client = std::make_shared<http_client>(std::move(*c));
    retrying = std::make_unique<retrying_client>(client, ro, 7);
  }

  static emu::options make_options() {
    emu::options o;
    o.threads = 2;
    return o;
  }

  static retry_options fast_retries() {
    retry_options r;
    r.base_delay = 1ms;
    r.max_delay = 20ms;
    r.still_building_delay = 10ms;
    return r;
  }

  http_request create(const std::string& key, std::string body = {}) const {
    http_request req;
    req.method = verb::post;
    req.url = server.base_url() + "/v1/responses";
    req.headers = {{"Authorization", "Bearer " + server.config().sail_api_key},
                   {"Content-Type", "application/json"}};
    if (!key.empty())
      req.headers.push_back({"Idempotency-Key", key});
    req.body = body.empty() ? std::string{R"({"model":"emulator/toy","input":".",)"
                                          R"("raw_prompt_tokens":[1,2,3],)"
                                          R"("max_output_tokens":4,"background":true})"}
                            : std::move(body);
    return req;
  }

  std::future<outcome> start(http_request req, request_kind kind) {
    auto p = std::make_shared<std::promise<outcome>>();
    auto f = p->get_future();
    retrying->async_request(std::move(req), kind,
                            [p](caf::expected<http_response> r, retry_report rep) {
                              p->set_value(outcome{std::move(r), std::move(rep)});
                            });
    return f;
  }

  outcome run(http_request req, request_kind kind) {
    auto f = start(std::move(req), kind);
    if (f.wait_for(2min) != std::future_status::ready)
      FAIL("request did not complete within two minutes");
    return f.get();
  }

  void script(std::initializer_list<emu::fault_kind> kinds,
              std::chrono::seconds retry_after = 1s, bool http_date = false) {
    emu::fault_settings f;
    f.scripted.assign(kinds.begin(), kinds.end());
    f.retry_after = retry_after;
    f.retry_after_http_date = http_date;
    server.set_faults(f);
  }

  io_threads io;
  emu::server server;
  std::shared_ptr<http_client> client;
  std::unique_ptr<retrying_client> retrying;
};

} // namespace

TEST_CASE("emulator: success without retries, one connection for many requests") {
  fixture fx;
  auto o = fx.run(fx.create("key-ok"), request_kind::sail_create);
  REQUIRE(o.result);
  CHECK(o.result->status == 202);
  CHECK(o.report.retries() == 0);
  REQUIRE(o.report.attempts.size() == 1);
  CHECK(o.report.attempts[0].cause == "ok");
  for (int i = 0; i < 10; ++i) {
    auto h = fetch(*fx.client, get(fx.server.base_url() + "/_emulator/health"));
    REQUIRE(h);
    CHECK(h->status == 200);
  }
  auto st = fx.server.snapshot();
  CHECK(st.connections_accepted == 1);
  CHECK(st.inference_runs.at("key-ok") == 1);
}

TEST_CASE("emulator: every retryable status of a create is retried") {
  fixture fx;
  using fk = emu::fault_kind;
  std::vector<std::pair<fk, unsigned>> cases = {
    {fk::status_429, 429}, {fk::status_529, 529}, {fk::status_502, 502},
    {fk::status_503, 503}, {fk::status_504, 504}};
  for (auto [kind, status] : cases) {
    auto key = "key-" + std::to_string(status);
    INFO("status " << status);
    fx.script({kind});
    auto o = fx.run(fx.create(key), request_kind::sail_create);
    REQUIRE(o.result);
    CHECK(o.result->status / 100 == 2);
    REQUIRE(o.report.attempts.size() == 2);
    CHECK(o.report.attempts[0].status == status);
    CHECK(o.report.attempts[0].cause == "http_" + std::to_string(status));
    CHECK(o.report.attempts[0].retried);
    auto st = fx.server.snapshot();
    REQUIRE(st.arrivals.at(key).size() == 2);
    CHECK(st.arrivals.at(key)[0].status == static_cast<int>(status));
    CHECK(st.inference_runs.at(key) == 1);
  }
}

TEST_CASE("emulator: a 500 is final for a create but retried for a poll") {
  fixture fx;
  fx.script({emu::fault_kind::status_500});
  auto o = fx.run(fx.create("key-500"), request_kind::sail_create);
  REQUIRE(o.result);
  CHECK(o.result->status == 500); // returned as the response; caller classifies
  CHECK(o.report.retries() == 0);
  CHECK(fx.server.snapshot().arrivals.at("key-500").size() == 1);
  // Create for real, then poll through a 500.
  fx.script({});
  auto created = fx.run(fx.create("key-500b"), request_kind::sail_create);
  REQUIRE(created.result);
  auto id_pos = created.result->body.find("\"id\":\"");
  REQUIRE(id_pos != std::string::npos);
  auto id = created.result->body.substr(id_pos + 6,
                                        created.result->body.find('"', id_pos + 6)
                                          - id_pos - 6);
  fx.script({emu::fault_kind::status_500});
  http_request poll;
  poll.url = fx.server.base_url() + "/v1/responses/" + id;
  poll.headers = {{"Authorization", "Bearer " + fx.server.config().sail_api_key}};
  auto p = fx.run(poll, request_kind::sail_poll);
  REQUIRE(p.result);
  CHECK(p.result->status == 200);
  REQUIRE(p.report.attempts.size() == 2);
  CHECK(p.report.attempts[0].cause == "http_500");
  CHECK(fx.server.snapshot().poll_arrivals.at(id).size() == 2);
}

TEST_CASE("emulator: non-retryable statuses are returned after one attempt") {
  fixture fx;
  SECTION("400 validation error") {
    auto o = fx.run(fx.create("key-400", R"({"input":"x"})"), request_kind::sail_create);
    REQUIRE(o.result);
    CHECK(o.result->status == 400);
    CHECK(o.report.retries() == 0);
    CHECK(fx.server.snapshot().arrivals.at("key-400").size() == 1);
  }
  SECTION("401 without a key") {
    auto req = fx.create("key-401");
    req.headers.erase(req.headers.begin());
    auto o = fx.run(req, request_kind::sail_create);
    REQUIRE(o.result);
    CHECK(o.result->status == 401);
    CHECK(o.report.retries() == 0);
    CHECK(fx.server.snapshot().count("POST /v1/responses", 401) == 1);
  }
}

TEST_CASE("emulator: Retry-After is honoured as a floor (recorded arrivals)") {
  fixture fx;
  SECTION("delta-seconds") {
    fx.script({emu::fault_kind::status_429}, 1s);
    auto o = fx.run(fx.create("key-ra"), request_kind::sail_create);
    REQUIRE(o.result);
    CHECK(o.result->status / 100 == 2);
    REQUIRE(o.report.attempts.size() == 2);
    CHECK(o.report.attempts[0].delay >= 1s);
    auto arr = fx.server.snapshot().arrivals.at("key-ra");
    REQUIRE(arr.size() == 2);
    CHECK(arr[1].at - arr[0].at >= 1s);
  }
  SECTION("HTTP-date") {
    fx.script({emu::fault_kind::status_529}, 2s, true);
    auto o = fx.run(fx.create("key-ra-date"), request_kind::sail_create);
    REQUIRE(o.result);
    CHECK(o.result->status / 100 == 2);
    auto arr = fx.server.snapshot().arrivals.at("key-ra-date");
    REQUIRE(arr.size() == 2);
    // The date has one-second resolution: at least 1 s of the 2 s remain.
    CHECK(arr[1].at - arr[0].at >= 900ms);
  }
}

TEST_CASE("emulator: resets and truncated bodies are retried as transport errors") {
  fixture fx;
  fx.script({emu::fault_kind::connection_reset, emu::fault_kind::truncated_body});
  auto o = fx.run(fx.create("key-rt"), request_kind::sail_create);
  REQUIRE(o.result);
  CHECK(o.result->status / 100 == 2);
  REQUIRE(o.report.attempts.size() == 3);
  CHECK(o.report.attempts[0].cause == "transport");
  CHECK(o.report.attempts[1].cause == "transport");
  auto st = fx.server.snapshot();
  CHECK(st.fault_count(emu::fault_kind::connection_reset) == 1);
  CHECK(st.fault_count(emu::fault_kind::truncated_body) == 1);
  CHECK(st.inference_runs.at("key-rt") == 1);
  SECTION("plain client: a reset on a pooled connection is replayed once") {
    // The connection of the last attempt is pooled; the reset hits it before
    // any response byte and the POST carries an Idempotency-Key.
    auto before = fx.client->stats().stale_retries;
    fx.script({emu::fault_kind::connection_reset});
    auto r = fetch(*fx.client, fx.create("key-rt2"));
    REQUIRE(r);
    CHECK(r->status / 100 == 2);
    CHECK(fx.client->stats().stale_retries == before + 1);
    CHECK(fx.server.snapshot().inference_runs.at("key-rt2") == 1);
  }
  SECTION("plain client: on a fresh connection they are transport errors") {
    auto fresh = http_client::make(fx.io.context());
    REQUIRE(fresh);
    fx.script({emu::fault_kind::connection_reset});
    auto r = fetch(*fresh, fx.create("key-rt3"));
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::transport_error);
    fx.script({emu::fault_kind::truncated_body});
    auto t = fetch(*fresh, fx.create("key-rt3"));
    REQUIRE_FALSE(t);
    CHECK(code_of(t.error()) == errc::transport_error);
    CHECK(fresh->stats().stale_retries == 0);
  }
}

TEST_CASE("emulator: a slow response hits the deadline, retries stay within it") {
  fixture fx;
  emu::fault_settings f;
  f.set(emu::fault_kind::slow_response, 1.0);
  f.slow_delay = 3s;
  fx.server.set_faults(f);
  auto req = fx.create("key-slow");
  req.deadline = 400ms;
  auto r = fetch(*fx.client, req);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::timeout);
  auto req2 = fx.create("key-slow2");
  req2.deadline = 400ms;
  auto o = fx.run(req2, request_kind::sail_create);
  REQUIRE_FALSE(o.result);
  CHECK(code_of(o.result.error()) == errc::timeout);
  CHECK_FALSE(o.report.attempts.empty());
}

TEST_CASE("emulator: Tinker archive 503 'still building' is retried") {
  fixture fx;
  fx.server.set_still_building_calls(2);
  http_request req;
  req.url = fx.server.base_url()
            + "/api/v1/training_runs/run-1/checkpoints/sampler_weights/0001/archive";
  req.headers = {{"X-API-Key", fx.server.config().tinker_api_key}};
  auto o = fx.run(req, request_kind::tinker_archive);
  REQUIRE(o.result);
  CHECK(o.result->status == 302);
  CHECK_FALSE(o.result->header("location").empty());
  REQUIRE(o.report.attempts.size() == 3);
  CHECK(o.report.attempts[0].cause == "still_building");
  CHECK(o.report.attempts[1].cause == "still_building");
}

TEST_CASE("emulator: idempotent replay under 30% injected 503s and resets") {
  retry_options ro = fixture::fast_retries();
  ro.max_attempts = 12;
  fixture fx{fixture::make_options(), ro};
  emu::fault_settings f;
  f.set(emu::fault_kind::status_503, 0.15);
  f.set(emu::fault_kind::connection_reset, 0.15);
  f.routes = emu::route_create;
  f.seed = 1234;
  fx.server.set_faults(f);
  constexpr int n = 60;
  std::vector<std::future<outcome>> futures;
  for (int i = 0; i < n; ++i)
    futures.push_back(fx.start(fx.create("replay-" + std::to_string(i)),
                               request_kind::sail_create));
  uint64_t retries = 0;
  for (auto& fut : futures) {
    REQUIRE(fut.wait_for(2min) == std::future_status::ready);
    auto o = fut.get();
    REQUIRE(o.result);
    CHECK(o.result->status / 100 == 2);
    retries += o.report.retries();
  }
  auto st = fx.server.snapshot();
  CHECK(st.fault_count(emu::fault_kind::status_503) > 0);
  CHECK(st.fault_count(emu::fault_kind::connection_reset) > 0);
  CHECK(retries > 0);
  CHECK(st.max_runs_per_key == 1);
  for (int i = 0; i < n; ++i) {
    auto key = "replay-" + std::to_string(i);
    INFO(key);
    REQUIRE(st.inference_runs.count(key) == 1);
    CHECK(st.inference_runs.at(key) == 1);
  }
}
