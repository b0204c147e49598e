// http_client + retry_policy: retries a request per the policy's rules, waiting
// on asio timers (never blocking), within the request's overall deadline.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "sail_tinker/net/http_client.hpp"
#include "sail_tinker/net/retry_policy.hpp"

namespace sail {

/// One attempt of a retried request.
struct retry_attempt {
  /// 1-based attempt number.
  uint32_t number = 0;
  /// HTTP status of the attempt, 0 for a transport failure.
  unsigned status = 0;
  /// "ok" for a success, else the policy's cause label ("transport",
  /// "timeout", "http_503", "still_building", ...).
  std::string cause;
  /// Whether another attempt followed.
  bool retried = false;
  /// Delay waited before the next attempt (0 if none).
  caf::timespan delay{0};
};

/// What happened to a request across its attempts (for stats).
struct retry_report {
  std::vector<retry_attempt> attempts;
  /// The policy's attempt cap ended the request.
  bool attempts_exhausted = false;
  /// The next retry would have passed the request's deadline.
  bool deadline_reached = false;

  /// Number of retries (attempts after the first).
  uint32_t retries() const noexcept {
    return attempts.empty() ? 0 : static_cast<uint32_t>(attempts.size() - 1);
  }
};

class retrying_client {
public:
  using callback
    = std::function<void(caf::expected<http_response>, retry_report)>;

  /// `seed` 0: random jitter; otherwise deterministic per request order.
  retrying_client(std::shared_ptr<http_client> client, retry_options opts = {},
                  uint64_t seed = 0);

  /// Sends `req`, retrying per the policy for `kind`. Every attempt sends the
  /// same request (same Idempotency-Key, byte-identical body). req.deadline
  /// (0 = none) caps the whole call, retries and waits included. `done` runs
  /// once on an io_context thread with: the first 2xx/3xx response; the final
  /// non-2xx response when the status is not retryable or retries ran out
  /// (callers classify it); or the last transport error.
  void async_request(http_request req, request_kind kind, callback done);

  http_client& client() noexcept {
    return *client_;
  }

  const retry_options& options() const noexcept {
    return opts_;
  }

private:
  std::shared_ptr<http_client> client_;
  retry_options opts_;
  uint64_t seed_;
  std::atomic<uint64_t> calls_{0};
};

} // namespace sail
