// Plain message types of sail-tinker: what trainers, completers, workers,
// the resolver and remote nodes exchange. No behaviour beyond accessors and
// the invariants checked while deserializing (load callbacks), so that a
// malformed or non-finite value is refused at a node boundary.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/save_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/sec.hpp>
#include <caf/timespan.hpp>
#include <caf/timestamp.hpp>
#include <caf/typed_actor.hpp>
#include <caf/replies_to.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/fwd.hpp"
#include "sail_tinker/messages/inspect_util.hpp"

namespace sail {

/// Largest token id Sail accepts (OpenAPI: 0..2147483647).
inline constexpr int64_t max_token_id = 2147483647;

/// Largest prompt Sail accepts (OpenAPI: raw_prompt_tokens 1..2,000,000).
inline constexpr size_t max_prompt_tokens = 2'000'000;

// -- voyage --------------------------------------------------------------------

/// Attributes requests to a Sail Voyage (sent as X-Sail-Voyage-* headers).
struct voyage {
  std::string id;
  std::optional<std::string> span_id;
  std::optional<std::string> agent_id;

  friend bool operator==(const voyage&, const voyage&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, voyage& x) {
  detail::optional_ref<std::string> span{x.span_id};
  detail::optional_ref<std::string> agent{x.agent_id};
  return f(caf::meta::type_name("sail.voyage"), x.id, span, agent);
}

// -- model input -----------------------------------------------------------------

/// A prompt as token ids (Tinker's ModelInput.to_ints()). int64_t so that an
/// out-of-range id is representable and rejected by validation with a typed
/// error instead of being silently truncated.
struct model_input {
  std::vector<int64_t> tokens;

  model_input() = default;
  model_input(std::vector<int64_t> xs) : tokens(std::move(xs)) {}
  model_input(std::initializer_list<int64_t> xs) : tokens(xs) {}

  friend bool operator==(const model_input&, const model_input&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, model_input& x) {
  return f(caf::meta::type_name("sail.model_input"), x.tokens);
}

// -- stop condition --------------------------------------------------------------

/// The stop condition as Sail's helper normalises it (/sdk-tinker; the
/// Python stop forms): none; token ids (a single int becomes a one-element list); a
/// bare string (sent as a string, not wrapped); or a list of strings. Ints
/// and strings never mix (construction enforces it, and deserialization
/// refuses a value that breaks it).
struct stop_condition {
  enum class kind : uint8_t { none = 0, token_ids = 1, strings = 2, text = 3 };

  std::vector<int64_t> token_ids;
  std::vector<std::string> strings;
  /// `strings` holds exactly one string, sent bare ("stop": "x") rather than
  /// as a list: the seed passes any value that is not an int or a list
  /// through unchanged.
  bool bare_string = false;

  stop_condition() = default;

  static stop_condition none() { return {}; }
  /// A single int becomes a one-element list.
  static stop_condition token(int64_t id) { return tokens({id}); }
  static stop_condition tokens(std::vector<int64_t> ids);
  /// A single string, sent as a string.
  static stop_condition text(std::string s);
  /// A list of strings, sent as a list (also with one element).
  static stop_condition texts(std::vector<std::string> xs);

  kind which() const noexcept {
    if (!token_ids.empty())
      return kind::token_ids;
    if (strings.empty())
      return kind::none;
    return bare_string ? kind::text : kind::strings;
  }

  bool empty() const noexcept { return token_ids.empty() && strings.empty(); }

  friend bool operator==(const stop_condition&, const stop_condition&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stop_condition& x) {
  auto check = [&x]() -> caf::error {
    if (!x.token_ids.empty() && !x.strings.empty())
      return caf::sec::invalid_argument;
    if (x.bare_string && x.strings.size() != 1)
      return caf::sec::invalid_argument;
    return caf::none;
  };
  return f(caf::meta::type_name("sail.stop_condition"),
           caf::meta::save_callback(check), x.token_ids, x.strings,
           x.bare_string, caf::meta::load_callback(check));
}

// -- sample output ---------------------------------------------------------------

/// The tokens Sail billed for one sample: its ResponseObject's `usage`
/// (input_tokens, input_tokens_details.cached_tokens, output_tokens,
/// output_tokens_details.reasoning_tokens; docs/wire-contract.md, "Usage").
/// Cached input is part of input (never more than it). Where a sample has
/// none of this, its usage is unknown (std::nullopt), never zero.
struct sample_usage {
  int64_t input_tokens = 0;
  int64_t cached_tokens = 0;
  int64_t output_tokens = 0;
  int64_t reasoning_tokens = 0;

  /// Every count >= 0 and cached_tokens <= input_tokens.
  bool valid() const noexcept {
    return input_tokens >= 0 && cached_tokens >= 0 && output_tokens >= 0
           && reasoning_tokens >= 0 && cached_tokens <= input_tokens;
  }

  friend bool operator==(const sample_usage&, const sample_usage&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sample_usage& x) {
  auto check = [&x]() -> caf::error {
    if (!x.valid())
      return caf::sec::invalid_argument;
    return caf::none;
  };
  return f(caf::meta::type_name("sail.sample_usage"), caf::meta::save_callback(check),
           x.input_tokens, x.cached_tokens, x.output_tokens, x.reasoning_tokens,
           caf::meta::load_callback(check));
}

/// Result of one sample: tokens, optional per-token logprobs, stop reason,
/// and the usage Sail billed for it (nullopt: unknown).
struct tokens_with_logprobs {
  std::vector<int32_t> tokens;
  std::optional<std::vector<double>> maybe_logprobs;
  std::string stop_reason;
  std::optional<sample_usage> usage = std::nullopt;

  /// The logprobs, or invalid_argument when the response carried none (the
  /// Python property raises ValueError).
  caf::expected<std::vector<double>> logprobs() const;

  friend bool operator==(const tokens_with_logprobs&,
                         const tokens_with_logprobs&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tokens_with_logprobs& x) {
  auto check = [&x]() -> caf::error {
    for (auto t : x.tokens)
      if (t < 0)
        return caf::sec::invalid_argument;
    if (x.maybe_logprobs
        && (x.maybe_logprobs->size() != x.tokens.size()
            || !detail::all_finite(*x.maybe_logprobs)))
      return caf::sec::invalid_argument;
    return caf::none;
  };
  detail::optional_ref<std::vector<double>> lps{x.maybe_logprobs};
  detail::optional_ref<sample_usage> use{x.usage};
  return f(caf::meta::type_name("sail.tokens_with_logprobs"),
           caf::meta::save_callback(check), x.tokens, lps, x.stop_reason, use,
           caf::meta::load_callback(check));
}

// -- tinker ----------------------------------------------------------------------

/// tinker://<training_run_id>/<kind>/<name>
struct tinker_path {
  std::string run_id;
  std::string kind;  ///< weights | sampler_weights | external_weights
  std::string name;

  /// "<kind>/<name>": contains a slash and goes into URL paths unencoded.
  std::string checkpoint_id() const { return kind + '/' + name; }

  /// The canonical "tinker://run/kind/name" form.
  std::string to_uri() const {
    return "tinker://" + run_id + '/' + kind + '/' + name;
  }

  friend bool operator==(const tinker_path&, const tinker_path&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tinker_path& x) {
  return f(caf::meta::type_name("sail.tinker_path"), x.run_id, x.kind, x.name);
}

/// A signed archive URL, the moment it stops working, and when its holders
/// replace it. The resolver sets `refresh_at` and `use_until` from its one
/// refresh margin (resolver_options::refresh_margin), so that its cache and
/// every completer follow the same schedule: a completer starts a background
/// refresh at refresh_at and sends the URL in new requests until use_until,
/// never later (see with_refresh_schedule).
struct signed_url {
  std::string url;
  caf::timestamp expires{};
  caf::timestamp refresh_at{};
  caf::timestamp use_until{};

  friend bool operator==(const signed_url&, const signed_url&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, signed_url& x) {
  detail::secret_ref url{x.url};
  return f(caf::meta::type_name("sail.signed_url"), url, x.expires,
           x.refresh_at, x.use_until);
}

/// Sets url.refresh_at = expires - 2m and url.use_until = expires - m, where
/// m = min(margin, (expires - now) / 4): a URL that lives shorter than four
/// margins is refreshed halfway through its life, not in a tight loop.
signed_url with_refresh_schedule(signed_url url, caf::timespan margin,
                                 caf::timestamp now);

/// Resolver input: a checkpoint and an optional TTL to set first.
struct resolve_request {
  tinker_path path;
  std::optional<int64_t> ttl_seconds;

  friend bool operator==(const resolve_request&, const resolve_request&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, resolve_request& x) {
  detail::optional_ref<int64_t> ttl{x.ttl_seconds};
  return f(caf::meta::type_name("sail.resolve_request"), x.path, ttl);
}

// -- completer configuration -------------------------------------------------------

/// Everything a completer owns (SailTokenCompleter's parameters, /sdk-tinker).
struct completer_config {
  std::string model;
  int64_t max_tokens = 0;
  double temperature = 1.0;
  double top_p = 1.0;
  std::string completion_window = "priority";
  std::optional<std::string> lora;
  std::optional<std::string> tinker_lora_signed_url;
  /// JSON object text; set_adapter_config() accepts either form of the
  /// contract (an object, or a string holding JSON).
  std::optional<std::string> adapter_config;
  std::optional<std::string> tinker_lora_name;
  /// Instead of a ready signed URL: a tinker:// checkpoint path that the
  /// completer resolves (and refreshes before expiry) through the resolver.
  std::optional<std::string> tinker_checkpoint;
  /// TTL to set on that checkpoint before resolving it.
  std::optional<int64_t> tinker_ttl_seconds;
  std::map<std::string, std::string> metadata;
  /// Per-HTTP-call timeout.
  std::optional<caf::timespan> timeout;
  std::optional<sail::voyage> voyage;
  bool request_logprobs = true;

  /// True if a LoRA adapter of any source is configured.
  bool uses_lora() const noexcept {
    return lora.has_value() || tinker_lora_signed_url.has_value()
           || tinker_checkpoint.has_value();
  }

  friend bool operator==(const completer_config&, const completer_config&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, completer_config& x) {
  // Non-finite doubles must never cross a node link (CAF #1107).
  auto check = [&x]() -> caf::error {
    if (!std::isfinite(x.temperature) || !std::isfinite(x.top_p))
      return caf::sec::invalid_argument;
    return caf::none;
  };
  detail::optional_ref<std::string> lora{x.lora};
  detail::optional_secret_ref url{x.tinker_lora_signed_url};
  detail::optional_ref<std::string> adapter{x.adapter_config};
  detail::optional_ref<std::string> name{x.tinker_lora_name};
  detail::optional_ref<std::string> ckpt{x.tinker_checkpoint};
  detail::optional_ref<int64_t> ttl{x.tinker_ttl_seconds};
  detail::optional_ref<caf::timespan> timeout{x.timeout};
  detail::optional_ref<sail::voyage> voy{x.voyage};
  return f(caf::meta::type_name("sail.completer_config"),
           caf::meta::save_callback(check), x.model, x.max_tokens,
           x.temperature, x.top_p, x.completion_window, lora, url, adapter,
           name, ckpt, ttl, x.metadata, timeout, voy, x.request_logprobs,
           caf::meta::load_callback(check));
}

// -- completion webhooks ---------------------------------------------------------

/// Where a sample's completion webhook goes: Sail's metadata.completion_webhook
/// and metadata.webhook_token (docs.sailresearch.com/webhooks). Empty url: none.
struct webhook_endpoint {
  std::string url;
  std::string token;

  bool empty() const noexcept {
    return url.empty();
  }

  friend bool operator==(const webhook_endpoint&, const webhook_endpoint&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, webhook_endpoint& x) {
  detail::token_ref token{x.token};
  return f(caf::meta::type_name("sail.webhook_endpoint"), x.url, token);
}

// -- sample requests -------------------------------------------------------------

/// Hears (Idempotency-Key, response id) as soon as Sail accepted a sample's
/// create, before the sample completes: what a journal needs to poll the
/// sample after a crash instead of creating it again. The worker that made
/// the create sends it (one-way, `caf::anon_send`); across nodes the handle
/// travels with the sample_request, so a remote worker reaches it too.
using sample_observer_actor
  = caf::typed_actor<caf::reacts_to<atom::accepted, std::string, std::string>>;

/// One logical sample. `key` is its Idempotency-Key: empty means "let the
/// completer make one"; a caller that re-routes a sample (to another node,
/// after a crash) keeps the key so that Sail replays instead of re-running.
struct sample_request {
  model_input prompt;
  stop_condition stop;
  /// Per-call cap: the effective cap is min(config max_tokens, this).
  std::optional<int64_t> max_tokens;
  std::string key;
  /// Group the sample belongs to (cancellation unit, prompt_cache_key).
  std::string group_id;
  /// Routing hint shared by the members of a group.
  std::string prompt_cache_key;
  /// The completion webhook pinned to this sample (and every member of a
  /// group). A create under one Idempotency-Key must stay byte-identical, so
  /// a cluster's balancer pins the webhook of the node it first sends the
  /// sample to (empty endpoint: none) and a re-route keeps it
  /// (docs/cluster.md). nullopt: the node's own receiver, if it has one.
  std::optional<webhook_endpoint> webhook;
  /// Attach: the response id of an earlier create of this same sample (same
  /// key, same body). The worker skips the create and polls this id; if Sail
  /// no longer knows it (404) the worker creates with `key`, which Sail
  /// replays within its key retention. Empty: create. Single samples only
  /// (sample_group refuses it).
  std::string response_id;
  /// Notified with (key, response id) when the create is accepted; may be
  /// null.
  sample_observer_actor observer;
  /// Pre-encoded create body (the owner of a durable run encoded and
  /// journaled it, actors/durable_completer.hpp): the completer sends these
  /// bytes verbatim under `key` instead of encoding the sample (no webhook,
  /// no signed-URL refresh). Empty: the completer encodes.
  std::string body;

  friend bool operator==(const sample_request&, const sample_request&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sample_request& x) {
  detail::optional_ref<int64_t> cap{x.max_tokens};
  detail::optional_ref<webhook_endpoint> hook{x.webhook};
  return f(caf::meta::type_name("sail.sample_request"), x.prompt, x.stop, cap,
           x.key, x.group_id, x.prompt_cache_key, hook, x.response_id, x.observer, x.body);
}

/// One member of a group: a result or an error, exactly one of them
/// (serialization refuses a value with both or neither).
struct sample_outcome {
  std::optional<tokens_with_logprobs> result;
  caf::error error;

  bool ok() const noexcept { return result.has_value(); }

  friend bool operator==(const sample_outcome& x, const sample_outcome& y) {
    return x.result == y.result && x.error == y.error;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sample_outcome& x) {
  // A remote peer's outcome with neither (or both) would read as a failure
  // without an error (found by fuzz/caf_message_fuzz).
  auto check = [&x]() -> caf::error {
    if (x.result.has_value() == static_cast<bool>(x.error))
      return caf::sec::invalid_argument;
    return caf::none;
  };
  detail::optional_ref<tokens_with_logprobs> res{x.result};
  return f(caf::meta::type_name("sail.sample_outcome"),
           caf::meta::save_callback(check), res, x.error,
           caf::meta::load_callback(check));
}

/// Reply to sample_group: one outcome per member, in request order.
struct group_result {
  std::string group_id;
  std::vector<sample_outcome> members;

  friend bool operator==(const group_result&, const group_result&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, group_result& x) {
  return f(caf::meta::type_name("sail.group_result"), x.group_id, x.members);
}

// -- worker pool -----------------------------------------------------------------

struct http_header {
  std::string name;
  std::string value;

  friend bool operator==(const http_header&, const http_header&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, http_header& x) {
  return f(caf::meta::type_name("sail.http_header"), x.name, x.value);
}

/// An encoded Sail create request for the worker pool: the completer built it
/// through the codec; the pool adds the Authorization header, creates the
/// background response and polls it. `body` is byte-identical on every retry.
struct sail_job {
  std::string idempotency_key;
  /// Holds the webhook token when the sample has a webhook: print it only
  /// through redact_secrets (tokens look like whk_...).
  std::string body;
  std::vector<http_header> headers;
  std::string completion_window;
  std::string group_id;
  /// The model (the pool learns completion latency per model and window).
  std::string model;
  /// The body names this node's own webhook receiver: the result is expected
  /// there, polls are only the safety net (pool_options, webhook timing).
  bool webhook = false;
  /// Per-HTTP-call timeout (0 = pool default).
  caf::timespan call_timeout{0};
  /// Deadline for the whole sample (0 = default for the window).
  caf::timespan deadline{0};
  /// Expiry of the signed URL inside `body` (epoch: none). No create is sent
  /// from then on: the sample fails instead (its body must stay
  /// byte-identical under its key, so the URL cannot be swapped).
  caf::timestamp url_expires{};
  /// sample_request::response_id: poll this id instead of creating.
  std::string response_id;
  /// sample_request::observer (may be null).
  sample_observer_actor observer;

  friend bool operator==(const sail_job&, const sail_job&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sail_job& x) {
  return f(caf::meta::type_name("sail.sail_job"), x.idempotency_key, x.body,
           x.headers, x.completion_window, x.group_id, x.model, x.webhook,
           x.call_timeout, x.deadline, x.url_expires, x.response_id, x.observer);
}

// -- statistics ------------------------------------------------------------------
//
// Every counter of a completer is declared once: a member of its owner's
// struct (pool_stats: the pool's HTTP side; completer_stats: the samples,
// with the pool's nested) plus one entry of that struct's stat_fields(),
// which names it for Python (key), /metrics (metric, help, labels) and the
// rollout summary (row). The wire format (inspect), merge_into (nodes summed
// by the balancer), app/metrics.cpp's exposition, the rollout summary and
// Python's stats() all iterate stat_fields(); none of them names a field.

/// Upper bounds of the polls-per-sample histogram's buckets (the last
/// bucket, beyond them, counts the rest).
inline constexpr std::array<double, 12> polls_buckets{0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64};

/// Upper bounds (milliseconds) of the notice-delay histogram's buckets.
inline constexpr std::array<double, 13> notice_buckets_ms{
  10, 25, 50, 100, 250, 500, 1'000, 2'500, 5'000, 10'000, 30'000, 60'000, 300'000};

/// Upper bounds (seconds) of the request-latency histogram's buckets
/// (actors/metering.hpp).
inline constexpr std::array<double, 15> latency_buckets_s{
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900};

/// Observations per bucket of fixed upper bounds (the bounds live with the
/// histogram's description, not in it): counts[i] holds the values <=
/// bounds[i] and > bounds[i-1], counts[bounds.size()] the rest; empty until
/// the first observation.
struct histogram {
  std::vector<uint64_t> counts;
  /// Sum of the observed values (in the bounds' unit).
  double sum = 0;

  /// Counts `value` (sizes `counts` on first use).
  void observe(std::span<const double> bounds, double value);
  /// Observations in total.
  uint64_t count() const noexcept;

  friend bool operator==(const histogram&, const histogram&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, histogram& x) {
  return f(caf::meta::type_name("sail.histogram"), x.counts, x.sum);
}

/// How a statistic reads and adds up across owners and nodes.
enum class stat_kind : uint8_t {
  /// Only grows; summed.
  counter,
  /// A level; summed (in flight, a sliding window).
  gauge,
  /// The smallest positive value of the nodes (0: none), e.g. a next probe.
  soonest,
  /// One of `known` (exposed one-hot); merged: the one latest in `known`.
  state,
  /// A histogram over `bounds`; summed bucket by bucket.
  buckets,
  /// A label of a table's rows (usage's model and window).
  label,
  /// A nested struct with its own Python dict and summary rows.
  group,
  /// A nested struct shown flat (the pool's counters in the completer's).
  flat,
};

/// One field of a stats struct, as its consumers show it.
struct stat_info {
  /// Python's dict key (also the rows' key of a table).
  std::string_view key;
  stat_kind kind = stat_kind::counter;
  /// Prometheus metric; several fields may share one (told apart by
  /// `label` = `label_value`). Empty for groups.
  std::string_view metric = {};
  std::string_view help = {};
  /// A map's key label, or with `label_value` this field's fixed label.
  std::string_view label = {};
  std::string_view label_value = {};
  /// Label values exposed even at 0 (a map's keys), or a state's values
  /// (worst last).
  std::span<const std::string_view> known = {};
  /// More known label values, computed (the errc names).
  std::vector<std::string> (*known_more)() = nullptr;
  /// A histogram's bucket upper bounds.
  std::span<const double> bounds = {};
  /// /metrics shows value * scale (ms -> s).
  double scale = 1;
  /// The rollout summary's row (empty: not shown) and this field's part of
  /// it: `phrase` with "{}" standing for the value (empty: the value).
  std::string_view row = {};
  std::string_view phrase = {};
};

/// A member of T described by `info`.
template <class T, class M>
struct stat_field {
  stat_info info;
  M T::*member;
};

template <class T, class M>
constexpr stat_field<T, M> stat_entry(M T::*member, stat_info info) {
  return {info, member};
}

/// The breaker's states, worst last (net/retry_guard.hpp).
inline constexpr std::string_view breaker_states[] = {"closed", "half_open", "open"};

/// The webhook outcomes always exposed (docs/operations.md, "Metrics").
inline constexpr std::string_view webhook_outcomes[] = {
  "received", "applied", "duplicate", "unknown", "early", "rejected_unauthorized",
  "rejected_bad_route", "rejected_too_large", "rejected_malformed"};

/// The usage row labels exposed as `usage="known"` / `"unknown"`.
inline constexpr std::string_view usage_known[] = {"known"};

/// The errc names (every failure kind is exposed, 0 or not).
std::vector<std::string> errc_kinds();

/// The worker pool's retry budget and circuit breaker (net/retry_guard.hpp).
struct retry_guard_stats {
  /// "closed", "half_open" or "open" (merged: the worst of them).
  std::string breaker = "closed";
  /// Times the breaker opened.
  uint64_t breaker_opened = 0;
  /// While open: milliseconds until the next probe may go (else 0).
  int64_t next_probe_ms = 0;
  /// Probes sent (one attempt let through while open).
  uint64_t probes = 0;
  /// Attempts held back while the breaker was not closed.
  uint64_t held = 0;
  /// New samples refused at once (errc::unavailable).
  uint64_t rejected = 0;
  /// The budget's sliding window: first attempts, retries, and the retries it
  /// allows (floor + ratio * first attempts).
  uint64_t budget_requests = 0;
  uint64_t budget_retries = 0;
  uint64_t budget_allowed = 0;
  /// Retries deferred because the budget was spent.
  uint64_t budget_denied = 0;

  friend bool operator==(const retry_guard_stats&, const retry_guard_stats&) = default;
};

inline const auto& stat_fields(const retry_guard_stats*) {
  using T = retry_guard_stats;
  static const auto fields = std::make_tuple(
    stat_entry(&T::breaker,
         {.key = "breaker", .kind = stat_kind::state, .metric = "sail_tinker_breaker_state",
          .help = "Circuit breaker of the pool: 1 for its current state (closed, half_open, "
                  "open).",
          .label = "state", .known = breaker_states, .row = "circuit breaker"}),
    stat_entry(&T::breaker_opened,
         {.key = "breaker_opened", .metric = "sail_tinker_breaker_opened_total",
          .help = "Times the circuit breaker opened.", .row = "circuit breaker",
          .phrase = ", opened {}x"}),
    stat_entry(&T::next_probe_ms,
         {.key = "next_probe_ms", .kind = stat_kind::soonest,
          .metric = "sail_tinker_breaker_next_probe_seconds",
          .help = "While the breaker is open: seconds until its next probe (else 0).",
          .scale = 0.001}),
    stat_entry(&T::probes, {.key = "probes", .metric = "sail_tinker_breaker_probes_total",
                      .help = "Attempts let through as the breaker's probe.",
                      .row = "circuit breaker", .phrase = ", {} probes"}),
    stat_entry(&T::held, {.key = "held", .metric = "sail_tinker_breaker_held_total",
                    .help = "Attempts held back while the breaker was not closed."}),
    stat_entry(&T::rejected,
         {.key = "rejected", .metric = "sail_tinker_breaker_rejected_total",
          .help = "New samples refused at once while the breaker was open (also counted "
                  "as failed, kind unavailable).",
          .row = "circuit breaker", .phrase = ", {} samples refused"}),
    stat_entry(&T::budget_requests,
         {.key = "budget_requests", .kind = stat_kind::gauge,
          .metric = "sail_tinker_retry_budget",
          .help = "The retry budget's sliding window: first attempts, retries, and the "
                  "retries allowed.",
          .label = "window", .label_value = "requests"}),
    stat_entry(&T::budget_retries,
         {.key = "budget_retries", .kind = stat_kind::gauge,
          .metric = "sail_tinker_retry_budget", .label = "window", .label_value = "retries",
          .row = "retry budget", .phrase = "{} retries"}),
    stat_entry(&T::budget_allowed,
         {.key = "budget_allowed", .kind = stat_kind::gauge,
          .metric = "sail_tinker_retry_budget", .label = "window", .label_value = "allowed",
          .row = "retry budget", .phrase = " of {} allowed in the window"}),
    stat_entry(&T::budget_denied,
         {.key = "budget_denied", .metric = "sail_tinker_retry_budget_denied_total",
          .help = "Retries deferred because the retry budget was spent.",
          .row = "retry budget", .phrase = ", {} deferred"}));
  return fields;
}

/// Billed tokens of the samples of one (model, completion window).
struct usage_totals {
  std::string model;
  std::string window;
  /// Samples whose usage was known, and those whose usage was unknown (no
  /// or a malformed `usage` in the response): the token counts below cover
  /// the known ones only.
  uint64_t samples = 0;
  uint64_t unknown = 0;
  uint64_t input_tokens = 0;
  uint64_t cached_tokens = 0;
  uint64_t output_tokens = 0;
  uint64_t reasoning_tokens = 0;

  /// Counts one sample (nullopt: usage unknown).
  void add(const std::optional<sample_usage>& u) noexcept {
    if (!u) {
      ++unknown;
      return;
    }
    ++samples;
    input_tokens += static_cast<uint64_t>(u->input_tokens);
    cached_tokens += static_cast<uint64_t>(u->cached_tokens);
    output_tokens += static_cast<uint64_t>(u->output_tokens);
    reasoning_tokens += static_cast<uint64_t>(u->reasoning_tokens);
  }

  friend bool operator==(const usage_totals&, const usage_totals&) = default;
};

inline const auto& stat_fields(const usage_totals*) {
  using T = usage_totals;
  static constexpr const char* samples_help
    = "Samples that finished with a result, by model, completion window and whether the "
      "response reported its usage (known) or not (unknown: no or a malformed usage).";
  static constexpr const char* tokens_help
    = "Tokens billed as the responses' usage reports them, by model, completion window and "
      "kind (input includes cached; output includes reasoning).";
  static const auto fields = std::make_tuple(
    stat_entry(&T::model, {.key = "model", .kind = stat_kind::label, .label = "model"}),
    stat_entry(&T::window, {.key = "window", .kind = stat_kind::label, .label = "window"}),
    stat_entry(&T::samples, {.key = "samples", .metric = "sail_tinker_usage_samples_total",
                       .help = samples_help, .label = "usage", .label_value = "known"}),
    stat_entry(&T::unknown, {.key = "unknown", .metric = "sail_tinker_usage_samples_total",
                       .label = "usage", .label_value = "unknown"}),
    stat_entry(&T::input_tokens, {.key = "input_tokens", .metric = "sail_tinker_usage_tokens_total",
                            .help = tokens_help, .label = "kind", .label_value = "input"}),
    stat_entry(&T::cached_tokens, {.key = "cached_tokens", .metric = "sail_tinker_usage_tokens_total",
                             .label = "kind", .label_value = "cached"}),
    stat_entry(&T::output_tokens, {.key = "output_tokens", .metric = "sail_tinker_usage_tokens_total",
                             .label = "kind", .label_value = "output"}),
    stat_entry(&T::reasoning_tokens,
         {.key = "reasoning_tokens", .metric = "sail_tinker_usage_tokens_total",
          .label = "kind", .label_value = "reasoning"}));
  return fields;
}

/// The entry of (model, window) in `xs` (kept sorted by model, window),
/// inserted empty when missing.
usage_totals& usage_entry(std::vector<usage_totals>& xs, const std::string& model,
                          const std::string& window);

/// The worker pool's own counters: its HTTP side (polls, retries, webhooks,
/// the retry guard, the histograms).
struct pool_stats {
  std::map<std::string, uint64_t> retries_by_cause;
  /// GET polls sent for completed samples.
  uint64_t polls = 0;
  /// Completion webhooks by outcome (docs/operations.md, "Metrics"):
  /// received, applied, duplicate, unknown, early, ignored, and
  /// rejected_<reason> (unauthorized, bad_route, too_large, malformed).
  std::map<std::string, uint64_t> webhooks;
  /// The pool's retry budget and circuit breaker.
  retry_guard_stats guard;
  /// Completed samples by polls they cost (over polls_buckets).
  histogram polls_per_sample;
  /// Completed samples by notice delay, ms (the response's completed_at to
  /// the moment the pool had the result; over notice_buckets_ms): only
  /// samples whose response carried completed_at.
  histogram notice_delay;

  friend bool operator==(const pool_stats&, const pool_stats&) = default;
};

inline const auto& stat_fields(const pool_stats*) {
  using T = pool_stats;
  static const auto fields = std::make_tuple(
    stat_entry(&T::retries_by_cause,
         {.key = "retries_by_cause", .metric = "sail_tinker_retries_total",
          .help = "HTTP retries and re-dispatches, by cause (http_429, transport, timeout, ...).",
          .label = "cause", .row = "retries by cause"}),
    stat_entry(&T::polls, {.key = "polls", .metric = "sail_tinker_polls_total",
                     .help = "GET polls sent for completed samples.", .row = "polls"}),
    stat_entry(&T::webhooks,
         {.key = "webhooks", .metric = "sail_tinker_webhooks_total",
          .help = "Completion webhooks by outcome: received, applied (finished a sample), "
                  "duplicate, unknown, early (claimed after its create), rejected_<reason>.",
          .label = "outcome", .known = webhook_outcomes, .row = "webhooks"}),
    stat_entry(&T::guard, {.key = "guard", .kind = stat_kind::group}),
    stat_entry(&T::polls_per_sample,
         {.key = "polls_per_sample", .kind = stat_kind::buckets,
          .metric = "sail_tinker_polls_per_sample", .help = "GET polls per completed sample.",
          .bounds = polls_buckets}),
    stat_entry(&T::notice_delay,
         {.key = "notice_delay", .kind = stat_kind::buckets,
          .metric = "sail_tinker_notice_delay_seconds",
          .help = "Completion (the response's completed_at) to result in hand, for responses "
                  "that carry completed_at.",
          .bounds = notice_buckets_ms, .scale = 0.001}));
  return fields;
}

/// A completer's counters (its own samples, the pool's counters nested), or
/// a node's (the pool's samples), or a cluster's (the nodes' summed).
struct completer_stats {
  uint64_t in_flight = 0;
  uint64_t completed = 0;
  std::map<std::string, uint64_t> failed_by_kind;
  /// Billed tokens of completed samples per (model, window), sorted.
  std::vector<usage_totals> usage;
  /// The pool's counters (shared by every completer of the pool).
  pool_stats pool;

  friend bool operator==(const completer_stats&, const completer_stats&) = default;
};

inline const auto& stat_fields(const completer_stats*) {
  using T = completer_stats;
  static const auto fields = std::make_tuple(
    stat_entry(&T::in_flight,
         {.key = "in_flight", .kind = stat_kind::gauge, .metric = "sail_tinker_samples_in_flight",
          .help = "Samples accepted by this node (every completer) and not yet finished."}),
    stat_entry(&T::completed, {.key = "completed", .metric = "sail_tinker_samples_completed_total",
                         .help = "Samples that finished with a result."}),
    stat_entry(&T::failed_by_kind,
         {.key = "failed_by_kind", .metric = "sail_tinker_samples_failed_total",
          .help = "Samples that finished with an error, by error kind.", .label = "kind",
          .known_more = errc_kinds}),
    stat_entry(&T::usage, {.key = "usage"}),
    stat_entry(&T::pool, {.key = "pool", .kind = stat_kind::flat}));
  return fields;
}

/// Calls f(info, member) for every field of `x` (const or not).
template <class T, class F>
void for_each_stat(T& x, F&& f) {
  std::apply([&](const auto&... fs) { (f(fs.info, x.*fs.member), ...); },
             stat_fields(static_cast<const std::remove_const_t<T>*>(nullptr)));
}

/// Calls f(info, member of x, member of y) for every field.
template <class T, class U, class F>
void for_each_stat(T& x, U& y, F&& f) {
  std::apply([&](const auto&... fs) { (f(fs.info, x.*fs.member, y.*fs.member), ...); },
             stat_fields(static_cast<const std::remove_const_t<T>*>(nullptr)));
}

/// Whether T has a stat_fields() description.
template <class T>
concept described_stats = requires(const T* p) { stat_fields(p); };

/// The wire format of a described struct: its fields in description order.
template <class T, class Inspector>
typename Inspector::result_type inspect_stats(Inspector& f, T& x, const char* name) {
  return std::apply(
    [&](const auto&... fs) { return f(caf::meta::type_name(name), (x.*fs.member)...); },
    stat_fields(static_cast<const T*>(nullptr)));
}

/// The same, `check` run before saving and after loading.
template <class T, class Inspector, class Check>
typename Inspector::result_type inspect_stats(Inspector& f, T& x, const char* name,
                                              Check check) {
  return std::apply(
    [&](const auto&... fs) {
      return f(caf::meta::type_name(name), caf::meta::save_callback(check), (x.*fs.member)...,
               caf::meta::load_callback(check));
    },
    stat_fields(static_cast<const T*>(nullptr)));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, retry_guard_stats& x) {
  return inspect_stats(f, x, "sail.retry_guard_stats");
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, usage_totals& x) {
  return inspect_stats(f, x, "sail.usage_totals");
}

/// invalid_argument unless every histogram fits its bounds and `usage` is
/// sorted by (model, window), each pair once (merge_into relies on it).
caf::error check_stats(const pool_stats& x);
caf::error check_stats(const completer_stats& x);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pool_stats& x) {
  return inspect_stats(f, x, "sail.pool_stats", [&x] { return check_stats(x); });
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, completer_stats& x) {
  return inspect_stats(f, x, "sail.completer_stats", [&x] { return check_stats(x); });
}

/// Adds `x` to `sum` field by field as the description says (counters and
/// gauges add up, histograms bucket by bucket, the breaker shows the worst
/// state and the nearest probe, usage adds per (model, window)).
void merge_into(histogram& sum, const histogram& x);
void merge_into(retry_guard_stats& sum, const retry_guard_stats& x);
void merge_into(usage_totals& sum, const usage_totals& x);
void merge_into(pool_stats& sum, const pool_stats& x);
void merge_into(completer_stats& sum, const completer_stats& x);

} // namespace sail
