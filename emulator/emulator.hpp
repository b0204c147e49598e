// An in-process emulator of Sail's raw-token Responses API and of the Tinker
// REST calls the resolver makes, with a deterministic toy model, a latency
// model and seeded fault injection. It listens on a real loopback socket and
// runs on its own io_context and threads, so a test just constructs it:
//
//   sail::emulator::server emu{sail::emulator::options{}};
//   auto url = emu.base_url();          // "http://127.0.0.1:<port>"
//   ... drive a client against url + "/v1/responses" ...
//   auto st = emu.snapshot();           // requests, faults, inference runs
//
// The emulator is an independent implementation of the server side (it does
// not use the project's Sail codec), so the codec can be tested against it.
// Facts it encodes come from Sail's docs (docs.sailresearch.com/<page>, cited
// as /<page>; docs/wire-contract.md) and OpenAPI document (2026-02-18).
//
// Routes:
//   POST /v1/responses                     Sail create (Bearer auth)
//   GET  /v1/responses/{id}                Sail poll (Bearer auth)
//   PUT  /api/v1/training_runs/{run}/checkpoints/{kind}/{name}/ttl    Tinker
//   GET  /api/v1/training_runs/{run}/checkpoints/{kind}/{name}/archive Tinker
//   GET  /_emulator/stats                  statistics as JSON (no auth;
//                                          "?summary=1" omits per-key maps)
//   GET  /_emulator/requests               the request log as JSON (no auth;
//                                          empty unless request_log_capacity)
//   GET  /_emulator/health                 200 {"status":"ok"} (cheapest route)
//   GET  /_emulator/archive/...            the "signed URL" target (200 bytes)
//   GET  /_emulator/bytes?n=N              200 with N bytes (capped at 256 MiB)
//
// Completion windows (/completion-windows, names across 2026): asap, priority,
// balanced, standard, flex; anything else is a 400. A LoRA request
// (metadata.lora or metadata.tinker_lora_signed_url) with asap is a 400 with
// Sail's live message "lora requests cannot use completion_window=asap";
// flex requires background=true. options::model_windows (empty: any model,
// any window) makes an explicit window the model does not support a 400
// (explicit values never fall back). An omitted window is `standard` when the
// model supports it, else `flex` for background requests when supported, else
// the model's first window (OpenAPI RequestMetadata.completion_window).
//
// Status words (options::vocabulary): `guides` (default) answers queued /
// in_progress / completed as Sail's quickstart and idempotency pages do;
// `openapi` answers pending / running / completed (OpenAPI ResponseObject
// enum). Terminal outcomes other than completed are triggered by the request
// metadata key `emulator_outcome` (echoed like any metadata):
//   completed   (default)
//   incomplete  status "incomplete", incomplete_details {"reason":
//               "max_output_tokens"}; the sample runs to max_output_tokens
//               ignoring stop conditions; the output_text part carries the
//               partial output (text, token_ids, logprobs) WITHOUT a
//               stop_reason (the reason lives in incomplete_details); usage
//               is billed.
//   failed      status "failed", output [], error {"code":"server_error",
//               "message":...}
//   cancelled   status "cancelled", output [], error {"code":"cancelled",
//               "message":...}
// Any other value is a 400 naming metadata.emulator_outcome. The terminal
// status is reached when the latency model says the response is done; until
// then it is queued/in_progress (pending/running). `usage` is always an object
// (OpenAPI: ResponseUsage, required): zeros until the response is terminal.
//
// Other validation as Sail documents it: `user` at most 256 characters
// (OpenAPI maxLength); Idempotency-Key at most 255; a create whose
// metadata.tinker_lora_signed_url is an archive URL this emulator handed out
// and whose expiry has passed -> 400 naming metadata.tinker_lora_signed_url
// (counted in stats::expired_signed_urls; checked on every create, replays
// included, before the reservation). The expiry is exact to the millisecond
// (options::archive_url_ttl); the Expires header / "expires" field the
// Tinker route advertises is the same instant rounded DOWN to the second.
//
// Webhooks (/webhooks): metadata.completion_webhook (an http://
// or https:// URL; https is verified against options::webhook_ca_file, else
// the system's CAs) and metadata.webhook_token; on reaching a terminal
// status the emulator POSTs the GET's JSON with "Authorization: Bearer
// <token>", retried on a non-2xx answer or a network error, each attempt
// bounded by options::webhook_timeout (30 s as Sail documents). An invalid
// webhook URL is silently ignored (request accepted, no webhook; counted in
// webhook_stats::ignored_invalid). webhook_token is never echoed in the
// response's metadata. Faults (fault_settings): drop a webhook, deliver it
// twice, deliver it late.
//
// Request log (options::request_log_capacity, off by default): every request
// except the /_emulator/stats and /_emulator/requests introspection routes is
// recorded with method, target, route, status, the headers that matter
// (Idempotency-Key, X-Sail-Voyage-*), the raw request body (non-GET) and the
// raw response body as sent (cut at request_log_body_cap). Oldest entries go
// first when the log is full (counted in stats::request_log_dropped). It holds
// signed URLs and webhook tokens verbatim: test data, never logged.
//
// Toy model (deterministic): a 64-token vocabulary (see vocabulary()); the
// sample depends on the prompt (raw_prompt_tokens, else the input), the
// request's sampling fields (model, temperature, top_p, seed,
// max_output_tokens) and, when the request has no `seed`, its
// Idempotency-Key: the n members of a group (one key each) get independent
// samples, while a replay under the same key returns the stored response (no
// second inference). Greedy sampling (temperature 0) does not depend on the
// key. Logits come from a hash of the context; softmax after temperature
// (temperature 0 = greedy), then top_p nucleus truncation; the recorded
// logprob is the TRUE log-probability of the sampled token under that
// adjusted distribution. A stop token or stop string ends generation with
// stop_reason "stop"; the token that triggered the stop IS included in
// token_ids, logprobs and text. Reaching max_output_tokens ends it with
// stop_reason "length" (status stays "completed"). Without max_output_tokens
// the model generates default_max_output_tokens tokens. The model has no
// implicit end-of-sequence token.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

#include "sail_tinker/emulator/wire_variants.hpp"

namespace sail::emulator {

// -- fault injection ----------------------------------------------------------

/// The faults the emulator can inject.
enum class fault_kind : uint8_t {
  status_429,           ///< 429 with Retry-After (before acceptance)
  status_529,           ///< 529 with Retry-After (before acceptance)
  status_500,           ///< 500 Sail error body
  status_502,           ///< 502 Sail error body
  status_503,           ///< 503 Sail error body
  status_504,           ///< 504 Sail error body
  connection_reset,     ///< close the connection with RST, no response
  truncated_body,       ///< Content-Length larger than the bytes sent, close
  malformed_json,       ///< 2xx with a body that is not valid JSON
  missing_token_ids,    ///< completed response without token_ids
  logprob_mismatch,     ///< completed response whose logprobs length differs
  slow_response,        ///< the answer is delayed by fault_settings::slow_delay
};

/// Number of fault kinds.
inline constexpr size_t fault_kind_count = 12;

/// "status_429", "connection_reset", ...
const char* to_string(fault_kind kind) noexcept;

/// Bit mask of the routes faults apply to.
enum route_mask : uint8_t {
  route_create = 1,   ///< POST /v1/responses
  route_poll = 2,     ///< GET /v1/responses/{id}
  route_tinker = 4,   ///< the Tinker ttl and archive routes
  route_all = 7,
};

/// Fault settings; changeable at runtime (server::set_faults).
///
/// Per eligible request the emulator first consumes `scripted` (one entry per
/// request, in order), otherwise draws each kind independently with its
/// probability (in enum order, the first hit wins); slow_response is drawn
/// separately and can combine with another fault. Kinds that do not apply to
/// a request (missing_token_ids on a queued response, on Tinker routes, ...)
/// are not injected and not counted.
///
/// On POST /v1/responses, 429 and 529 always happen before acceptance (no
/// reservation, no inference). 500/502/503/504 and connection_reset happen
/// after acceptance (reservation made, inference run: a retry with the same
/// Idempotency-Key replays) with probability `after_accept_fraction`, else
/// before. truncated_body, malformed_json, missing_token_ids and
/// logprob_mismatch always happen after acceptance (they corrupt the answer).
/// No fault ever causes a second inference for one Idempotency-Key.
struct fault_settings {
  /// Probability per kind, indexed by fault_kind.
  double probability[fault_kind_count] = {};
  /// Faults for the next eligible requests, consumed first (one per request).
  std::deque<fault_kind> scripted;
  /// Routes the faults apply to.
  uint8_t routes = route_all;
  /// Seed of the fault draws (0: derived from options::seed).
  uint64_t seed = 0;
  /// See above.
  double after_accept_fraction = 0.5;
  /// Retry-After value sent with 429 and 529 (and 503 when set below).
  std::chrono::seconds retry_after{1};
  /// Send Retry-After as an HTTP-date instead of delta-seconds.
  bool retry_after_http_date = false;
  /// Also send Retry-After with injected 503s.
  bool retry_after_on_503 = false;
  /// Delay of slow_response.
  std::chrono::milliseconds slow_delay{500};
  /// Webhooks (drawn once per accepted response with a completion_webhook,
  /// from their own seeded stream): the probability that its webhook is
  /// dropped (never sent; Sail's delivery is best effort), and that it is
  /// delivered twice (Sail retries and dedupes nothing: /webhooks).
  double webhook_drop = 0;
  double webhook_duplicate = 0;
  /// Delay before the first delivery attempt (a "late" webhook: a poll can
  /// finish the sample first).
  std::chrono::milliseconds webhook_delay{0};

  /// Convenience: sets the probability of one kind.
  fault_settings& set(fault_kind kind, double p) {
    probability[static_cast<size_t>(kind)] = p;
    return *this;
  }
  double get(fault_kind kind) const {
    return probability[static_cast<size_t>(kind)];
  }
};

// -- latency model ------------------------------------------------------------

/// A per-request latency drawn from a seeded spread (emulator only; Sail's
/// latency varies per request: docs/wire-contract.md, poll timing). The draw
/// depends on options::seed and the request's Idempotency-Key (or its
/// response number without one), so a run is reproducible.
struct latency_spread {
  enum class shape : uint8_t {
    none,         ///< no extra latency
    log_uniform,  ///< log-uniform within [min, max] (each doubling equally likely)
    log_normal,   ///< median * exp(sigma * N(0,1)), clipped to [min, max]
  };
  shape kind = shape::none;
  std::chrono::microseconds min{0};
  std::chrono::microseconds max{0};
  std::chrono::microseconds median{0};
  double sigma = 0;

  /// The latency of the draw for `key` (zero for shape::none).
  std::chrono::microseconds draw(uint64_t seed, std::string_view key) const noexcept;

  /// A heavy tail by its shape: log-normal around `median` whose 99th
  /// percentile is `p99_over_median` times the median (sigma =
  /// ln(ratio) / 2.3263, the standard normal's 99th percentile), clipped to
  /// [median / ratio^2, median * ratio^2]. A ratio of 1 or less: no spread
  /// beyond the median.
  static latency_spread log_normal_p99(std::chrono::microseconds median,
                                       double p99_over_median) noexcept;
};

/// Latency of one completion window: time spent queued after acceptance (plus
/// a drawn `spread`), then per generated token. A response is "queued" until
/// accepted + queued + spread, "in_progress" until that + per_token * output
/// tokens, then "completed" (time-based, not poll-count-based).
struct window_latency {
  std::chrono::microseconds queued{0};
  std::chrono::microseconds per_token{0};
  latency_spread spread;
};

/// Latency per completion window; zero (instant) by default.
struct latency_model {
  window_latency asap;
  window_latency priority;
  window_latency balanced;
  window_latency standard;
  window_latency flex;

  /// The latency of `window` (unknown names: standard's).
  const window_latency& of(std::string_view window) const noexcept;
  window_latency& of(std::string_view window) noexcept {
    return const_cast<window_latency&>(std::as_const(*this).of(window));
  }

  /// Every window's entry (to set them all at once).
  std::vector<window_latency*> all() noexcept {
    return {&asap, &priority, &balanced, &standard, &flex};
  }
};

/// A named latency profile, every duration times `scale` (1.0: real time;
/// 0.01: a second becomes 10 ms), or nullopt for an unknown name:
/// - "measured": Sail's published measurements on Kimi-K2.6 (a public
///   PokerBench RL example; docs/wire-contract.md, poll timing row): asap
///   ~1.4 s, priority ~8.5 s per sample with LoRA / checkpoint samples
///   5.7-12.7 s -- log-normal per sample around those medians (sigma 0.25,
///   clipped to the measured range; priority's range also for asap scaled
///   to its median). balanced, standard and flex have no published per-sample
///   figure: they get priority's (a guess, documented here).
/// - "targets": Sail's latency targets (/completion-windows, same row):
///   asap ~1.4 s measured, priority ~1 min per turn, standard ~5 min, flex
///   ~1 h (flex is best effort: a guess), balanced as priority; log-normal
///   around them with p99 = 3x the median.
/// - "heavy-tail": log-normal with p99 = 10x the median, median 1 s, every
///   window (the tail a step of many samples waits for).
std::optional<latency_model> latency_profile(std::string_view name, double scale = 1.0);

/// The profile names latency_profile() knows.
const std::vector<std::string>& latency_profiles();

/// The completion windows the emulator knows (/completion-windows: 2026 names).
const std::vector<std::string>& known_windows();

/// Status words of non-terminal responses.
enum class status_vocabulary : uint8_t {
  guides,   ///< queued / in_progress (Sail's quickstart and idempotency pages)
  openapi,  ///< pending / running (OpenAPI ResponseObject.status enum)
};

/// "guides" / "openapi".
const char* to_string(status_vocabulary v) noexcept;

// -- options ------------------------------------------------------------------

enum class archive_mode : uint8_t {
  redirect,  ///< 302 with Location and Expires (HTTP-date)
  json,      ///< 200 {"url": ..., "expires": "<ISO-8601>"}
};

struct options {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  ///< 0: any free port (see server::port())
  std::string sail_api_key = "sk_emulator_key";
  std::string tinker_api_key = "tml-emulator-key";
  /// Threads running the emulator's io_context.
  size_t threads = 2;
  latency_model latency;
  fault_settings faults;
  /// Seed of the toy model's sampling (combined with each request's fields).
  uint64_t seed = 42;
  /// Tinker archive answer shape.
  archive_mode archive = archive_mode::redirect;
  /// Archive calls per checkpoint answered 503 "still building" first.
  int still_building_calls = 0;
  /// Lifetime of the signed archive URLs handed out (millisecond precision;
  /// a create carrying one after it expired is refused).
  std::chrono::milliseconds archive_url_ttl{900'000};
  /// Known LoRA names (metadata.lora); others -> 404 "lora not found".
  std::set<std::string> known_loras = {"emulator-lora"};
  /// Known checkpoints as "tinker://<run>/<kind>/<name>"; empty: any.
  std::set<std::string> known_checkpoints;
  /// Output length when the request has no max_output_tokens.
  int64_t default_max_output_tokens = 16;
  /// Prompt caching as billed: a create's cached_tokens is the longest
  /// prefix its raw_prompt_tokens share with an earlier accepted create under
  /// the same prompt_cache_key, when at least this long (shorter: 0). Sail
  /// documents that cached input is part of input and billed cheaper, not a
  /// minimum length: this is configuration. 0 (default): no caching, because
  /// which member of a group comes first is a race, and a run's output
  /// (usage included) should not depend on it unless a test asks for it.
  int64_t prompt_cache_min_tokens = 0;
  /// Earlier prompts remembered per prompt_cache_key for that comparison.
  size_t prompt_cache_entries = 16;
  /// Bounds of requests (413/431 beyond them).
  uint64_t max_body_bytes = 48ull * 1024 * 1024;
  size_t max_header_bytes = 64 * 1024;
  /// Per-connection read timeout.
  std::chrono::milliseconds read_timeout{30'000};
  /// How long stop() lets in-flight requests finish.
  std::chrono::milliseconds drain_timeout{1'000};
  /// Webhooks: retries after the first attempt, delay between attempts and
  /// the timeout of one attempt (30 s: Sail's /webhooks page).
  int webhook_retries = 3;
  std::chrono::milliseconds webhook_retry_delay{100};
  std::chrono::milliseconds webhook_timeout{30'000};
  /// CA certificate (PEM) that https:// webhook receivers are verified
  /// against; empty: the system's default CAs.
  std::string webhook_ca_file;
  /// Record request arrival times per Idempotency-Key and per response id.
  bool record_arrivals = true;
  /// Terminal bodies carry "completed_at": the completion instant in seconds
  /// since the epoch with millisecond fraction. Not in Sail's OpenAPI
  /// document (off by default); lets a client measure its notice delay.
  bool emit_completed_at = false;
  /// Status words of non-terminal responses.
  status_vocabulary vocabulary = status_vocabulary::guides;
  /// Windows each model supports; a model not listed supports every known
  /// window. Empty (default): any model, any window. Sail publishes this on
  /// its pricing page and it changes (/pricing), so it is configuration.
  std::map<std::string, std::set<std::string>> model_windows;
  /// Entries kept in the request log (0: no log). Oldest go first.
  size_t request_log_capacity = 0;
  /// Bytes of one request or response body kept in the log.
  size_t request_log_body_cap = 1024 * 1024;
  /// Departures from the guessed wire details (emulator/wire_variants.hpp);
  /// empty: the guesses hold.
  std::set<wire_variant> wire_variants;
};

// -- statistics ---------------------------------------------------------------

/// One recorded request arrival.
struct arrival {
  std::chrono::steady_clock::time_point at;
  double ms = 0;   ///< milliseconds since the emulator started
  int status = 0;  ///< status answered (0: connection reset)
  std::string fault;  ///< injected fault kind, empty if none
};

struct webhook_stats {
  uint64_t attempts = 0;
  uint64_t delivered = 0;  ///< deliveries that got a 2xx (a duplicate counts twice)
  uint64_t failed = 0;     ///< deliveries that gave up after their retries
  uint64_t dropped = 0;    ///< webhooks dropped by fault_settings::webhook_drop
  uint64_t duplicated = 0; ///< extra deliveries by fault_settings::webhook_duplicate
  /// Attempts answered by the receiver, by HTTP status (0: no answer).
  std::map<int, uint64_t> answers;
  /// Accepted creates whose completion_webhook was not an http(s) URL
  /// (silently no webhook, as Sail documents).
  uint64_t ignored_invalid = 0;
};

/// Times of one accepted create, in milliseconds since the emulator started.
struct response_timing {
  std::string id;            ///< the response id
  double accepted_ms = 0;    ///< accepted (inference ran)
  double done_ms = 0;        ///< reached its terminal status
  double delivered_ms = -1;  ///< first terminal body served; -1: not yet
  double webhook_ms = -1;    ///< first webhook answered 2xx; -1: none
};

/// One entry of the request log.
struct logged_request {
  uint64_t seq = 0;      ///< 1, 2, ... in the order answered
  double ms = 0;         ///< arrival, milliseconds since the emulator started
  std::string method;    ///< "POST", "GET", ...
  std::string target;    ///< request target (path and query)
  std::string route;     ///< route name as in stats::requests
  int status = 0;        ///< status answered (0: connection reset)
  std::string fault;     ///< injected fault kind, empty if none
  /// Idempotency-Key and X-Sail-Voyage-* headers as received, in order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string request_body;   ///< raw request body (non-GET requests)
  std::string response_body;  ///< raw response body as sent
  bool truncated = false;     ///< a body was cut at request_log_body_cap

  /// The value of header `name` (case-insensitive), empty if absent.
  std::string header(std::string_view name) const;
};

/// A snapshot of what the emulator saw. Route names: "POST /v1/responses",
/// "GET /v1/responses/{id}", "PUT tinker ttl", "GET tinker archive",
/// "GET /_emulator/stats", "GET /_emulator/health", "GET /_emulator/archive",
/// "GET /_emulator/bytes", "other". Status 0 means "connection reset, no answer".
struct stats {
  std::map<std::string, std::map<int, uint64_t>> requests;
  uint64_t connections_accepted = 0;
  /// Inference runs per Idempotency-Key (the double-inference detector).
  std::map<std::string, uint64_t> inference_runs;
  uint64_t inference_runs_total = 0;
  uint64_t inference_runs_without_key = 0;
  uint64_t max_runs_per_key = 0;
  /// Injected faults by fault_kind name.
  std::map<std::string, uint64_t> faults;
  /// POST arrivals per Idempotency-Key, in arrival order.
  std::map<std::string, std::vector<arrival>> arrivals;
  /// GET arrivals per response id, in arrival order.
  std::map<std::string, std::vector<arrival>> poll_arrivals;
  /// Tinker calls per checkpoint ("tinker://run/kind/name"), in order:
  /// "ttl" or "archive".
  std::map<std::string, std::vector<std::string>> tinker_calls;
  webhook_stats webhooks;
  /// Responses stored (background or foreground).
  uint64_t responses = 0;
  /// prompt_cache_key of each accepted create, by Idempotency-Key ("" when
  /// the request had none).
  std::map<std::string, std::string> prompt_cache_keys;
  /// Acceptance and completion times of each accepted create, by
  /// Idempotency-Key.
  std::map<std::string, response_timing> timings;
  /// Creates refused because metadata.tinker_lora_signed_url had expired.
  uint64_t expired_signed_urls = 0;
  /// Tokens billed, as the responses' usage reports them: once per inference
  /// run (a replayed key bills nothing new), for completed and incomplete
  /// responses. Cached tokens are part of input tokens.
  uint64_t billed_input_tokens = 0;
  uint64_t billed_cached_tokens = 0;
  uint64_t billed_output_tokens = 0;
  /// Request log entries dropped because the log was full.
  uint64_t request_log_dropped = 0;

  /// Number of requests to `route` answered with `status`.
  uint64_t count(const std::string& route, int status) const;
  /// Number of injected faults of `kind`.
  uint64_t fault_count(fault_kind kind) const;
};

// -- toy model ----------------------------------------------------------------

/// Size of the toy vocabulary (token ids 0..vocabulary_size-1).
inline constexpr int64_t vocabulary_size = 64;

/// Token ids with special text.
inline constexpr int64_t token_newline = 0;  ///< "\n"
inline constexpr int64_t token_period = 1;   ///< "."
inline constexpr int64_t token_end = 2;      ///< "END"

/// The text of every token id (index = id).
const std::vector<std::string>& vocabulary();

/// Sampling inputs of the toy model.
struct sample_params {
  std::vector<int64_t> prompt;
  std::string model;
  double temperature = 1.0;
  double top_p = 1.0;
  /// The request's `seed`; without one the Idempotency-Key (if any) is mixed
  /// into the random stream.
  std::optional<int64_t> seed;
  /// The request's Idempotency-Key ("" when it had none).
  std::string idempotency_key;
  int64_t max_output_tokens = 16;
  std::vector<int64_t> stop_token_ids;
  std::vector<std::string> stop_strings;
};

/// One sampled completion.
struct sample_result {
  std::vector<int64_t> token_ids;
  std::vector<double> logprobs;
  std::string text;
  std::string stop_reason;  ///< "stop" or "length"
};

/// Runs the toy model (pure function; `base_seed` is options::seed).
sample_result sample(const sample_params& params, uint64_t base_seed);

// -- the server ---------------------------------------------------------------

class server {
public:
  /// Binds and starts serving; throws std::runtime_error if it cannot bind.
  explicit server(options opts = {});

  /// Binds and starts serving; a transport_error if it cannot bind.
  static caf::expected<std::unique_ptr<server>> make(options opts);

  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Stops (see stop()).
  ~server();

  /// The bound port.
  uint16_t port() const noexcept;

  /// "http://<host>:<port>" (Sail base without "/v1"; Tinker base as well).
  std::string base_url() const;

  /// The instant the statistics' milliseconds count from (arrival::ms,
  /// response_timing).
  std::chrono::steady_clock::time_point started_at() const noexcept;

  /// The options in use (faults as set at construction).
  const options& config() const noexcept;

  /// A copy of the statistics.
  stats snapshot() const;

  /// Waits until `pred` holds for the statistics or `timeout` passes; returns
  /// whether it held (evaluated once more at the deadline). No polling: `pred`
  /// is evaluated at once and again whenever a counter changes (every update
  /// of the statistics notifies the waiters). `pred` sees the live
  /// statistics under the emulator's lock: keep it short, do not call the
  /// server from it, copy what must outlive it. connections_accepted is
  /// current at each evaluation, but an accepted connection alone does not
  /// wake the waiter (a request on it does).
  bool wait_until(const std::function<bool(const stats&)>& pred,
                  std::chrono::milliseconds timeout) const;

  /// The statistics as served by GET /_emulator/stats.
  std::string stats_json(bool summary = false) const;

  /// A copy of the request log, oldest first (empty when it is off).
  std::vector<logged_request> request_log() const;

  /// The request log as served by GET /_emulator/requests.
  std::string request_log_json() const;

  /// Replaces the fault settings (the draw sequence restarts from the seed).
  void set_faults(fault_settings faults);

  /// Current fault settings (scripted entries already consumed are gone).
  fault_settings faults() const;

  /// Replaces the latency model for requests accepted from now on.
  void set_latency(latency_model latency);

  /// Switches the Tinker archive answer shape.
  void set_archive_mode(archive_mode mode);

  /// Sets the number of 503 "still building" answers per checkpoint (applies
  /// to checkpoints whose count of archive calls is still below it).
  void set_still_building_calls(int n);

  /// Adds a known LoRA name.
  void add_known_lora(std::string name);

  /// Current TTL of a checkpoint ("tinker://run/kind/name"): nullopt if never
  /// set; 0 if removed (null); else seconds.
  std::optional<int64_t> checkpoint_ttl(const std::string& checkpoint) const;

  /// Stops accepting, lets in-flight requests finish (bounded by
  /// options::drain_timeout), closes the rest and joins the threads.
  /// Idempotent; never call it from a handler of the emulator itself.
  void stop();

  struct impl;

private:
  explicit server(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

} // namespace sail::emulator
