// The resolver actor against the emulator's Tinker routes: TTL-then-URL
// order, both archive shapes, cache hit, refresh before expiry, one shared
// call for concurrent resolves, 503 "still building" retries, typed errors.
#include <catch2/catch.hpp>

#include <algorithm>

#include <caf/scoped_actor.hpp>

#include "sail_tinker/net/tinker_codec.hpp"
#include "support/stack_fixture.hpp"

using namespace sail;
using sail::test::stack_fixture;

namespace {

const char* checkpoint_uri = "tinker://0f1e2d3c-run:train:0/sampler_weights/step-40";

tinker_path checkpoint() {
  return *parse_tinker_path(checkpoint_uri);
}

caf::expected<signed_url> resolve(stack_fixture& f, std::optional<int64_t> ttl = {}) {
  caf::scoped_actor self{f.sys};
  caf::expected<signed_url> result{signed_url{}};
  self->request(f.rt->resolver(), std::chrono::seconds(30), atom::resolve_v,
                resolve_request{checkpoint(), ttl})
    .receive([&](signed_url& url) { result = std::move(url); },
             [&](caf::error& err) { result = std::move(err); });
  return result;
}

std::vector<std::string> calls(stack_fixture& f) {
  return f.emu.snapshot().tinker_calls[checkpoint_uri];
}

} // namespace

TEST_CASE("resolver: TTL first, then the archive URL", "[resolver]") {
  stack_fixture f;
  auto url = resolve(f, int64_t{3600});
  REQUIRE(url);
  CHECK(url->url.rfind(f.emu.base_url(), 0) == 0);
  CHECK(url->expires > caf::make_timestamp());
  CHECK(calls(f) == std::vector<std::string>{"ttl", "archive"});
  CHECK(f.emu.checkpoint_ttl(checkpoint_uri) == 3600);
}

TEST_CASE("resolver: without ttl_seconds only the archive call is made", "[resolver]") {
  stack_fixture f;
  REQUIRE(resolve(f));
  CHECK(calls(f) == std::vector<std::string>{"archive"});
  CHECK(!f.emu.checkpoint_ttl(checkpoint_uri));
}

TEST_CASE("resolver: 302 Location + Expires and 200 JSON shapes", "[resolver]") {
  for (auto mode : {emulator::archive_mode::redirect, emulator::archive_mode::json}) {
    DYNAMIC_SECTION("mode " << static_cast<int>(mode)) {
      auto eo = sail::test::test_emulator_options();
      eo.archive = mode;
      eo.archive_url_ttl = std::chrono::seconds(1800);
      stack_fixture f{eo};
      auto url = resolve(f);
      REQUIRE(url);
      auto lifetime = url->expires - caf::make_timestamp();
      CHECK(lifetime > std::chrono::minutes(25));
      CHECK(lifetime <= std::chrono::minutes(31));
    }
  }
}

TEST_CASE("resolver: a cached URL is served without a REST call", "[resolver][cache]") {
  stack_fixture f;
  auto first = resolve(f);
  auto second = resolve(f);
  REQUIRE(first);
  REQUIRE(second);
  CHECK(*first == *second);
  CHECK(calls(f) == std::vector<std::string>{"archive"});
}

TEST_CASE("resolver: a URL past its refresh point is fetched again", "[resolver][cache]") {
  auto eo = sail::test::test_emulator_options();
  // URLs that expire as they are handed out are due for refresh at once.
  eo.archive_url_ttl = std::chrono::seconds(0);
  stack_fixture f{eo};
  REQUIRE(resolve(f));
  REQUIRE(resolve(f));
  CHECK(calls(f) == std::vector<std::string>{"archive", "archive"});
}

TEST_CASE("resolver: concurrent resolves of one path share one REST call",
          "[resolver][cache]") {
  auto eo = sail::test::test_emulator_options();
  eo.still_building_calls = 1;  // keeps the first call open for a while
  stack_fixture f{eo};
  caf::scoped_actor self{f.sys};
  constexpr int n = 16;
  for (int i = 0; i < n; ++i)
    self->send(f.rt->resolver(), atom::resolve_v, resolve_request{checkpoint(), {}});
  int got = 0;
  std::set<std::string> urls;
  self->receive_for(got, n)([&](signed_url& url) { urls.insert(url.url); });
  CHECK(urls.size() == 1);
  // One 503, then one success: two calls for all sixteen resolves.
  CHECK(calls(f) == std::vector<std::string>{"archive", "archive"});
}

TEST_CASE("resolver: 503 still building is retried with bounded backoff", "[resolver]") {
  auto eo = sail::test::test_emulator_options();
  eo.still_building_calls = 3;
  stack_fixture f{eo};
  REQUIRE(resolve(f));
  CHECK(calls(f).size() == 4);
  CHECK(f.emu.snapshot().count("GET tinker archive", 503) == 3);
}

TEST_CASE("resolver: still building beyond the attempt cap is an http_error 503",
          "[resolver]") {
  auto eo = sail::test::test_emulator_options();
  eo.still_building_calls = 100;
  stack_fixture f{eo, [](runtime_options& o) { o.resolver.retry.max_attempts = 3; }};
  auto url = resolve(f);
  REQUIRE(!url);
  CHECK(code_of(url.error()) == errc::http_error);
  CHECK(info_of(url.error())->http_status == 503);
  CHECK(calls(f).size() == 3);
}

TEST_CASE("resolver: an unknown checkpoint is an http_error 404 with the detail",
          "[resolver]") {
  auto eo = sail::test::test_emulator_options();
  eo.known_checkpoints = {"tinker://other:train:0/weights/w1"};
  stack_fixture f{eo};
  auto url = resolve(f, int64_t{60});
  REQUIRE(!url);
  CHECK(code_of(url.error()) == errc::http_error);
  CHECK(info_of(url.error())->http_status == 404);
}

TEST_CASE("resolver: a wrong API key is refused by Tinker (401) and never shown",
          "[resolver]") {
  stack_fixture f{sail::test::test_emulator_options(),
                  [](runtime_options& o) { o.tinker_api_key = "tml-wrong-key-0123456789"; }};
  auto url = resolve(f);
  REQUIRE(!url);
  CHECK(info_of(url.error())->http_status == 401);
  CHECK(render(url.error()).find("tml-wrong-key-0123456789") == std::string::npos);
}

TEST_CASE("resolver: a malformed API key is refused before any request", "[resolver]") {
  emulator::server emu{sail::test::test_emulator_options()};
  sail::system_config cfg;
  caf::actor_system sys{cfg};
  auto opts = sail::test::test_runtime_options(emu);
  opts.tinker_api_key = "not-a-tinker-key";
  auto rt = runtime::start(sys, opts);
  REQUIRE(!rt);
  CHECK(code_of(rt.error()) == errc::invalid_argument);
  CHECK(emu.snapshot().tinker_calls.empty());
}

TEST_CASE("completer: a tinker_checkpoint is resolved and sent as the signed URL",
          "[resolver][completer]") {
  stack_fixture f;
  auto cfg = stack_fixture::config();
  cfg.tinker_checkpoint = checkpoint_uri;
  cfg.tinker_ttl_seconds = 600;
  cfg.adapter_config = R"({"peft_type":"LORA","r":8})";
  auto tc = f.completer(cfg);
  REQUIRE(tc.sample(model_input{1, 2}).get());
  REQUIRE(tc.sample(model_input{3, 4}).get());
  // TTL then URL once; the second sample used the cached URL.
  CHECK(calls(f) == std::vector<std::string>{"ttl", "archive"});
  CHECK(f.emu.checkpoint_ttl(checkpoint_uri) == 600);
}

TEST_CASE("completer: a killed resolver fails the samples waiting for a URL with "
          "node_down, and later ones at once",
          "[resolver][completer][supervision]") {
  // Nothing restarts the resolver (docs/architecture.md, "Supervision").
  auto eo = sail::test::test_emulator_options();
  eo.still_building_calls = 1'000'000; // the resolve never ends by itself
  stack_fixture f{eo, [](runtime_options& o) {
                    o.resolver.retry.max_attempts = 1000;
                    o.resolver.retry.still_building_delay = std::chrono::milliseconds(50);
                  }};
  auto cfg = stack_fixture::config();
  cfg.tinker_checkpoint = checkpoint_uri;
  cfg.adapter_config = R"({"peft_type":"LORA","r":8})";
  auto tc = f.completer(cfg);
  auto waiting = tc.sample(model_input{1, 2});
  REQUIRE(f.emu.wait_until(
    [](const emulator::stats& s) { return s.count("GET tinker archive", 503) >= 1; },
    std::chrono::seconds(30)));
  caf::scoped_actor self{f.sys};
  self->send_exit(f.rt->resolver(), caf::exit_reason::kill);
  auto res = waiting.get();
  REQUIRE(!res);
  CHECK(code_of(res.error()) == errc::node_down);
  auto later = tc.sample(model_input{3, 4}).get();
  REQUIRE(!later);
  CHECK(code_of(later.error()) == errc::node_down);
  auto s = tc.stats();
  REQUIRE(s);
  CHECK(s->failed_by_kind["node_down"] == 2);
  // Nothing reached Sail.
  CHECK(f.emu.snapshot().count("POST /v1/responses", 202) == 0);
}

TEST_CASE("completer: a bad tinker_checkpoint is refused at spawn", "[resolver][completer]") {
  stack_fixture f;
  auto cfg = stack_fixture::config();
  cfg.tinker_checkpoint = "tinker://only-two/parts";
  cfg.adapter_config = "{}";
  auto c = f.rt->make_completer(cfg);
  REQUIRE(!c);
  CHECK(code_of(c.error()) == errc::invalid_argument);
}

TEST_CASE("completer: signed URLs are refreshed in the background, one TTL per refresh, "
          "no sample waits",
          "[resolver][completer][refresh]") {
  using namespace std::chrono;
  // URLs live 8 s; one margin of 2 s (life / 4): each URL is refreshed 4 s
  // after it was handed out and unused in its last 2 s. Every Tinker call
  // takes 600 ms, so a refresh (TTL + archive) takes 1.2 s.
  constexpr auto slow = milliseconds(600);
  auto eo = sail::test::test_emulator_options();
  eo.archive_url_ttl = seconds(8);
  eo.faults.routes = emulator::route_tinker;
  eo.faults.set(emulator::fault_kind::slow_response, 1.0);
  eo.faults.slow_delay = slow;
  stack_fixture f{eo, [](runtime_options& o) { o.resolver.refresh_margin = seconds(2); }};
  auto cfg = stack_fixture::config();
  cfg.tinker_checkpoint = checkpoint_uri;
  cfg.tinker_ttl_seconds = 600;
  cfg.adapter_config = R"({"peft_type":"LORA","r":8})";
  auto tc = f.completer(cfg);
  // Sample one after another until the URL was refreshed twice (a run of
  // about 2.5 URL lifetimes... three archive calls in all).
  auto refreshed_twice = [](const emulator::stats& st) {
    auto i = st.tinker_calls.find(checkpoint_uri);
    return i != st.tinker_calls.end()
           && std::count(i->second.begin(), i->second.end(), "archive") >= 3;
  };
  size_t samples = 0;
  while (!f.emu.wait_until(refreshed_twice, milliseconds(0))) {
    auto res = tc.sample(model_input{1, 2, static_cast<int64_t>(samples % 50)}).get();
    REQUIRE(res);
    ++samples;
  }
  // Two more after the last refresh started, so one may have used its URL.
  REQUIRE(tc.sample(model_input{5}).get());
  REQUIRE(tc.sample(model_input{6}).get());
  samples += 2;
  auto st = f.emu.snapshot();
  auto& seq = st.tinker_calls[checkpoint_uri];
  // One TTL PUT per refresh (each immediately before its archive call),
  // never one per sample.
  REQUIRE(seq.size() % 2 == 0);
  for (size_t i = 0; i < seq.size(); i += 2) {
    CHECK(seq[i] == "ttl");
    CHECK(seq[i + 1] == "archive");
  }
  CHECK(seq.size() <= 8);
  CHECK(samples > seq.size() * 4);
  // No sample waited for a resolve after the first URL was known: every gap
  // between consecutive creates (as the emulator recorded them) is shorter
  // than a single Tinker call would make it.
  std::vector<double> at;
  for (auto& [key, arrivals] : st.arrivals)
    for (auto& a : arrivals)
      at.push_back(a.ms);
  std::sort(at.begin(), at.end());
  REQUIRE(at.size() == samples);
  double widest = 0;
  for (size_t i = 1; i < at.size(); ++i)
    widest = std::max(widest, at[i] - at[i - 1]);
  INFO("samples " << samples << ", widest gap between creates " << widest << " ms");
  CHECK(widest < static_cast<double>(slow.count()));
  CHECK(st.inference_runs_total == samples);
  // The emulator refuses creates carrying one of its URLs after expiry.
  CHECK(st.expired_signed_urls == 0);
}

TEST_CASE("completer: no create attempt carries an expired signed URL",
          "[resolver][completer][refresh]") {
  using namespace std::chrono;
  // Every create is refused with 503 before acceptance, so the sample keeps
  // retrying; its URL lives 2 s. The worker stops at the URL's expiry: the
  // sample fails with a typed timeout naming the URL, instead of sending a
  // create whose (byte-identical) body holds an expired URL.
  auto eo = sail::test::test_emulator_options();
  eo.archive_url_ttl = seconds(2);
  eo.faults.routes = emulator::route_create;
  eo.faults.set(emulator::fault_kind::status_503, 1.0);
  eo.faults.after_accept_fraction = 0.0;
  stack_fixture f{eo, [](runtime_options& o) {
                    o.pool.retry.max_attempts = 1000;
                    o.pool.retry.base_delay = milliseconds(50);
                    o.pool.retry.max_delay = milliseconds(100);
                  }};
  auto cfg = stack_fixture::config();
  cfg.tinker_checkpoint = checkpoint_uri;
  cfg.adapter_config = R"({"peft_type":"LORA","r":8})";
  auto tc = f.completer(cfg);
  auto res = tc.sample(model_input{1, 2}).get();
  REQUIRE(!res);
  INFO(render(res.error()));
  CHECK(code_of(res.error()) == errc::timeout);
  CHECK(info_of(res.error())->field == "tinker_lora_signed_url");
  auto st = f.emu.snapshot();
  CHECK(st.count("POST /v1/responses", 503) > 3);
  CHECK(st.inference_runs_total == 0);
  CHECK(st.expired_signed_urls == 0);
}
