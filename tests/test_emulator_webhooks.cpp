// The emulator's latency spread and webhook faults: a seeded
// per-request latency distribution, dropped / duplicated / late webhooks,
// completed_at, and https deliveries. Driven over real sockets with a plain
// HTTP client; the receiving end is a bare http_server that records.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/net/http_server.hpp"
#include "support/certs.hpp"
#include "support/sync_http.hpp"

using namespace sail;
using namespace std::chrono_literals;
using sail::test::sync_http;
namespace json = boost::json;
namespace http = boost::beast::http;

namespace {

/// A bare HTTP receiver that records what it got (answers 200).
struct hook_sink {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<std::pair<std::string, std::string>> got;  // (Authorization, body)
  http_server srv;

  explicit hook_sink(http_server_options o = {})
    : srv{std::move(o), [this](http_server_context&& ctx) {
            {
              std::lock_guard guard{mtx};
              got.emplace_back(std::string{ctx.request()[http::field::authorization]},
                               ctx.request().body());
              cv.notify_all();
            }
            http_server_response res{http::status::ok, 11};
            ctx.respond(std::move(res));
          }} {
    if (auto err = srv.start())
      throw std::runtime_error("hook sink did not start");
  }

  std::string url(const std::string& scheme = "http") const {
    return scheme + "://127.0.0.1:" + std::to_string(srv.port()) + "/hook";
  }

  size_t count() {
    std::lock_guard guard{mtx};
    return got.size();
  }
};

std::string create_body(int64_t first_token, const std::string& hook_url,
                        const std::string& token, const std::string& window = "priority") {
  json::object meta{{"completion_window", window}};
  if (!hook_url.empty()) {
    meta["completion_webhook"] = hook_url;
    meta["webhook_token"] = token;
  }
  json::object o{{"model", "emulator/toy"},
                 {"input", "."},
                 {"raw_prompt_tokens", json::array{first_token, 2, 3}},
                 {"max_output_tokens", 4},
                 {"background", true},
                 {"metadata", std::move(meta)}};
  return json::serialize(o);
}

sail::test::sync_result create(sync_http& c, const emulator::server& emu,
                               const std::string& key, const std::string& body) {
  return c.post("/v1/responses", body,
                {{"Authorization", "Bearer " + emu.config().sail_api_key},
                 {"Content-Type", "application/json"},
                 {"Idempotency-Key", key}});
}

emulator::options base_options() {
  emulator::options o;
  o.threads = 2;
  o.webhook_retry_delay = 10ms;
  return o;
}

} // namespace

TEST_CASE("emulator: latency spread draws are seeded, per key, within bounds",
          "[emulator][latency]") {
  using shape = emulator::latency_spread::shape;
  emulator::latency_spread s;
  s.kind = shape::log_uniform;
  s.min = 5s;
  s.max = 120s;
  std::vector<double> xs;
  for (int i = 0; i < 2000; ++i) {
    auto key = "k" + std::to_string(i);
    auto d = s.draw(42, key);
    CHECK(d == s.draw(42, key)); // deterministic
    CHECK(d >= s.min);
    CHECK(d <= s.max);
    xs.push_back(std::chrono::duration<double>(d).count());
  }
  std::sort(xs.begin(), xs.end());
  // Log-uniform: the median is the geometric mean of the bounds (24.5 s);
  // each doubling holds the same share (5-10 s: log 2 / log 24 = 21.8 %).
  CHECK(xs[xs.size() / 2] == Approx(std::sqrt(5.0 * 120.0)).epsilon(0.1));
  auto below10 = std::count_if(xs.begin(), xs.end(), [](double x) { return x < 10; });
  CHECK(static_cast<double>(below10) / 2000.0 == Approx(std::log(2.0) / std::log(24.0)).epsilon(0.15));
  CHECK(s.draw(42, "k1") != s.draw(43, "k1")); // the seed matters
  s.kind = shape::log_normal;
  s.median = 30s;
  s.sigma = 0.5;
  xs.clear();
  for (int i = 0; i < 2000; ++i) {
    auto d = s.draw(7, "n" + std::to_string(i));
    CHECK(d >= s.min);
    CHECK(d <= s.max);
    xs.push_back(std::chrono::duration<double>(d).count());
  }
  std::sort(xs.begin(), xs.end());
  CHECK(xs[xs.size() / 2] == Approx(30).epsilon(0.1));
  s.kind = shape::none;
  CHECK(s.draw(7, "x") == std::chrono::microseconds{0});
}

TEST_CASE("emulator: a response completes after its drawn latency",
          "[emulator][latency]") {
  auto o = base_options();
  auto& p = o.latency.priority;
  p.spread.kind = emulator::latency_spread::shape::log_uniform;
  p.spread.min = 50ms;
  p.spread.max = 400ms;
  emulator::server emu{o};
  sync_http c{"127.0.0.1", emu.port()};
  for (int i = 0; i < 5; ++i) {
    auto key = "spread-" + std::to_string(i);
    auto r = create(c, emu, key, create_body(10 + i, "", ""));
    REQUIRE(r.status() == 202);
  }
  auto st = emu.snapshot();
  for (int i = 0; i < 5; ++i) {
    auto key = "spread-" + std::to_string(i);
    auto& t = st.timings.at(key);
    auto want = std::chrono::duration<double, std::milli>(p.spread.draw(o.seed, key)).count();
    INFO(key);
    CHECK(t.done_ms - t.accepted_ms == Approx(want).margin(1.0));
  }
}

TEST_CASE("emulator: webhook faults (drop, duplicate, late) and completed_at",
          "[emulator][webhook]") {
  hook_sink sink;
  auto o = base_options();
  o.emit_completed_at = true;
  emulator::server emu{o};
  sync_http c{"127.0.0.1", emu.port()};
  auto token = std::string{"whk_0123456789abcdef0123"};

  SECTION("delivered once, with the token and the GET's JSON plus completed_at") {
    auto r = create(c, emu, "w-1", create_body(1, sink.url(), token));
    REQUIRE(r.status() == 202);
    REQUIRE(emu.wait_until([](const emulator::stats& s) { return s.webhooks.delivered == 1; },
                           10s));
    REQUIRE(sink.count() == 1);
    CHECK(sink.got[0].first == "Bearer " + token);
    auto body = json::parse(sink.got[0].second).as_object();
    CHECK(body.at("status") == "completed");
    CHECK(body.at("metadata").as_object().if_contains("webhook_token") == nullptr);
    REQUIRE(body.if_contains("completed_at") != nullptr);
    auto completed = body.at("completed_at").to_number<double>();
    auto now = std::chrono::duration<double>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
    CHECK(completed <= now);
    CHECK(completed > now - 60);
    auto st = emu.snapshot();
    CHECK(st.webhooks.answers.at(200) == 1);
    CHECK(st.timings.at("w-1").webhook_ms >= st.timings.at("w-1").done_ms);
  }
  SECTION("dropped: never sent") {
    auto f = emu.faults();
    f.webhook_drop = 1.0;
    emu.set_faults(f);
    for (int i = 0; i < 3; ++i)
      REQUIRE(create(c, emu, "d-" + std::to_string(i), create_body(20 + i, sink.url(), token))
                .status()
              == 202);
    REQUIRE(emu.wait_until([](const emulator::stats& s) { return s.webhooks.dropped == 3; },
                           10s));
    auto st = emu.snapshot();
    CHECK(st.webhooks.attempts == 0);
    // Still there by GET (best effort delivery; the response stays available).
    auto id = st.timings.at("d-0").id;
    auto g = c.get("/v1/responses/" + id,
                   {{"Authorization", "Bearer " + emu.config().sail_api_key}});
    CHECK(g.status() == 200);
    CHECK(sink.count() == 0);
  }
  SECTION("duplicated: delivered twice") {
    auto f = emu.faults();
    f.webhook_duplicate = 1.0;
    emu.set_faults(f);
    REQUIRE(create(c, emu, "dup", create_body(30, sink.url(), token)).status() == 202);
    REQUIRE(emu.wait_until([](const emulator::stats& s) { return s.webhooks.delivered == 2; },
                           10s));
    CHECK(sink.count() == 2);
    CHECK(emu.snapshot().webhooks.duplicated == 1);
    CHECK(emu.snapshot().inference_runs.at("dup") == 1);
  }
  SECTION("late: delivered after webhook_delay, a GET sees the result first") {
    auto f = emu.faults();
    f.webhook_delay = 300ms;
    emu.set_faults(f);
    REQUIRE(create(c, emu, "late", create_body(40, sink.url(), token)).status() == 202);
    auto id = emu.snapshot().timings.at("late").id;
    auto g = c.get("/v1/responses/" + id,
                   {{"Authorization", "Bearer " + emu.config().sail_api_key}});
    CHECK(json::parse(g.body()).at("status") == "completed");
    CHECK(sink.count() == 0);
    REQUIRE(emu.wait_until([](const emulator::stats& s) { return s.webhooks.delivered == 1; },
                           10s));
    auto t = emu.snapshot().timings.at("late");
    CHECK(t.webhook_ms - t.done_ms >= 300);
  }
}

TEST_CASE("emulator: completed_at is absent by default (not in Sail's OpenAPI)",
          "[emulator][webhook]") {
  emulator::server emu{base_options()};
  sync_http c{"127.0.0.1", emu.port()};
  REQUIRE(create(c, emu, "plain", create_body(1, "", "")).status() == 202);
  auto id = emu.snapshot().timings.at("plain").id;
  auto g = c.get("/v1/responses/" + id,
                 {{"Authorization", "Bearer " + emu.config().sail_api_key}});
  auto body = json::parse(g.body()).as_object();
  CHECK(body.at("status") == "completed");
  CHECK(body.if_contains("completed_at") == nullptr);
}

TEST_CASE("emulator: webhooks over https, verified against the configured CA",
          "[emulator][webhook][tls]") {
  auto dir = sail::test::make_temp_dir("emu-webhook-tls");
  auto certs = sail::test::make_test_certs(dir, {"DNS:localhost", "IP:127.0.0.1"});
  {
    http_server_options ho;
    ho.tls_certificate_file = certs.server_cert;
    ho.tls_key_file = certs.server_key;
    hook_sink sink{ho};
    std::string token = "whk_0123456789abcdef0123";
    SECTION("trusted CA: delivered") {
      auto o = base_options();
      o.webhook_ca_file = certs.ca_cert;
      emulator::server emu{o};
      sync_http c{"127.0.0.1", emu.port()};
      REQUIRE(create(c, emu, "tls-1", create_body(1, sink.url("https"), token)).status()
              == 202);
      REQUIRE(emu.wait_until(
        [](const emulator::stats& s) { return s.webhooks.delivered == 1; }, 10s));
      REQUIRE(sink.count() == 1);
      CHECK(sink.got[0].first == "Bearer " + token);
    }
    SECTION("unknown CA: every attempt fails, nothing delivered") {
      auto o = base_options();
      o.webhook_retries = 1;
      emulator::server emu{o}; // the system's CAs do not know the test CA
      sync_http c{"127.0.0.1", emu.port()};
      REQUIRE(create(c, emu, "tls-2", create_body(2, sink.url("https"), token)).status()
              == 202);
      REQUIRE(emu.wait_until([](const emulator::stats& s) { return s.webhooks.failed == 1; },
                             10s));
      CHECK(emu.snapshot().webhooks.answers.at(0) == 2);
      CHECK(sink.count() == 0);
    }
  }
  sail::test::remove_dir(dir);
}
