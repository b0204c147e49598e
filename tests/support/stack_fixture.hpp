// The whole in-process stack over real loopback sockets: the emulator, an
// actor system with sail's vocabulary, and a runtime (io threads, HTTP client,
// worker pool, resolver) pointed at the emulator.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/json/parse.hpp>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/actors/system_config.hpp"
#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/messages/error.hpp"
#include "support/pool_testing.hpp"

namespace sail::test {

/// Emulator options for tests: instant model, fixed seed, request log on.
inline emulator::options test_emulator_options() {
  emulator::options opts;
  opts.threads = 1;
  opts.request_log_capacity = 100'000;
  return opts;
}

/// Runtime options for tests: fast polling and retries, fixed seeds, and a
/// pool_probe watching the pool (support/pool_testing.hpp).
inline runtime_options test_runtime_options(const emulator::server& emu) {
  runtime_options opts;
  opts.sail_base_url = emu.base_url();
  opts.sail_api_key = emu.config().sail_api_key;
  opts.tinker_base_url = emu.base_url();
  opts.tinker_api_key = emu.config().tinker_api_key;
  opts.io_threads = 1;
  opts.pool.workers = 3;
  opts.pool.seed = 7;
  opts.pool.observer = std::make_shared<pool_probe>();
  for (auto& [window, timing] : opts.pool.windows) {
    timing.first_poll = std::chrono::milliseconds(2);
    timing.max_poll = std::chrono::milliseconds(20);
  }
  opts.pool.default_timing.first_poll = std::chrono::milliseconds(2);
  opts.pool.default_timing.max_poll = std::chrono::milliseconds(20);
  opts.pool.retry.base_delay = std::chrono::milliseconds(2);
  opts.pool.retry.max_delay = std::chrono::milliseconds(20);
  opts.resolver.retry.base_delay = std::chrono::milliseconds(2);
  opts.resolver.retry.max_delay = std::chrono::milliseconds(20);
  opts.resolver.retry.still_building_delay = std::chrono::milliseconds(5);
  opts.resolver.seed = 11;
  return opts;
}

struct stack_fixture {
  emulator::server emu;
  sail::system_config cfg;
  caf::actor_system sys{cfg};
  std::unique_ptr<runtime> rt;

  explicit stack_fixture(
    emulator::options emu_opts = test_emulator_options(),
    const std::function<void(runtime_options&)>& tweak = {})
    : emu(std::move(emu_opts)) {
    auto opts = test_runtime_options(emu);
    if (tweak)
      tweak(opts);
    auto started = runtime::start(sys, std::move(opts));
    if (!started)
      throw std::runtime_error("runtime did not start: " + render(started.error()));
    rt = std::move(*started);
  }

  ~stack_fixture() {
    rt->shutdown();
  }

  /// A valid configuration for the emulator's toy model.
  static completer_config config(int64_t max_tokens = 8) {
    completer_config c;
    c.model = "emulator/toy";
    c.max_tokens = max_tokens;
    return c;
  }

  token_completer completer(completer_config c = config()) {
    auto tc = rt->make_token_completer(std::move(c));
    if (!tc)
      throw std::runtime_error("completer rejected: " + render(tc.error()));
    return *tc;
  }

  /// The pool's counters (blocking request; fine in a test thread).
  completer_stats pool_stats() {
    caf::scoped_actor self{sys};
    completer_stats result;
    self->request(rt->pool(), std::chrono::seconds(10), atom::stats_v)
      .receive([&](completer_stats& s) { result = std::move(s); },
               [&](caf::error& err) {
                 throw std::runtime_error("pool stats: " + render(err));
               });
    return result;
  }
};

/// What the emulator's toy model answers for a prompt under a config, for
/// the create sent with Idempotency-Key `key` (the client sends no seed, so
/// the key is part of the sample).
inline emulator::sample_result expected_sample(const emulator::server& emu,
                                               const completer_config& c,
                                               std::vector<int64_t> prompt,
                                               int64_t max_tokens, std::string key,
                                               stop_condition stop = {}) {
  emulator::sample_params p;
  p.prompt = std::move(prompt);
  p.model = c.model;
  p.temperature = c.temperature;
  p.top_p = c.top_p;
  p.idempotency_key = std::move(key);
  p.max_output_tokens = max_tokens;
  p.stop_token_ids = stop.token_ids;
  p.stop_strings = stop.strings;
  return emulator::sample(p, emu.config().seed);
}

/// The Idempotency-Keys of the creates whose raw_prompt_tokens equal
/// `prompt`, from the emulator's request log (test_emulator_options turns it
/// on).
inline std::set<std::string> keys_of_prompt(const emulator::server& emu,
                                            const std::vector<int64_t>& prompt) {
  std::set<std::string> keys;
  for (auto& e : emu.request_log()) {
    if (e.method != "POST" || e.route != "POST /v1/responses")
      continue;
    boost::system::error_code ec;
    auto body = boost::json::parse(e.request_body, ec);
    if (ec || !body.is_object())
      continue;
    auto* raw = body.as_object().if_contains("raw_prompt_tokens");
    if (raw == nullptr || !raw->is_array())
      continue;
    std::vector<int64_t> tokens;
    for (auto& t : raw->as_array())
      if (t.is_int64())
        tokens.push_back(t.as_int64());
    if (tokens == prompt)
      keys.insert(e.header("Idempotency-Key"));
  }
  return keys;
}

/// Whether `tokens` is what the toy model answers for `prompt` under one of
/// the Idempotency-Keys the emulator saw with that prompt (prompts may repeat
/// across samples, each with its own key).
inline bool matches_model(const emulator::server& emu, const completer_config& c,
                          const std::vector<int64_t>& prompt, int64_t max_tokens,
                          const std::vector<int32_t>& tokens) {
  for (auto& key : keys_of_prompt(emu, prompt)) {
    auto want = expected_sample(emu, c, prompt, max_tokens, key);
    if (std::vector<int32_t>(want.token_ids.begin(), want.token_ids.end()) == tokens)
      return true;
  }
  return false;
}

/// The one Idempotency-Key sent with `prompt` (throws unless exactly one
/// distinct key carried it).
inline std::string key_of_prompt(const emulator::server& emu,
                                 const std::vector<int64_t>& prompt) {
  auto keys = keys_of_prompt(emu, prompt);
  if (keys.size() != 1)
    throw std::runtime_error("expected one Idempotency-Key for the prompt, found "
                             + std::to_string(keys.size()));
  return *keys.begin();
}

} // namespace sail::test
