// The retry policy: classifies a failed attempt (transport error or HTTP
// status) into "retry after this delay" or "give up". It is its own component,
// independent of the transport; the transport asks it after every failure.
//
// Rules (contracts sail-raw-token.md "Errors and retries" and tinker-rest.md):
// - sail_create (POST with Idempotency-Key): retry transport errors, timeouts,
//   429, 502, 503, 504, 529. 500 and every other 4xx/5xx are final.
// - sail_poll and other_get (idempotent GETs): retry transport errors,
//   timeouts, 408, 429, 500, 502, 503, 504, 529. Every other status is final.
// - tinker_ttl (PUT) and tinker_archive (GET): retry transport errors,
//   timeouts, 408, 409, 429 and every 5xx. A 503 on tinker_archive means "the
//   archive is still being built": the delay is still_building_delay (cause
//   "still_building").
// - Delays: exponential backoff with full jitter; a Retry-After header is a
//   floor: delay = max(jittered backoff, min(retry_after, max_retry_after)).
// - An attempt number >= max_attempts never retries.
//
// A retry_policy holds a random generator: it is not thread-safe; give each
// actor / connection its own instance (they are cheap). With a fixed non-zero
// seed, the sequence of decisions is deterministic.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include <caf/error.hpp>
#include <caf/timespan.hpp>

namespace sail {

/// What kind of request failed; the rules differ per kind.
enum class request_kind : uint8_t {
  sail_create,    ///< POST /v1/responses (carries an Idempotency-Key)
  sail_poll,      ///< GET /v1/responses/{id}
  tinker_ttl,     ///< PUT .../checkpoints/{id}/ttl
  tinker_archive, ///< GET .../checkpoints/{id}/archive
  other_get,      ///< any other idempotent GET
};

/// "sail_create", "sail_poll", ...; "unknown" for other values.
const char* to_string(request_kind kind) noexcept;

struct retry_options {
  /// Total attempts including the first.
  uint32_t max_attempts = 6;
  /// Backoff cap of the first retry; doubles per attempt.
  caf::timespan base_delay = std::chrono::milliseconds(250);
  /// Upper bound of the backoff cap.
  caf::timespan max_delay = std::chrono::seconds(30);
  /// Cap on an honoured Retry-After.
  caf::timespan max_retry_after = std::chrono::seconds(60);
  /// Delay after Tinker's 503 on archive (the SDK waits 30 s).
  caf::timespan still_building_delay = std::chrono::seconds(30);
};

struct retry_decision {
  bool retry = false;
  /// Wait this long before the next attempt (0 when not retrying).
  caf::timespan delay{0};
  /// Stable label for stats: "transport", "timeout", "http_<status>" (e.g.
  /// "http_429", "http_503"), "still_building", "cancelled", "error". Set for
  /// final decisions too, naming what ended the request.
  std::string cause;
  /// True when the failure was retryable but the attempt cap was reached.
  bool attempts_exhausted = false;
};

class retry_policy {
public:
  /// seed 0 draws a seed from std::random_device.
  explicit retry_policy(retry_options opts = {}, uint64_t seed = 0);

  /// Decision after a failure below HTTP. `attempt` is the 1-based number of
  /// the attempt that just failed. errc::transport_error -> "transport";
  /// errc::timeout and caf::sec::request_timeout -> "timeout" (both retried
  /// for every kind); an errc::http_error carrying a status is classified like
  /// on_status without Retry-After; anything else (cancelled, invalid_argument,
  /// foreign errors, no error) is final.
  retry_decision on_transport_error(request_kind kind, uint32_t attempt,
                                    const caf::error& err);

  /// Decision after an HTTP response with a non-success status. 1xx/2xx/3xx
  /// statuses are never retried. `retry_after_header` is the raw header value
  /// (empty when absent); `now` is used for HTTP-date values.
  retry_decision on_status(request_kind kind, uint32_t attempt, unsigned status,
                           std::string_view retry_after_header,
                           std::chrono::system_clock::time_point now);

  /// Whether `status` is retryable for `kind` (ignoring the attempt cap).
  bool retryable_status(request_kind kind, unsigned status) const noexcept;

  /// Full-jitter backoff for the retry after failed attempt `attempt`
  /// (1-based; 0 is treated as 1): uniform in
  /// [0, backoff_cap(attempt)]. Advances the random generator.
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

/// Parses a Retry-After value: delta-seconds (digits only; huge values
/// saturate) or an HTTP-date (the distance from `now`; a date in the past
/// clamps to 0). nullopt when absent (empty) or unparseable.
std::optional<caf::timespan>
parse_retry_after(std::string_view value,
                  std::chrono::system_clock::time_point now);

} // namespace sail
