// libFuzzer target for CAF deserialization of sail-tinker's message
// vocabulary: what a remote peer's bytes become on a node (BASP payloads) or
// on a trainer (replies). Every type of the type-ID block
// (messages/type_ids.hpp), a caf::error carrying a sail context, and a whole
// caf::message (as BASP delivers it: type names, then each element) go
// through caf::binary_deserializer with the node's actor system
// configuration (sail::system_config), so that every inspect() and its load
// callback runs exactly as on a node.
//
// Input: the first byte picks the type (modulo the number of choices), the
// rest is the serialized value. New choices go at the end, so that the
// committed regression inputs keep their meaning.
//
// After a successful load:
//   - the type's invariants hold (stop_condition never mixes ids and
//     strings, tokens_with_logprobs has non-negative tokens and one finite
//     logprob per token, completer_config has a finite temperature / top_p,
//     a sample_outcome holds exactly one of result and error; a
//     completer_stats' retry guard merges as the balancer merges the stats
//     of several nodes: counters add up, the breaker shows the worst known
//     state, the nearest probe wins);
//   - saving the value and loading it again gives the same bytes
//     (serialization is stable, nothing is lost or invented);
//   - stringification (logs, test output) works and never shows a signed
//     URL's query;
//   - what the published interfaces do next does not crash: obtain validates
//     the configuration like spawn_completer and encodes a request with it;
//     sample / sample_group validate the request and encode it with a valid
//     configuration. A configuration or request that passes validation must
//     encode (a gap between validation and encoding is a finding).
//
// SAIL_FUZZ_SEED_DIR=<dir>: LLVMFuzzerInitialize writes one seed per choice
// there (scripts/fuzz does this before every run, so the seeds follow the
// current types).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/deep_to_string.hpp>
#include <caf/message.hpp>

#include "fuzz_util.hpp"
#include "sail_tinker/actors/system_config.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/type_ids.hpp"
#include "sail_tinker/messages/validation.hpp"
#include "sail_tinker/net/sail_codec.hpp"
#include "sail_tinker/net/tinker_codec.hpp"

namespace {

using namespace sail;
using sail::fuzz::contains;
using sail::fuzz::require;

caf::actor_system* sys = nullptr;

constexpr std::string_view canary = "Zq7CanarySecret0xK";

// -- serialization helpers -------------------------------------------------------

template <class T>
std::vector<char> save(const T& x) {
  std::vector<char> buf;
  caf::binary_serializer sink{*sys, buf};
  auto err = sink(const_cast<T&>(x));
  require(!err, "a loaded value cannot be saved again");
  return buf;
}

template <class T>
caf::error load(const char* data, size_t size, T& x) {
  caf::binary_deserializer source{*sys, data, size};
  return source(x);
}

// -- what may be saved or printed again --------------------------------------------
//
// CAF 0.17.6 cannot save a non-finite float: pack754 loops forever on an
// infinity and converts a NaN to an integer (UB) -- CAF #1107, the reason the
// message types refuse non-finite doubles in their callbacks. Nor can it
// print a caf::duration whose unit is beyond nanoseconds: to_string reads out
// of bounds (this crashed a node through CAF's default handler, which prints
// unexpected messages; the actors a peer can reach now drop them unprinted,
// see tests/test_hostile_peer.cpp). A peer's message may carry such values
// anywhere (an element, an error's context, a nested message); a node never
// saves nor prints what it did not expect, so the round-trip and printing
// checks below only run on values made of types known to be safe, with every
// float finite (CAF's duration, stream, down/exit and config_value types are
// skipped).

bool saveable(const caf::message& msg, int depth);

bool saveable(const caf::error& err, int depth) {
  return !err || saveable(err.context(), depth + 1);
}

bool saveable(const sample_outcome& x, int depth) {
  return saveable(x.error, depth);
}

bool saveable(const std::vector<sample_outcome>& xs, int depth) {
  for (auto& x : xs)
    if (!saveable(x, depth))
      return false;
  return true;
}

bool saveable(const group_result& x, int depth) {
  return saveable(x.members, depth);
}

template <class T>
bool saveable(const T&, int) {
  return true;
}

template <class T>
bool is(const caf::message& msg, size_t i) {
  return msg.match_element<T>(i);
}

template <class... Ts>
bool one_of(const caf::message& msg, size_t i) {
  return (is<Ts>(msg, i) || ...);
}

bool saveable(const caf::message& msg, int depth) {
  if (depth > 64)
    return false;
  for (size_t i = 0; i < msg.size(); ++i) {
    if (is<float>(msg, i)) {
      if (!std::isfinite(msg.get_as<float>(i)))
        return false;
    } else if (is<double>(msg, i)) {
      if (!std::isfinite(msg.get_as<double>(i)))
        return false;
    } else if (is<long double>(msg, i)) {
      if (!std::isfinite(msg.get_as<long double>(i)))
        return false;
    } else if (is<caf::error>(msg, i)) {
      if (!saveable(msg.get_as<caf::error>(i), depth))
        return false;
    } else if (is<caf::message>(msg, i)) {
      if (!saveable(msg.get_as<caf::message>(i), depth + 1))
        return false;
    } else if (is<sample_outcome>(msg, i)) {
      if (!saveable(msg.get_as<sample_outcome>(i), depth))
        return false;
    } else if (is<group_result>(msg, i)) {
      if (!saveable(msg.get_as<group_result>(i), depth))
        return false;
    } else if (is<std::vector<sample_outcome>>(msg, i)) {
      if (!saveable(msg.get_as<std::vector<sample_outcome>>(i), depth))
        return false;
    } else if (!one_of<bool, int8_t, uint8_t, int16_t, uint16_t, int32_t, uint32_t, int64_t,
                       uint64_t, caf::atom_value, std::string, std::u16string,
                       std::u32string, caf::timespan, caf::timestamp,
                       std::vector<std::string>, std::map<std::string, std::string>,
                       std::set<std::string>, caf::actor, caf::actor_addr,
                       caf::strong_actor_ptr, caf::node_id, error_info, voyage,
                       model_input, stop_condition, tokens_with_logprobs, tinker_path,
                       signed_url, resolve_request, completer_config, sample_request,
                       http_header, sail_job, completer_stats, completer_actor,
                       sample_observer_actor, webhook_endpoint,
                       std::vector<tokens_with_logprobs>, std::vector<sample_request>,
                       std::vector<http_header>>(msg, i)) {
      return false;
    }
  }
  return true;
}

/// Save, load, save: the bytes must not change.
template <class T>
T round_trip(const T& x) {
  auto bytes = save(x);
  T y{};
  auto err = load(bytes.data(), bytes.size(), y);
  require(!err, "a saved value does not load again");
  require(save(y) == bytes, "save/load/save changes the bytes");
  return y;
}

// -- the published interfaces' next steps ----------------------------------------

completer_config valid_config() {
  completer_config cfg;
  cfg.model = "Qwen/Qwen3-8B";
  cfg.max_tokens = 16;
  return cfg;
}

sample_request valid_request() {
  sample_request req;
  req.prompt = model_input{1, 2, 3};
  return req;
}

/// What obtain does with a configuration (runtime::make_completer ->
/// spawn_completer), then what the completer does with its first sample.
void obtain(completer_config cfg) {
  if (auto err = validate(cfg)) {
    fuzz::require_kind(err, errc::invalid_argument, "config refused untyped");
    return;
  }
  if (cfg.adapter_config) {
    auto normalized = normalize_adapter_config(*cfg.adapter_config);
    require(static_cast<bool>(normalized), "validated adapter_config does not normalize");
    cfg.adapter_config = std::move(*normalized);
  }
  if (cfg.tinker_checkpoint) {
    auto parsed = parse_tinker_path(*cfg.tinker_checkpoint);
    if (!parsed) {
      fuzz::require_kind(parsed.error(), errc::invalid_argument,
                         "tinker_checkpoint refused untyped");
      return;
    }
    // The completer encodes with the resolved URL in place of the path.
    cfg.tinker_lora_signed_url = "https://archive.example/ckpt.tar?sig=x";
    cfg.tinker_checkpoint.reset();
    cfg.tinker_ttl_seconds.reset();
  }
  auto req = valid_request();
  auto encoded = encode_create(cfg, req, "fuzz-key-0001");
  require(static_cast<bool>(encoded), "a validated configuration does not encode");
}

/// What a completer does with a sample request of a remote trainer.
void sample(sample_request req) {
  if (auto err = validate(req)) {
    fuzz::require_kind(err, errc::invalid_argument, "request refused untyped");
    return;
  }
  auto key = req.key.empty() ? std::string{"fuzz-key-0001"} : req.key;
  auto encoded = encode_create(valid_config(), req, key);
  require(static_cast<bool>(encoded), "a validated request does not encode");
}

// -- invariants per type ---------------------------------------------------------

template <class T>
void check_invariants(const T&) {
  // No invariant beyond a successful load.
}

void check_invariants(const stop_condition& x) {
  require(x.token_ids.empty() || x.strings.empty(), "stop_condition mixes ids and strings");
}

void check_invariants(const tokens_with_logprobs& x) {
  for (auto t : x.tokens)
    require(t >= 0, "negative token id");
  if (x.maybe_logprobs) {
    require(x.maybe_logprobs->size() == x.tokens.size(), "logprob count differs from tokens");
    for (auto lp : *x.maybe_logprobs)
      require(std::isfinite(lp), "non-finite logprob");
  }
  if (x.usage)
    require(x.usage->valid(), "negative usage or cached tokens over input tokens");
}

void check_invariants(const completer_config& x) {
  require(std::isfinite(x.temperature) && std::isfinite(x.top_p),
          "non-finite temperature or top_p");
  obtain(x);
  // The signed URL's query never shows in logs (checked with a canary query
  // when the canary is nowhere in the value yet: other fields show as they
  // are).
  auto shown = x;
  if (!shown.tinker_lora_signed_url || contains(caf::deep_to_string(x), canary))
    return;
  *shown.tinker_lora_signed_url += "?sig=";
  *shown.tinker_lora_signed_url += canary;
  require(!contains(caf::deep_to_string(shown), canary),
          "stringified config shows the signed URL's query");
}

void check_invariants(const sample_request& x) {
  check_invariants(x.stop);
  sample(x);
}

void check_invariants(const sample_outcome& x) {
  require(x.result.has_value() != static_cast<bool>(x.error),
          "sample_outcome holds not exactly one of result and error");
  if (x.result)
    check_invariants(*x.result);
  if (saveable(x.error, 0))
    (void) render(x.error);
}

void check_invariants(const group_result& x) {
  for (auto& m : x.members)
    check_invariants(m);
}

/// What the balancer does with the stats of every node (merge_into).
void check_invariants(const completer_stats& x) {
  retry_guard_stats sum;
  merge_into(sum, x.pool.guard);
  merge_into(sum, x.pool.guard);
  const auto& g = x.pool.guard;
  require(sum.breaker == "closed" || sum.breaker == g.breaker,
          "merged breaker state from nowhere");
  require((g.breaker != "open" && g.breaker != "half_open") || sum.breaker == g.breaker,
          "merged breaker hides a worse state");
  require(sum.next_probe_ms == (g.next_probe_ms > 0 ? g.next_probe_ms : 0),
          "merged next probe from nowhere");
  require(sum.breaker_opened == 2 * g.breaker_opened && sum.probes == 2 * g.probes
            && sum.held == 2 * g.held && sum.rejected == 2 * g.rejected
            && sum.budget_requests == 2 * g.budget_requests
            && sum.budget_retries == 2 * g.budget_retries
            && sum.budget_allowed == 2 * g.budget_allowed
            && sum.budget_denied == 2 * g.budget_denied,
          "merged guard counters do not add up");
}

void check_invariants(const signed_url& x) {
  if (contains(caf::deep_to_string(x), canary))
    return;
  auto shown = x;
  shown.url += "?sig=";
  shown.url += canary;
  require(!contains(caf::deep_to_string(shown), canary),
          "stringified signed_url shows its query");
}

void check_invariants(const caf::error& x) {
  if (!saveable(x, 0))
    return;
  (void) render(x);
  // CAF's rendering through the registered renderers (sail::render_error for
  // the "sail" category), as in CAF's own log and exit messages.
  (void) sys->render(x);
  if (code_of(x))
    (void) info_of(x);
}

template <class T>
void check_invariants(const std::vector<T>& xs) {
  for (auto& x : xs)
    check_invariants(x);
}

/// Loads a T from the input; on success checks it, its round trip, and its
/// stringification.
template <class T>
void fuzz_one(const char* data, size_t size) {
  T x{};
  if (load(data, size, x))
    return;
  check_invariants(x);
  if (!saveable(x, 0))
    return;
  (void) caf::deep_to_string(x);
  auto y = round_trip(x);
  check_invariants(y);
}

// -- whole messages --------------------------------------------------------------

template <class T>
void check_element(const caf::message& msg, size_t i) {
  if (msg.match_element<T>(i))
    check_invariants(msg.get_as<T>(i));
}

template <class... Ts>
void check_elements(const caf::message& msg, size_t i) {
  (check_element<Ts>(msg, i), ...);
}

bool is_atom(const caf::message& msg, size_t i, caf::atom_value what) {
  return msg.match_element<caf::atom_value>(i) && msg.get_as<caf::atom_value>(i) == what;
}

void fuzz_message(const char* data, size_t size) {
  caf::message msg;
  if (load(data, size, msg))
    return;
  for (size_t i = 0; i < msg.size(); ++i)
    check_elements<error_info, voyage, model_input, stop_condition, tokens_with_logprobs,
                   tinker_path, signed_url, resolve_request, completer_config,
                   sample_request, sample_outcome, group_result, http_header, sail_job,
                   completer_stats, sample_observer_actor, webhook_endpoint,
                   std::vector<tokens_with_logprobs>,
                   std::vector<sample_request>, std::vector<sample_outcome>,
                   std::vector<http_header>, caf::error>(msg, i);
  // The handlers of the published interfaces (completer_service_actor,
  // completer_actor) did their own checks above (obtain / sample); here the
  // group size rule of sample_group.
  if (msg.size() == 3 && is_atom(msg, 0, atom::sample_group::value)
      && msg.match_element<sample_request>(1) && msg.match_element<uint32_t>(2))
    (void) (msg.get_as<uint32_t>(2) == 0);
  if (!saveable(msg, 0))
    return;
  (void) caf::to_string(msg);
  auto bytes = save(msg);
  caf::message again;
  require(!load(bytes.data(), bytes.size(), again), "a saved message does not load again");
  require(save(again) == bytes, "message save/load/save changes the bytes");
}

// -- dispatch --------------------------------------------------------------------

using fuzz_fn = void (*)(const char*, size_t);

const fuzz_fn choices[] = {
  fuzz_one<error_info>,
  fuzz_one<voyage>,
  fuzz_one<model_input>,
  fuzz_one<stop_condition>,
  fuzz_one<tokens_with_logprobs>,
  fuzz_one<tinker_path>,
  fuzz_one<signed_url>,
  fuzz_one<resolve_request>,
  fuzz_one<completer_config>,
  fuzz_one<sample_request>,
  fuzz_one<sample_outcome>,
  fuzz_one<group_result>,
  fuzz_one<http_header>,
  fuzz_one<sail_job>,
  fuzz_one<completer_stats>,
  fuzz_one<completer_actor>,
  fuzz_one<std::vector<tokens_with_logprobs>>,
  fuzz_one<std::vector<sample_request>>,
  fuzz_one<std::vector<sample_outcome>>,
  fuzz_one<std::vector<http_header>>,
  fuzz_one<caf::error>,
  fuzz_message,
  // Added after the first long run (appended: earlier inputs keep their
  // choice).
  fuzz_one<sample_observer_actor>,
  fuzz_one<webhook_endpoint>,
};

constexpr size_t n_choices = sizeof(choices) / sizeof(choices[0]);

// -- seeds -----------------------------------------------------------------------

template <class T>
void write_seed(const std::string& dir, size_t choice, const T& x) {
  static size_t counter = 0;
  auto bytes = save(x);
  std::string path = dir + "/seed_" + std::to_string(choice) + "_"
                     + std::to_string(counter++);
  std::ofstream out{path, std::ios::binary};
  out.put(static_cast<char>(choice));
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void write_seeds(const std::string& dir) {
  auto cfg = valid_config();
  cfg.lora = "my-adapter";
  cfg.metadata = {{"run", "r1"}};
  cfg.timeout = std::chrono::seconds(30);
  cfg.voyage = voyage{"v1", std::string{"s1"}, std::nullopt};
  auto req = valid_request();
  req.stop = stop_condition::texts({"</s>", "\n\n"});
  req.max_tokens = 8;
  req.key = "key-1";
  req.group_id = "g1";
  tokens_with_logprobs twl{{5, 6, 7}, std::vector<double>{-0.1, -2.5, 0.0}, "stop",
                           sample_usage{12, 8, 3, 1}};
  sample_outcome ok_member{twl, caf::error{}};
  sample_outcome failed_member{std::nullopt, http_error(503, "{\"error\":{}}")};
  group_result group{"g1", {ok_member, failed_member}};
  completer_stats stats;
  stats.in_flight = 1;
  stats.completed = 2;
  stats.pool.polls = 3;
  stats.failed_by_kind = {{"timeout", 1}};
  stats.pool.retries_by_cause = {{"http_429", 2}};
  stats.pool.guard.breaker = "open";
  stats.pool.guard.breaker_opened = 2;
  stats.pool.guard.next_probe_ms = 1500;
  stats.pool.guard.probes = 3;
  stats.pool.guard.held = 4;
  stats.pool.guard.rejected = 5;
  stats.pool.guard.budget_requests = 100;
  stats.pool.guard.budget_retries = 20;
  stats.pool.guard.budget_allowed = 30;
  stats.pool.guard.budget_denied = 6;
  usage_entry(stats.usage, "Qwen/Qwen3-8B", "flex").add(sample_usage{12, 8, 3, 1});
  usage_entry(stats.usage, "Qwen/Qwen3-8B", "flex").add(std::nullopt);
  sail_job job{"k", "{}", {{"Content-Type", "application/json"}}, "priority", "g", {}, {}, {},
               {}, {}, {}, {}};
  job.url_expires = caf::timestamp{std::chrono::seconds(1'750'000'000)};
  job.response_id = "resp_0123";
  // Attach: a sample with the response id of an earlier create.
  auto attach = req;
  attach.response_id = "resp_0123";
  sample_outcome unavailable_member{
    std::nullopt, make_error(errc::unavailable, "the circuit breaker is open; next probe in 1.5 s")};
  sample_outcome io_member{std::nullopt, make_error(errc::io_error, "cannot write", "output")};
  size_t i = 0;
  write_seed(dir, i++, error_info{"boom", "field", 429, "body"});
  write_seed(dir, i++, *cfg.voyage);
  write_seed(dir, i++, req.prompt);
  write_seed(dir, i++, stop_condition::tokens({2, 3}));
  write_seed(dir, i++, twl);
  write_seed(dir, i++, tinker_path{"run", "weights", "step-1"});
  write_seed(dir, i++, signed_url{"https://a.example/x.tar?sig=1", caf::timestamp{}});
  write_seed(dir, i++, resolve_request{tinker_path{"run", "weights", "n"}, 60});
  write_seed(dir, i++, cfg);
  write_seed(dir, i++, req);
  write_seed(dir, i++, failed_member);
  write_seed(dir, i++, group);
  write_seed(dir, i++, http_header{"Idempotency-Key", "k"});
  write_seed(dir, i++, job);
  write_seed(dir, i++, stats);
  write_seed(dir, i++, completer_actor{});
  write_seed(dir, i++, std::vector<tokens_with_logprobs>{twl, twl});
  write_seed(dir, i++, std::vector<sample_request>{req});
  write_seed(dir, i++, group.members);
  write_seed(dir, i++, job.headers);
  write_seed(dir, i++, invalid_argument("prompt", "empty"));
  // Whole messages as the published interfaces receive and answer them.
  auto msg_choice = i++;
  write_seed(dir, msg_choice, caf::make_message(atom::obtain_v, cfg));
  write_seed(dir, msg_choice, caf::make_message(atom::sample_v, req));
  write_seed(dir, msg_choice, caf::make_message(atom::sample_group_v, req, uint32_t{4}));
  write_seed(dir, msg_choice, caf::make_message(atom::cancel_v, std::string{"g1"}));
  write_seed(dir, msg_choice, caf::make_message(atom::stats_v));
  write_seed(dir, msg_choice, caf::make_message(twl));
  write_seed(dir, msg_choice, caf::make_message(group));
  write_seed(dir, msg_choice, caf::make_message(stats));
  write_seed(dir, msg_choice, caf::make_message(http_error(429, "slow down")));
  // What main added since: attach (response_id) and the observer's message,
  // the retry guard in the stats, errc::io_error / unavailable.
  write_seed(dir, msg_choice, caf::make_message(atom::sample_v, attach));
  write_seed(dir, msg_choice, caf::make_message(atom::accepted_v, std::string{"key-1"},
                                                std::string{"resp_0123"}));
  write_seed(dir, msg_choice, caf::make_message(
                                group_result{"g1", {ok_member, unavailable_member, io_member}}));
  write_seed(dir, msg_choice, caf::make_message(make_error(errc::unavailable, "open")));
  write_seed(dir, msg_choice, caf::make_message(job));
  write_seed(dir, msg_choice, caf::make_message(sample_observer_actor{}));
  write_seed(dir, 9, attach);
  write_seed(dir, 10, unavailable_member);
  write_seed(dir, 10, io_member);
  write_seed(dir, 20, make_error(errc::io_error, "cannot read", "input"));
  write_seed(dir, 20, make_error(errc::unavailable, "the circuit breaker is open"));
  write_seed(dir, i++, sample_observer_actor{});
  // The node's webhook endpoint (obtain's answer, a request's pinned hook).
  webhook_endpoint hook{"https://node-1.example/sail/webhook", "whk_0123456789abcdef"};
  write_seed(dir, i++, hook);
  write_seed(dir, msg_choice, caf::make_message(completer_actor{}, hook));
  auto hooked = req;
  hooked.webhook = hook;
  write_seed(dir, msg_choice, caf::make_message(atom::sample_v, hooked));
  require(i == n_choices, "write_seeds does not cover every choice");
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  static sail::system_config cfg;
  // The scheduler is never used; keep its threads to a minimum.
  cfg.set("scheduler.max-threads", size_t{1});
  sys = new caf::actor_system{cfg};
  if (auto dir = std::getenv("SAIL_FUZZ_SEED_DIR"))
    write_seeds(dir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  choices[data[0] % n_choices](reinterpret_cast<const char*>(data + 1), size - 1);
  return 0;
}
