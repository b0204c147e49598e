// Internals of the emulator shared by its translation units. Not installed as
// API: only emulator.hpp is public.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/net/http_server.hpp"

namespace sail::emulator {

using steady = std::chrono::steady_clock;

/// How an accepted response ends (options: metadata.emulator_outcome).
enum class outcome_kind : uint8_t { completed, incomplete, failed, cancelled };

/// Where a response is at a point in time.
enum class response_phase : uint8_t { queued, in_progress, terminal };

/// One accepted response task (immutable once published).
struct response_record {
  std::string id;
  std::string idempotency_key;
  std::string model;
  boost::json::object metadata;  // echoed (webhook_token removed)
  int64_t created_at = 0;
  bool background = false;
  std::optional<int64_t> max_output_tokens;
  double temperature = 1.0;
  double top_p = 1.0;
  bool include_logprobs = false;
  int64_t input_tokens = 0;
  /// Of input_tokens, those billed as cached (prompt_cache_min_tokens).
  int64_t cached_tokens = 0;
  sample_result result;
  steady::time_point accepted;
  steady::time_point started;
  steady::time_point done;
  std::string webhook_url;
  std::string webhook_token;
  /// Webhook faults drawn at acceptance (fault_settings::webhook_*).
  bool webhook_dropped = false;
  bool webhook_twice = false;
  std::chrono::milliseconds webhook_delay{0};
  /// Wall clock at acceptance (completed_at = this + (done - accepted)).
  std::chrono::system_clock::time_point accepted_wall;
  outcome_kind outcome = outcome_kind::completed;

  /// The phase at `now` (time-based: accepted -> started -> done).
  response_phase phase_at(steady::time_point now) const noexcept;
};

using record_ptr = std::shared_ptr<const response_record>;

/// The outcome of one fault draw.
struct fault_draw {
  std::optional<fault_kind> kind;
  bool slow = false;
  bool after_accept = false;
  std::chrono::milliseconds slow_delay{0};
  std::chrono::seconds retry_after{1};
  bool retry_after_http_date = false;
  bool retry_after_on_503 = false;
};

/// How an answer is mangled on the wire (faults.cpp; the server only offers
/// the raw-answer hook, net/http_server.hpp).
enum class wire_fault : uint8_t {
  none,
  /// Close the connection abruptly (SO_LINGER 0: the peer sees a reset); no
  /// response is sent.
  reset,
  /// Send the header with the full Content-Length but only `truncate_at`
  /// bytes of the body, then close.
  truncate_body,
};

/// An answer of the emulator: a response with its delivery (delay, close)
/// and the wire fault, if any, that mangles it.
struct fault_reply : http_server_reply {
  wire_fault fault = wire_fault::none;
  /// Body bytes actually sent with truncate_body (clamped to the body size
  /// minus one, so the body is always short).
  size_t truncate_at = 0;
};

/// Sends `reply` on the connection of `ctx`, with its wire fault.
void send_reply(http_server_context&& ctx, fault_reply reply);

/// Route names used in stats.
namespace route {
inline constexpr const char* create = "POST /v1/responses";
inline constexpr const char* poll = "GET /v1/responses/{id}";
inline constexpr const char* ttl = "PUT tinker ttl";
inline constexpr const char* archive = "GET tinker archive";
inline constexpr const char* stats = "GET /_emulator/stats";
inline constexpr const char* requests = "GET /_emulator/requests";
inline constexpr const char* health = "GET /_emulator/health";
inline constexpr const char* archive_file = "GET /_emulator/archive";
inline constexpr const char* bytes = "GET /_emulator/bytes";
inline constexpr const char* other = "other";
} // namespace route

struct reservation {
  std::string fingerprint;
  record_ptr record;
};

struct checkpoint_state {
  int archive_calls = 0;
  std::optional<int64_t> ttl;  // 0: removed
};

struct server::impl {
  explicit impl(options opts);
  ~impl();

  caf::error start();
  void stop();

  // -- dispatch (runs on a connection strand) -----------------------------------

  void handle(http_server_context&& ctx);
  void handle_create(http_server_context&& ctx);
  void handle_poll(http_server_context&& ctx, std::string id);
  void handle_tinker(http_server_context&& ctx, std::string_view path);
  void handle_stats(http_server_context&& ctx, bool summary);

  /// Records the request in the stats (and the request log) and answers.
  void finish(http_server_context&& ctx, const char* route_name,
              fault_reply reply, const std::string& fault_name = {});

  /// A copy of the request log.
  std::vector<logged_request> log_copy() const;

  /// Appends one entry to the request log (when it is on).
  void log_request(const http_server_context& ctx, const char* route_name,
                   const fault_reply& reply, int status,
                   const std::string& fault_name);

  /// Records an arrival (POST per key, GET per response id).
  void record_arrival(bool poll, const std::string& key,
                      steady::time_point at, int status,
                      const std::string& fault_name);

  // -- faults -------------------------------------------------------------------

  /// Draws the faults for one request on `route_bit`.
  fault_draw draw_faults(uint8_t route_bit);
  void count_fault(fault_kind kind);

  /// An injected status answer (429/529 with Retry-After, 5xx). `tinker`
  /// selects FastAPI's error body shape.
  fault_reply fault_status_reply(fault_kind kind, const fault_draw& d, bool tinker);

  /// Answers a Sail request with the fault `kind` drawn in `d`: a connection
  /// reset or an injected status (slow if `d` says so). Counts the faults,
  /// records an arrival of `arrival_key` (a POST's key when `record`, a GET's
  /// response id) and sends the answer.
  void finish_with_fault(http_server_context&& ctx, const char* route_name, bool poll,
                         bool record, const std::string& arrival_key,
                         steady::time_point arrived, fault_kind kind,
                         const fault_draw& d);

  // -- Sail helpers -------------------------------------------------------------

  /// The JSON of a record as served at `now`; `fresh` forces "queued".
  boost::json::object render(const response_record& rec,
                             steady::time_point now, bool fresh) const;

  /// The status word of `rec` in `phase` (options::vocabulary).
  const char* status_word(const response_record& rec,
                          response_phase phase) const noexcept;

  /// Milliseconds since the emulator started.
  double ms_since_start(steady::time_point t) const noexcept;

  /// Signature of an archive URL path with its expiry (unix milliseconds).
  std::string sign_archive(std::string_view path, int64_t expires_ms) const;

  /// Whether `url` is an archive URL this emulator handed out whose expiry
  /// has passed (a forged or foreign URL is not "expired").
  bool is_expired_archive_url(std::string_view url) const;

  /// Serves `rec` (the reply for create or poll) applying corruption faults.
  void serve_record(http_server_context&& ctx, const char* route_name,
                    record_ptr rec, unsigned status, bool fresh,
                    const fault_draw& faults, const std::string& arrival_key,
                    bool poll);

  void schedule_webhook(record_ptr rec);
  void send_webhook(record_ptr rec, int attempt);
  /// Counts one delivery attempt's answer (0: none) under the lock.
  void count_webhook_answer(const response_record& rec, int status);
  /// The TLS client context of https:// deliveries (made once); nullptr if
  /// the CA file cannot be loaded.
  boost::asio::ssl::context* webhook_tls_context();

  // -- state --------------------------------------------------------------------

  options opts;
  steady::time_point started_at;
  std::string base_url;

  mutable std::mutex mtx;
  fault_settings faults;
  std::mt19937_64 fault_rng;
  /// Webhook fault draws (their own stream: enabling them leaves the request
  /// faults' sequence unchanged).
  std::mt19937_64 webhook_rng;
  latency_model latency;
  archive_mode archive;
  int still_building_calls;
  std::set<std::string> known_loras;
  uint64_t next_response = 0;
  std::unordered_map<std::string, reservation> reservations;
  std::unordered_map<std::string, record_ptr> responses;
  std::unordered_map<std::string, checkpoint_state> checkpoints;
  stats st;
  /// Earlier prompts per prompt_cache_key (options::prompt_cache_entries).
  std::unordered_map<std::string, std::vector<std::vector<int64_t>>> prompt_cache;

  /// Billed cached tokens of `prompt` under `cache_key` (then remembers
  /// it). Called under mtx.
  int64_t cached_prefix(const std::string& cache_key, const std::vector<int64_t>& prompt);
  std::deque<logged_request> request_log;
  std::unique_ptr<boost::asio::ssl::context> webhook_tls;
  uint64_t request_log_seq = 0;
  /// Notified (notify_all, under mtx) after every update of `st`; see
  /// server::wait_until.
  std::condition_variable st_changed;

  // Declared last so that they go first: the server and threads stop before
  // the state above disappears.
  boost::asio::io_context ioc;
  std::optional<boost::asio::executor_work_guard<
    boost::asio::io_context::executor_type>>
    work;
  std::unique_ptr<http_server> http;
  std::vector<std::thread> threads;
  bool stopped = false;
};

// -- helpers shared by the translation units -------------------------------------

/// {"error":{"message","type","param","code"}}
std::string sail_error_body(std::string_view message, std::string_view type,
                            std::optional<std::string_view> param,
                            std::optional<std::string_view> code);

/// The statistics as JSON (GET /_emulator/stats).
std::string render_stats(const stats& st, bool summary);

/// The request log as JSON (GET /_emulator/requests).
std::string render_request_log(const std::vector<logged_request>& log);

/// A JSON reply with `status` and `body`.
fault_reply json_reply(unsigned status, std::string body);

/// Lowercase hex SHA-256 of `data` (OpenSSL EVP).
std::string sha256_hex(std::string_view data);

/// "Wed, 25 Nov 2026 13:00:00 GMT"
std::string http_date(std::chrono::system_clock::time_point t);

/// "2026-11-25T13:00:00Z"
std::string iso8601(std::chrono::system_clock::time_point t);

/// 64-bit mixing (splitmix64 finaliser).
uint64_t mix64(uint64_t x) noexcept;

/// FNV-1a over bytes, then mixed.
uint64_t hash_bytes(std::string_view data, uint64_t seed = 0) noexcept;

} // namespace sail::emulator
