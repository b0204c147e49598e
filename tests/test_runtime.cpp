// The actor runtime end to end over loopback sockets against the emulator:
// trainer -> completer -> worker pool -> emulator -> typed reply or typed
// error, with supervision, backpressure, cancellation and groups.
#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <set>
#include <utility>

#include <boost/json.hpp>

#include "support/pool_testing.hpp"
#include "support/stack_fixture.hpp"

using namespace sail;
using sail::test::expected_sample;
using sail::test::stack_fixture;

namespace {

sample_request prompt_request(std::vector<int64_t> prompt) {
  sample_request req;
  req.prompt.tokens = std::move(prompt);
  return req;
}

std::vector<int32_t> as_int32(const std::vector<int64_t>& xs) {
  return {xs.begin(), xs.end()};
}

// Asserts the typed error kind of a failed result.
template <class T>
void require_error(const caf::expected<T>& res, errc kind) {
  REQUIRE(!res);
  INFO("error: " << render(res.error()));
  CHECK(code_of(res.error()) == kind);
}

/// Bound of every wait below.
constexpr auto wait_bound = std::chrono::seconds(60);

/// Waits (bounded) until `pred(stats)` holds for the emulator's counters:
/// woken by the emulator on every counter update, no polling.
template <class Pred>
bool wait_for_emulator(stack_fixture& f, Pred pred) {
  return f.emu.wait_until(pred, wait_bound);
}

/// Waits (bounded) until `pred(stats)` holds for the pool's counters: the
/// pool's observer hears of every message it handled (support/pool_testing.hpp).
template <class Pred>
bool wait_for_pool(stack_fixture& f, Pred pred) {
  return sail::test::wait_for_pool(*f.rt, pred, wait_bound);
}

/// The create bodies the emulator received (its request log), in order.
std::vector<boost::json::object> sent_creates(stack_fixture& f) {
  std::vector<boost::json::object> out;
  for (auto& r : f.emu.request_log())
    if (r.route == "POST /v1/responses")
      out.push_back(boost::json::parse(r.request_body).as_object());
  return out;
}

emulator::options slow_emulator(std::chrono::milliseconds queued) {
  auto opts = sail::test::test_emulator_options();
  opts.latency.priority.queued = queued;
  return opts;
}

/// Starts `n` samples of `tc` (prompts {1} .. {n}).
std::vector<std::future<token_completer::sample_result>> sample_n(token_completer& tc,
                                                                  int64_t n) {
  std::vector<std::future<token_completer::sample_result>> futures;
  for (int64_t i = 0; i < n; ++i)
    futures.push_back(tc.sample(model_input{i + 1}));
  return futures;
}

} // namespace

TEST_CASE("sample: tokens, logprobs and stop reason from the emulator",
          "[runtime][contract]") {
  stack_fixture f;
  auto tc = f.completer();
  auto res = tc.sample(model_input{5, 6, 7}).get();
  REQUIRE(res);
  auto want = expected_sample(f.emu, stack_fixture::config(), {5, 6, 7}, 8,
                              sail::test::key_of_prompt(f.emu, {5, 6, 7}));
  CHECK(res->tokens == as_int32(want.token_ids));
  REQUIRE(res->maybe_logprobs);
  CHECK(res->maybe_logprobs->size() == want.logprobs.size());
  for (size_t i = 0; i < want.logprobs.size(); ++i)
    CHECK(res->maybe_logprobs->at(i) == Approx(want.logprobs[i]));
  CHECK(res->stop_reason == want.stop_reason);
  auto st = f.emu.snapshot();
  CHECK(st.inference_runs.size() == 1);
  CHECK(st.max_runs_per_key == 1);
}

TEST_CASE("sample: the per-call max_tokens cap is min(config, cap)",
          "[runtime][contract]") {
  stack_fixture f;
  auto tc = f.completer(stack_fixture::config(10));
  // Explicit keys: the toy model mixes the Idempotency-Key into the sample.
  auto capped_req = prompt_request({1, 2});
  capped_req.max_tokens = 3;
  capped_req.key = "cap-3";
  auto capped = tc.sample(capped_req).get();
  REQUIRE(capped);
  CHECK(capped->tokens.size() <= 3);
  CHECK(capped->tokens
        == as_int32(
          expected_sample(f.emu, stack_fixture::config(10), {1, 2}, 3, "cap-3").token_ids));
  auto uncapped_req = prompt_request({1, 2});
  uncapped_req.max_tokens = 50;
  uncapped_req.key = "cap-50";
  auto uncapped = tc.sample(uncapped_req).get();
  REQUIRE(uncapped);
  CHECK(uncapped->tokens
        == as_int32(
          expected_sample(f.emu, stack_fixture::config(10), {1, 2}, 10, "cap-50").token_ids));
}

TEST_CASE("sample: stop token ids and stop strings end the sample", "[runtime][contract]") {
  stack_fixture f;
  auto cfg = stack_fixture::config(32);
  auto tc = f.completer(cfg);
  // Find a prompt whose unconstrained sample contains a token we can stop on
  // (for the key the sample will be sent with).
  auto free_run = expected_sample(f.emu, cfg, {9, 9, 9}, 32, "stop-by-id");
  REQUIRE(free_run.token_ids.size() > 2);
  auto stop_id = free_run.token_ids[1];
  auto by_id_req = prompt_request({9, 9, 9});
  by_id_req.stop = stop_condition::token(stop_id);
  by_id_req.key = "stop-by-id";
  auto by_id = tc.sample(by_id_req).get();
  REQUIRE(by_id);
  auto want = expected_sample(f.emu, cfg, {9, 9, 9}, 32, "stop-by-id",
                              stop_condition::token(stop_id));
  CHECK(by_id->tokens == as_int32(want.token_ids));
  CHECK(by_id->stop_reason == "stop");
  auto free_text_run = expected_sample(f.emu, cfg, {9, 9, 9}, 32, "stop-by-text");
  REQUIRE(free_text_run.token_ids.size() > 2);
  auto text = emulator::vocabulary()[static_cast<size_t>(free_text_run.token_ids[1])];
  auto by_text_req = prompt_request({9, 9, 9});
  by_text_req.stop = stop_condition::text(text);
  by_text_req.key = "stop-by-text";
  auto by_text = tc.sample(by_text_req).get();
  REQUIRE(by_text);
  CHECK(by_text->stop_reason == "stop");
  CHECK(by_text->tokens.size() <= 2);
}

TEST_CASE("sample: without requested logprobs the accessor yields a typed error",
          "[runtime][contract]") {
  stack_fixture f;
  auto cfg = stack_fixture::config();
  cfg.request_logprobs = false;
  auto res = f.completer(cfg).sample(model_input{4}).get();
  REQUIRE(res);
  CHECK(!res->maybe_logprobs);
  require_error(res->logprobs(), errc::invalid_argument);
}

TEST_CASE("completer: an invalid configuration spawns nothing", "[runtime][contract]") {
  stack_fixture f;
  auto cfg = stack_fixture::config();
  cfg.temperature = 5;
  auto c = f.rt->make_completer(cfg);
  REQUIRE(!c);
  CHECK(code_of(c.error()) == errc::invalid_argument);
  CHECK(info_of(c.error())->field == "temperature");
  cfg = stack_fixture::config();
  cfg.lora = "emulator-lora";
  cfg.completion_window = "asap";
  REQUIRE(!f.rt->make_completer(cfg));
  CHECK(f.emu.snapshot().requests.empty());
}

TEST_CASE("completer: Sail's documented facts through the C++ API", "[runtime][contract][facts]") {
  stack_fixture f;
  // FACT (/loras): Kimi-K2.6 serves LoRAs (built-in table), on any window
  // but asap (FACT, /completion-windows), refused with Sail's own words.
  auto cfg = stack_fixture::config();
  cfg.model = "moonshotai/Kimi-K2.6";
  cfg.lora = "emulator-lora";
  for (auto w : {"priority", "balanced"}) {
    cfg.completion_window = w;
    auto tc = f.completer(cfg);
    REQUIRE(tc.sample(model_input{3, 4}).get());
  }
  cfg.completion_window = "asap";
  auto refused = f.rt->make_completer(cfg);
  REQUIRE(!refused);
  CHECK(info_of(refused.error())->field == "completion_window");
  CHECK(info_of(refused.error())->message == lora_asap_message);
  // An unknown model: nothing refused locally, the server judges.
  cfg.model = "example/unknown";
  cfg.completion_window = "balanced";
  cfg.lora = "not-registered";
  auto res = f.completer(cfg).sample(model_input{3}).get();
  require_error(res, errc::http_error);
  CHECK(info_of(res.error())->http_status == 404);
  cfg.lora.reset();
  cfg.completion_window = "tomorrow";
  res = f.completer(cfg).sample(model_input{3}).get();
  require_error(res, errc::http_error);
  CHECK(info_of(res.error())->http_status == 400);
  CHECK(info_of(res.error())->body.find("completion_window") != std::string::npos);
  CHECK(f.emu.snapshot().inference_runs_total == 2);
}

TEST_CASE("completer: adapter_config as an object or a string holding one",
          "[runtime][contract][lora]") {
  stack_fixture f;
  auto cfg = stack_fixture::config();
  cfg.tinker_lora_signed_url = "https://storage.example/ckpt.tar?sig=abc";
  for (auto form : {R"({"r":32,"peft_type":"LORA"})", R"("{\"r\":32,\"peft_type\":\"LORA\"}")"}) {
    cfg.adapter_config = form;
    auto tc = f.rt->make_token_completer(cfg);
    REQUIRE(tc);
    REQUIRE(tc->sample(model_input{1, 2}).get());
  }
  // On the wire both forms are the same canonical JSON text in a string.
  auto creates = sent_creates(f);
  REQUIRE(creates.size() == 2);
  for (auto& body : creates)
    CHECK(body.at("metadata").at("adapter_config") == R"({"r":32,"peft_type":"LORA"})");
  for (auto bad : {R"("[1]")", "[1]", R"("nope")"}) {
    cfg.adapter_config = bad;
    auto c = f.rt->make_completer(cfg);
    REQUIRE(!c);
    CHECK(info_of(c.error())->field == "adapter_config");
  }
}

TEST_CASE("sample: the stop forms on the wire as the seed normalises them",
          "[runtime][contract][stop]") {
  stack_fixture f;
  auto tc = f.completer();
  // An int is wrapped, a list stays a list, a bare string passes unchanged.
  REQUIRE(tc.sample(model_input{1}, stop_condition::token(7)).get());
  REQUIRE(tc.sample(model_input{1}, stop_condition::tokens({7, 8})).get());
  REQUIRE(tc.sample(model_input{1}, stop_condition::text("END")).get());
  REQUIRE(tc.sample(model_input{1}, stop_condition::texts({"END"})).get());
  auto creates = sent_creates(f);
  REQUIRE(creates.size() == 4);
  CHECK(boost::json::serialize(creates[0].at("stop")) == "[7]");
  CHECK(boost::json::serialize(creates[1].at("stop")) == "[7,8]");
  CHECK(boost::json::serialize(creates[2].at("stop")) == R"("END")");
  CHECK(boost::json::serialize(creates[3].at("stop")) == R"(["END"])");
}

TEST_CASE("sample: invalid input is refused before any request", "[runtime][contract]") {
  stack_fixture f;
  auto tc = f.completer();
  require_error(tc.sample(model_input{}).get(), errc::invalid_argument);
  require_error(tc.sample(model_input{-1}).get(), errc::invalid_argument);
  require_error(tc.sample(model_input{2147483648LL}).get(), errc::invalid_argument);
  auto mixed = prompt_request({1});
  mixed.stop.token_ids = {1};
  mixed.stop.strings = {"x"};
  require_error(tc.sample(mixed).get(), errc::invalid_argument);
  require_error(tc.sample(model_input{1}, {}, int64_t{0}).get(), errc::invalid_argument);
  CHECK(f.emu.snapshot().count("POST /v1/responses", 202) == 0);
}

TEST_CASE("sample: a registered LoRA works, an unknown one is an http_error with the body",
          "[runtime][contract][lora]") {
  stack_fixture f;
  auto cfg = stack_fixture::config();
  cfg.lora = "emulator-lora";
  REQUIRE(f.completer(cfg).sample(model_input{3}).get());
  cfg.lora = "no-such-lora";
  auto res = f.completer(cfg).sample(model_input{3}).get();
  require_error(res, errc::http_error);
  CHECK(info_of(res.error())->http_status == 404);
  CHECK(info_of(res.error())->body.find("lora") != std::string::npos);
}

TEST_CASE("sample: no API key is not_configured", "[runtime][contract]") {
  emulator::server emu{sail::test::test_emulator_options()};
  sail::system_config cfg;
  caf::actor_system sys{cfg};
  auto opts = sail::test::test_runtime_options(emu);
  opts.sail_api_key.clear();
  auto rt = runtime::start(sys, opts);
  require_error(rt, errc::not_configured);
}

TEST_CASE("runtime: out-of-range options are refused by start, naming the option",
          "[runtime][contract]") {
  // The C++ trainer's path: runtime::start runs runtime_options::validate(),
  // the same checks as the CLI's and the Python binding's.
  emulator::server emu{sail::test::test_emulator_options()};
  sail::system_config cfg;
  caf::actor_system sys{cfg};
  auto opts = sail::test::test_runtime_options(emu);
  opts.pool.adaptive.max_gap_factor = 0.5;
  auto rt = runtime::start(sys, opts);
  require_error(rt, errc::invalid_argument);
  CHECK(render(rt.error()).find("pool.adaptive-max-gap-factor") != std::string::npos);
  opts = sail::test::test_runtime_options(emu);
  opts.io_threads = 0;
  auto rt2 = runtime::start(sys, opts);
  require_error(rt2, errc::invalid_argument);
  CHECK(render(rt2.error()).find("sail.io-threads") != std::string::npos);
  CHECK(emu.snapshot().requests.empty());
}

TEST_CASE("sample: a wrong API key is an http_error 401", "[runtime][contract]") {
  stack_fixture f{sail::test::test_emulator_options(),
                  [](runtime_options& o) { o.sail_api_key = "sk_wrong_key_123456"; }};
  auto res = f.completer().sample(model_input{1}).get();
  require_error(res, errc::http_error);
  CHECK(info_of(res.error())->http_status == 401);
  CHECK(render(res.error()).find("sk_wrong_key_123456") == std::string::npos);
}

// -- faults ---------------------------------------------------------------------------

TEST_CASE("faults: retryable statuses and transport faults are retried, runs per key stay 1",
          "[runtime][faults]") {
  using emulator::fault_kind;
  for (auto kind : {fault_kind::status_429, fault_kind::status_529, fault_kind::status_502,
                    fault_kind::status_503, fault_kind::status_504,
                    fault_kind::connection_reset, fault_kind::truncated_body}) {
    DYNAMIC_SECTION("fault " << emulator::to_string(kind)) {
      auto eo = sail::test::test_emulator_options();
      eo.faults.retry_after = std::chrono::seconds(0);
      eo.faults.scripted = {kind, kind};
      eo.faults.routes = emulator::route_create;
      stack_fixture f{eo};
      auto res = f.completer().sample(model_input{1, 2, 3}).get();
      INFO((res ? std::string{"ok"} : render(res.error())));
      REQUIRE(res);
      auto st = f.emu.snapshot();
      CHECK(st.fault_count(kind) == 2);
      CHECK(st.max_runs_per_key == 1);
      CHECK(st.inference_runs.size() == 1);
      auto stats = f.pool_stats();
      uint64_t retries = 0;
      for (auto& [cause, n] : stats.retries_by_cause)
        if (cause != "pool_pause")
          retries += n;
      CHECK(retries == 2);
    }
  }
}

TEST_CASE("faults: polls survive transient faults", "[runtime][faults]") {
  auto eo = slow_emulator(std::chrono::milliseconds(30));
  eo.faults.routes = emulator::route_poll;
  eo.faults.scripted = {emulator::fault_kind::status_500, emulator::fault_kind::connection_reset,
                        emulator::fault_kind::status_503};
  stack_fixture f{eo};
  auto res = f.completer().sample(model_input{1, 2, 3}).get();
  REQUIRE(res);
  CHECK(f.emu.snapshot().max_runs_per_key == 1);
}

TEST_CASE("faults: 500 on create is not retried and arrives as http_error",
          "[runtime][faults]") {
  auto eo = sail::test::test_emulator_options();
  eo.faults.routes = emulator::route_create;
  eo.faults.scripted = {emulator::fault_kind::status_500};
  stack_fixture f{eo};
  auto res = f.completer().sample(model_input{1}).get();
  require_error(res, errc::http_error);
  CHECK(info_of(res.error())->http_status == 500);
  CHECK(f.emu.snapshot().count("POST /v1/responses", 500) == 1);
}

TEST_CASE("faults: malformed responses are inference_errors with the body attached",
          "[runtime][faults]") {
  using emulator::fault_kind;
  for (auto kind : {fault_kind::malformed_json, fault_kind::missing_token_ids,
                    fault_kind::logprob_mismatch}) {
    DYNAMIC_SECTION("fault " << emulator::to_string(kind)) {
      auto eo = sail::test::test_emulator_options();
      eo.faults.routes = emulator::route_create | emulator::route_poll;
      eo.faults.set(kind, 1.0);
      stack_fixture f{eo};
      auto res = f.completer().sample(model_input{1, 2}).get();
      require_error(res, errc::inference_error);
      CHECK(!info_of(res.error())->body.empty());
      CHECK(f.emu.snapshot().max_runs_per_key == 1);
    }
  }
}

TEST_CASE("faults: a slow response beyond the per-call timeout is retried",
          "[runtime][faults]") {
  auto eo = sail::test::test_emulator_options();
  eo.faults.routes = emulator::route_create;
  eo.faults.scripted = {emulator::fault_kind::slow_response};
  eo.faults.slow_delay = std::chrono::milliseconds(400);
  stack_fixture f{eo};
  auto cfg = stack_fixture::config();
  cfg.timeout = std::chrono::milliseconds(100);
  auto res = f.completer(cfg).sample(model_input{1, 2}).get();
  REQUIRE(res);
  CHECK(f.pool_stats().retries_by_cause["timeout"] == 1);
  CHECK(f.emu.snapshot().max_runs_per_key == 1);
}

TEST_CASE("deadline: a sample that cannot finish in time is a timeout error",
          "[runtime][deadline]") {
  stack_fixture f{slow_emulator(std::chrono::seconds(30)), [](runtime_options& o) {
                    o.pool.windows["priority"].deadline = std::chrono::milliseconds(200);
                  }};
  auto res = f.completer().sample(model_input{1}).get();
  require_error(res, errc::timeout);
}

TEST_CASE("faults: 30% injected 503s and resets, every sample completes once",
          "[runtime][faults][idempotency]") {
  auto eo = sail::test::test_emulator_options();
  eo.faults.set(emulator::fault_kind::status_503, 0.15)
    .set(emulator::fault_kind::connection_reset, 0.15);
  eo.faults.seed = 99;
  stack_fixture f{eo, [](runtime_options& o) { o.pool.retry.max_attempts = 12; }};
  auto tc = f.completer();
  std::vector<std::future<token_completer::sample_result>> futures;
  for (int64_t i = 0; i < 200; ++i)
    futures.push_back(tc.sample(model_input{i, i + 1}));
  for (auto& fut : futures) {
    auto res = fut.get();
    INFO((res ? std::string{"ok"} : render(res.error())));
    CHECK(res);
  }
  auto st = f.emu.snapshot();
  CHECK(st.inference_runs.size() == 200);
  CHECK(st.max_runs_per_key == 1);
  CHECK(st.fault_count(emulator::fault_kind::status_503) > 0);
  CHECK(st.fault_count(emulator::fault_kind::connection_reset) > 0);
}

// -- supervision ---------------------------------------------------------------------

TEST_CASE("supervision: worker crashes with 1,000 samples in flight lose nothing "
          "and run nothing twice",
          "[runtime][supervision]") {
  stack_fixture f{slow_emulator(std::chrono::milliseconds(300)), [](runtime_options& o) {
                    o.pool.max_in_flight = 2000;
                    o.pool.workers = 4;
                  }};
  auto tc = f.completer();
  std::vector<std::future<token_completer::sample_result>> futures;
  for (int64_t i = 0; i < 1000; ++i)
    futures.push_back(tc.sample(model_input{i % 60, i / 60 + 1}));
  REQUIRE(wait_for_pool(f, [](const completer_stats& s) { return s.in_flight == 1000; }));
  sail::test::crash_worker(*f.rt, 0);
  sail::test::crash_worker(*f.rt, 2);
  size_t ok = 0;
  for (auto& fut : futures) {
    auto res = fut.get();
    INFO((res ? std::string{"ok"} : render(res.error())));
    ok += res ? 1 : 0;
  }
  CHECK(ok == 1000);
  auto stats = f.pool_stats();
  CHECK(stats.retries_by_cause["worker_restart"] == 2);
  CHECK(stats.retries_by_cause["redispatch"] > 0);
  auto st = f.emu.snapshot();
  CHECK(st.inference_runs.size() == 1000);
  CHECK(st.max_runs_per_key == 1);
}

TEST_CASE("supervision: a poison sample is abandoned after the attempt cap",
          "[runtime][supervision]") {
  stack_fixture f{slow_emulator(std::chrono::seconds(30)), [](runtime_options& o) {
                    o.pool.workers = 1;
                    o.pool.max_dispatch_attempts = 2;
                  }};
  auto fut = f.completer().sample(model_input{1});
  REQUIRE(wait_for_pool(f, [](const completer_stats& s) { return s.in_flight == 1; }));
  sail::test::crash_worker(*f.rt, 0);
  REQUIRE(wait_for_pool(f, [](const completer_stats& s) {
    auto i = s.retries_by_cause.find("redispatch");
    return i != s.retries_by_cause.end() && i->second == 1;
  }));
  sail::test::crash_worker(*f.rt, 0);
  auto res = fut.get();
  require_error(res, errc::inference_error);
  CHECK(f.emu.snapshot().max_runs_per_key <= 1);
}

TEST_CASE("supervision: an abandoned sample frees its place for the next ones",
          "[runtime][supervision][admission]") {
  stack_fixture f{slow_emulator(std::chrono::seconds(30)), [](runtime_options& o) {
                    o.pool.workers = 1;
                    o.pool.max_in_flight = 1;
                    o.pool.max_queued = 1;
                    o.pool.max_dispatch_attempts = 1;
                  }};
  auto tc = f.completer();
  auto poison = tc.sample(model_input{1});
  REQUIRE(wait_for_emulator(f, [](const emulator::stats& s) {
    return s.count("POST /v1/responses", 202) == 1;
  }));
  sail::test::crash_worker(*f.rt, 0);
  require_error(poison.get(), errc::inference_error);
  // One runs, one waits, the third is refused: the limits hold as before.
  auto runs = tc.sample(model_input{2});
  auto waits = tc.sample(model_input{3});
  REQUIRE(wait_for_pool(f, [](const completer_stats& s) { return s.in_flight == 2; }));
  require_error(tc.sample(model_input{4}).get(), errc::overloaded);
  CHECK(wait_for_emulator(f, [](const emulator::stats& s) {
    return s.count("POST /v1/responses", 202) == 2;
  }));
  f.rt->shutdown();
  require_error(runs.get(), errc::cancelled);
  require_error(waits.get(), errc::cancelled);
}

TEST_CASE("supervision: a killed worker pool fails every caller with node_down, counted, "
          "and its workers end with it",
          "[runtime][supervision]") {
  // Nothing supervises the pool (docs/architecture.md, "Supervision"): when
  // it ends without stopping its work (killed, or a handler threw), every
  // waiting caller gets a typed node_down at once, and so does every later
  // sample; nothing is sent twice.
  stack_fixture f{slow_emulator(std::chrono::seconds(30))};
  auto tc = f.completer();
  auto futures = sample_n(tc, 5);
  REQUIRE(wait_for_emulator(f, [](const emulator::stats& s) {
    return s.count("POST /v1/responses", 202) == 5;
  }));
  auto& probe = sail::test::probe_of(*f.rt);
  std::vector<http_worker_actor> workers;
  for (size_t slot = 0; slot < f.rt->options().pool.workers; ++slot)
    workers.push_back(probe.worker(slot));
  caf::scoped_actor self{f.sys};
  for (auto& w : workers)
    self->monitor(w);
  self->send_exit(f.rt->pool(), caf::exit_reason::kill);
  for (auto& fut : futures)
    require_error(fut.get(), errc::node_down);
  require_error(tc.sample(model_input{9}).get(), errc::node_down);
  auto s = tc.stats();
  REQUIRE(s);
  CHECK(s->failed_by_kind["node_down"] == 6);
  CHECK(s->in_flight == 0);
  // No worker outlives its pool (none touches the HTTP client afterwards).
  size_t ended = 0;
  self->receive_for(ended, workers.size())([](caf::down_msg&) {});
  CHECK(ended == workers.size());
  auto st = f.emu.snapshot();
  CHECK(st.count("POST /v1/responses", 202) == 5);
  CHECK(st.max_runs_per_key <= 1);
}

TEST_CASE("supervision: a pool ended by an exit reason other than shutdown fails its "
          "callers with node_down",
          "[runtime][supervision]") {
  stack_fixture f{slow_emulator(std::chrono::seconds(30))};
  auto tc = f.completer();
  auto fut = tc.sample(model_input{1});
  REQUIRE(wait_for_pool(f, [](const completer_stats& s) { return s.in_flight == 1; }));
  caf::scoped_actor self{f.sys};
  self->send_exit(f.rt->pool(), caf::make_error(caf::sec::runtime_error,
                                                std::string{"ended by the test"}));
  auto res = fut.get();
  require_error(res, errc::node_down);
  CHECK(render(res.error()).find("ended by the test") != std::string::npos);
  require_error(tc.sample(model_input{2}).get(), errc::node_down);
  CHECK(f.emu.snapshot().max_runs_per_key <= 1);
}

// -- admission control ---------------------------------------------------------------------

TEST_CASE("backpressure: over the limit is overloaded at once", "[runtime][admission]") {
  stack_fixture f{slow_emulator(std::chrono::seconds(30)), [](runtime_options& o) {
                    o.pool.max_in_flight = 4;
                    o.pool.max_queued = 2;
                  }};
  auto tc = f.completer();
  std::vector<std::future<token_completer::sample_result>> held;
  for (int64_t i = 0; i < 6; ++i)
    held.push_back(tc.sample(model_input{i + 1}));
  REQUIRE(wait_for_pool(f, [](const completer_stats& s) { return s.in_flight == 6; }));
  auto res = tc.sample(model_input{42}).get();
  require_error(res, errc::overloaded);
  // Four were admitted and created; two wait; the seventh never left.
  CHECK(wait_for_emulator(f, [](const emulator::stats& s) {
    return s.count("POST /v1/responses", 202) == 4;
  }));
  CHECK(f.pool_stats().in_flight == 6);
  f.rt->shutdown();
  for (auto& fut : held)
    require_error(fut.get(), errc::cancelled);
}

TEST_CASE("backpressure: a 429 pauses new creates for the whole pool",
          "[runtime][admission]") {
  auto eo = sail::test::test_emulator_options();
  eo.faults.routes = emulator::route_create;
  eo.faults.scripted = {emulator::fault_kind::status_429};
  eo.faults.retry_after = std::chrono::seconds(1);
  stack_fixture f{eo};
  auto tc = f.completer();
  auto first = tc.sample(model_input{1});
  REQUIRE(wait_for_pool(f, [](const completer_stats& s) {
    return s.retries_by_cause.count("pool_pause") == 1;
  }));
  auto second = tc.sample(model_input{2});
  REQUIRE(first.get());
  REQUIRE(second.get());
  auto st = f.emu.snapshot();
  // Every create after the 429 arrived at least Retry-After later.
  double t429 = -1;
  std::vector<double> later;
  for (auto& [key, arrivals] : st.arrivals)
    for (auto& a : arrivals) {
      if (a.status == 429)
        t429 = a.ms;
      else
        later.push_back(a.ms);
    }
  REQUIRE(t429 >= 0);
  REQUIRE(later.size() == 2);
  for (auto ms : later)
    CHECK(ms - t429 >= 1000.0);
}

// -- cancellation and groups -------------------------------------------------------------

TEST_CASE("cancel: one sample by key, its caller gets cancelled", "[runtime][cancel]") {
  stack_fixture f{slow_emulator(std::chrono::seconds(30))};
  auto tc = f.completer();
  auto req = prompt_request({1, 2});
  req.key = "cancel-me";
  auto fut = tc.sample(req);
  auto other = tc.sample(prompt_request({3}));
  REQUIRE(wait_for_pool(f, [](const completer_stats& s) { return s.in_flight == 2; }));
  tc.cancel("cancel-me");
  require_error(fut.get(), errc::cancelled);
  REQUIRE(wait_for_pool(f, [](const completer_stats& s) { return s.in_flight == 1; }));
  f.rt->shutdown();
  require_error(other.get(), errc::cancelled);
}

TEST_CASE("groups: n samples share a prompt_cache_key and come back together",
          "[runtime][groups]") {
  stack_fixture f;
  auto tc = f.completer(stack_fixture::config(6));
  auto res = tc.sample_group(prompt_request({7, 8, 9}), 4).get();
  REQUIRE(res);
  CHECK(res->members.size() == 4);
  CHECK(!res->group_id.empty());
  for (auto& m : res->members) {
    REQUIRE(m.ok());
    CHECK(m.result->tokens.size() <= 6);
  }
  auto st = f.emu.snapshot();
  CHECK(st.inference_runs.size() == 4);
  CHECK(st.max_runs_per_key == 1);
}

TEST_CASE("groups: fail_group fails the group with the member's error",
          "[runtime][groups]") {
  auto eo = sail::test::test_emulator_options();
  eo.faults.routes = emulator::route_create;
  eo.faults.scripted = {emulator::fault_kind::status_500};
  stack_fixture f{eo};
  auto res = f.completer().sample_group(prompt_request({1}), 3).get();
  require_error(res, errc::http_error);
}

TEST_CASE("groups: partial returns successes with per-member errors", "[runtime][groups]") {
  auto eo = sail::test::test_emulator_options();
  eo.faults.routes = emulator::route_create;
  eo.faults.scripted = {emulator::fault_kind::status_500};
  stack_fixture f{eo, [](runtime_options& o) {
                    o.completer.group_policy = group_failure_policy::partial;
                  }};
  auto res = f.completer().sample_group(prompt_request({1}), 3).get();
  REQUIRE(res);
  size_t ok = 0, failed = 0;
  for (auto& m : res->members) {
    if (m.ok()) {
      ++ok;
    } else {
      ++failed;
      CHECK(code_of(m.error) == errc::http_error);
    }
  }
  CHECK(ok == 2);
  CHECK(failed == 1);
}

TEST_CASE("groups: cancelling the group cancels every member", "[runtime][groups][cancel]") {
  stack_fixture f{slow_emulator(std::chrono::seconds(30))};
  auto tc = f.completer();
  auto req = prompt_request({5});
  req.group_id = "g-1";
  auto fut = tc.sample_group(req, 3);
  REQUIRE(wait_for_pool(f, [](const completer_stats& s) { return s.in_flight == 3; }));
  tc.cancel("g-1");
  require_error(fut.get(), errc::cancelled);
  REQUIRE(wait_for_pool(f, [](const completer_stats& s) { return s.in_flight == 0; }));
}

TEST_CASE("stats: completed and in flight", "[runtime][stats]") {
  stack_fixture f;
  auto tc = f.completer();
  REQUIRE(tc.sample(model_input{1}).get());
  REQUIRE(!tc.sample(model_input{}).get());
  auto s = tc.stats();
  REQUIRE(s);
  CHECK(s->completed == 1);
  CHECK(s->in_flight == 0);
}

TEST_CASE("shutdown with work in flight never hangs and fails the work as cancelled",
          "[runtime][shutdown]") {
  stack_fixture f{slow_emulator(std::chrono::seconds(30))};
  auto tc = f.completer();
  auto futures = sample_n(tc, 20);
  REQUIRE(wait_for_pool(f, [](const completer_stats& s) { return s.in_flight == 20; }));
  f.rt->shutdown();
  for (auto& fut : futures)
    require_error(fut.get(), errc::cancelled);
}
