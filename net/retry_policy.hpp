// The one retry path of sail-tinker: what counts as success for each kind of
// HTTP call, which failures are transient, how long to wait before the next
// attempt and when to give up. The HTTP worker (Sail create and poll) and the
// resolver (Tinker TTL and archive) keep a `call_attempts` per call and ask
// `retry_policy::judge` after every attempt; nothing else decides about
// retries. Modelled on Seastar's retry_strategy: separate from the transport,
// time passed in, its contract written here. How many retries a whole pool
// may send, and whether Sail is up at all, is net/retry_guard.hpp's job.
//
// Contract (sources: docs.sailresearch.com/sdk-configuration, /rate-limits,
// Tinker's Python SDK v0.25.0; docs/wire-contract.md)
//
// - Success, one rule per kind (is_success):
//     sail_create     2xx        sail_poll     2xx
//     tinker_ttl      2xx        tinker_archive 200..399 (302 + Location, or
//                                               200 JSON; redirects are not
//                                               followed)
// - Transient, retried:
//     every kind      transport errors (errc::transport_error: connect, TLS,
//                     reset, truncated body) and timeouts (errc::timeout,
//                     caf::sec::request_timeout);
//     sail_create     429, 502, 503, 504, 529. The caller sends the same
//                     Idempotency-Key and byte-identical body on every
//                     attempt, so Sail replays instead of running inference
//                     again. 500 and every other status are final (Sail's SDK
//                     surfaces 500 at once);
//     sail_poll       408, 429 and every 5xx except 501 and 505 (GETs are
//                     idempotent);
//     tinker_ttl,     408, 409, 429 and every 5xx except 501 and 505; a 503
//     tinker_archive  on the archive means "still being built" and waits
//                     still_building_delay (cause "still_building").
//   Everything else is final at once: the verdict names the status and the
//   caller decodes the body with its codec into a typed error
//   (error_from_status, tinker_error_from_status); a non-HTTP error (cancelled,
//   invalid_argument, ...) is passed through unchanged.
// - 429 without a valid Retry-After: Sail's SDK surfaces it at once (it has no
//   deadline of its own). This product retries it with its backoff: a 429 is
//   answered before acceptance (nothing reserved, nothing run), the sample owns
//   a deadline, the pool pauses new creates on it, and the pool's retry budget
//   bounds the load. DECISION, documented in docs/wire-contract.md.
// - Delay before the next attempt: full jitter, uniform in
//   [0, min(max_delay, base_delay * 2^(attempt-1))]; a Retry-After (seconds or
//   HTTP-date) is a floor, itself capped at max_retry_after.
// - Bounds: the call's deadline. No retry is scheduled whose delay would end
//   at or after call_attempts::deadline; the call then fails with
//   errc::timeout naming the last cause (and status). An attempt cap,
//   max_attempts, is a safety net only: 0 (the default) means none, so
//   transient faults never lose a sample while its deadline lasts. With a cap,
//   the last attempt's own failure is what the call fails with.
// - Health (for the pool's circuit breaker, retry_guard): a transport error,
//   a timeout, a 408 or a 5xx means Sail is failing ("down"); 429 and 529 are
//   "neutral" (Sail answers, it limits rate; the pool pauses instead); every
//   other answer means Sail is up.
//
// A retry_policy holds a random generator: not thread-safe; each actor owns
// one. With a fixed non-zero seed its sequence of decisions is deterministic.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "sail_tinker/net/http_client.hpp"

namespace sail {

/// The kinds of HTTP call; the rules differ per kind.
enum class request_kind : uint8_t {
  sail_create,    ///< POST /v1/responses (carries an Idempotency-Key)
  sail_poll,      ///< GET /v1/responses/{id}
  tinker_ttl,     ///< PUT .../checkpoints/{id}/ttl
  tinker_archive, ///< GET .../checkpoints/{id}/archive
};

/// "sail_create", "sail_poll", ...; "unknown" for other values.
const char* to_string(request_kind kind) noexcept;

/// The one success rule of each kind (see the contract above).
bool is_success(request_kind kind, unsigned status) noexcept;

struct retry_options {
  /// Safety-net cap on the attempts of one call, the first included;
  /// 0 = none (the call's deadline is the bound).
  uint32_t max_attempts = 0;
  /// Backoff cap of the first retry; doubles per attempt.
  caf::timespan base_delay = std::chrono::milliseconds(250);
  /// Upper bound of the backoff cap.
  caf::timespan max_delay = std::chrono::seconds(30);
  /// Cap on an honoured Retry-After.
  caf::timespan max_retry_after = std::chrono::seconds(60);
  /// Delay after Tinker's 503 on archive (the SDK waits 30 s).
  caf::timespan still_building_delay = std::chrono::seconds(30);

  /// invalid_argument naming the option (`prefix` + "base-delay", ...) if
  /// out of range. The pool's options are "pool.retry-...", the resolver's
  /// "resolver. ...".
  caf::error validate(const std::string& prefix = "pool.retry-") const;
};

/// What Sail's answer says about Sail's health (for the circuit breaker).
enum class call_health : uint8_t { up, down, neutral };

/// The state of one HTTP call across its attempts.
struct call_attempts {
  using time_point = std::chrono::steady_clock::time_point;

  request_kind kind = request_kind::sail_create;
  /// Attempts sent so far.
  uint32_t attempt = 0;
  /// No retry is scheduled to start at or after this point.
  time_point deadline = time_point::max();
  /// Cause and HTTP status (0: none) of the last failed attempt.
  std::string last_cause;
  unsigned last_status = 0;
  /// The next attempt is a retry (set by judge; the caller may clear it when
  /// a longer wait replaced the backoff, see retry_guard).
  bool retry_due = false;

  /// Starts a new call of `kind`.
  void start(request_kind k, time_point until = time_point::max());

  /// Records that an attempt goes out.
  void sent() noexcept {
    ++attempt;
    retry_due = false;
  }
};

/// The verdict on one attempt.
struct verdict {
  enum outcome_kind : uint8_t { success, retry, fail };
  outcome_kind outcome = fail;
  /// retry: wait this long before the next attempt.
  caf::timespan delay{0};
  /// "ok", or what failed: "transport", "timeout", "http_<status>",
  /// "still_building", "cancelled", "error", ...
  std::string cause;
  /// HTTP status of the attempt (0: no response).
  unsigned status = 0;
  call_health health = call_health::up;
  /// fail: the typed error; none when the call ended on a final HTTP status,
  /// which the caller decodes from the response body.
  caf::error error;
};

/// The classification step of a retry decision (judge's building block).
struct retry_decision {
  bool retry = false;
  /// Wait this long before the next attempt (0 when not retrying).
  caf::timespan delay{0};
  /// Stable label, see verdict::cause; set for final decisions too.
  std::string cause;
  /// True when the failure was retryable but max_attempts was reached.
  bool attempts_exhausted = false;
};

class retry_policy {
public:
  using wall_clock = std::chrono::system_clock;
  using steady_clock = std::chrono::steady_clock;

  /// seed 0 draws a seed from std::random_device.
  explicit retry_policy(retry_options opts = {}, uint64_t seed = 0);

  /// The verdict on attempt `call.attempt` of `call`, which ended with
  /// `result` (any HTTP status, or an error below HTTP). Updates `call`
  /// (last cause and status, retry_due). `wall_now` reads HTTP-date
  /// Retry-After values; `now` is compared with the call's deadline.
  verdict judge(call_attempts& call, const caf::expected<http_response>& result,
                wall_clock::time_point wall_now, steady_clock::time_point now);

  /// Decision after a failure below HTTP. `attempt` is the 1-based number of
  /// the attempt that just failed. errc::transport_error -> "transport";
  /// errc::timeout and caf::sec::request_timeout -> "timeout"; an
  /// errc::http_error carrying a status is classified like on_status without
  /// Retry-After; anything else (cancelled, invalid_argument, foreign errors,
  /// no error) is final.
  retry_decision on_transport_error(request_kind kind, uint32_t attempt,
                                    const caf::error& err);

  /// Decision after an HTTP response that is not a success for `kind`.
  /// `retry_after_header` is the raw header value (empty when absent).
  retry_decision on_status(request_kind kind, uint32_t attempt, unsigned status,
                           std::string_view retry_after_header,
                           wall_clock::time_point now);

  /// Whether `status` is transient for `kind` (ignoring the attempt cap).
  bool retryable_status(request_kind kind, unsigned status) const noexcept;

  /// Full-jitter backoff for the retry after failed attempt `attempt`
  /// (1-based; 0 is treated as 1): uniform in [0, backoff_cap(attempt)].
  caf::timespan backoff(uint32_t attempt);

  /// min(max_delay, base_delay * 2^(attempt-1)), saturating (no overflow).
  caf::timespan backoff_cap(uint32_t attempt) const noexcept;

  const retry_options& options() const noexcept;

private:
  retry_decision decide(uint32_t attempt, std::string cause,
                        caf::timespan delay) const;

  retry_options opts_;
  std::mt19937_64 rng_;
};

/// What an answer with `status` says about the health of the service.
call_health health_of_status(unsigned status) noexcept;

/// What an error below HTTP says about the health of the service.
call_health health_of_error(const caf::error& err) noexcept;

/// Parses a Retry-After value: delta-seconds (digits only; huge values
/// saturate) or an HTTP-date (the distance from `now`; a date in the past
/// clamps to 0). nullopt when absent (empty) or unparseable.
std::optional<caf::timespan>
parse_retry_after(std::string_view value,
                  std::chrono::system_clock::time_point now);

} // namespace sail
