// What keeps the retry load of a whole worker pool bounded:
//
// - retry_budget: retries may be at most `ratio` times the first attempts of
//   the last `window`, plus a floor of `min_per_second` (Finagle's
//   RetryBudget; Envoy retry budgets and gRPC retry throttling are the same
//   idea). A retry the budget refuses is not dropped: it waits and asks again
//   (the sample keeps its deadline), so the budget bounds the request rate,
//   never the outcome.
// - circuit_breaker: closed while Sail answers. It opens when, within the last
//   `window`, at least `min_failures` attempts failed in a way that means Sail
//   is failing (call_health::down: transport errors, timeouts, 408, 5xx) and
//   they make at least `failure_ratio` of the attempts judged (429/529 do not
//   count either way) -- or at once after `consecutive_failures` failures in a
//   row (a hard outage, before the window's earlier successes have aged out). Open: no attempt goes out until `open_delay` has
//   passed; then ONE attempt is let through as the probe (half-open) while
//   the others keep waiting. The probe's answer decides: Sail answered ->
//   closed; it failed -> open again, the delay doubled up to
//   `max_open_delay`. A probe without a verdict (cancelled, worker gone) is
//   replaced at once, or after `probe_timeout` if nobody says. While not
//   closed, new work is refused at once (errc::unavailable, with the time of
//   the next probe) except when a probe is due; work already in flight waits
//   with its deadline. Only the probe's result counts while not closed: late
//   answers of attempts sent before the breaker opened are ignored.
// - retry_guard: the two behind one mutex, shared by the pool (admission,
//   stats) and its workers (every attempt asks before it goes out and reports
//   how it ended). A shared object rather than a message round trip to the
//   pool per attempt: it is consulted on every HTTP call.
//
// After a wait imposed by the breaker, an attempt goes out as a fresh request,
// not as a retry: recovery after an outage is bounded by the samples in
// flight, not throttled by a budget that emptied while Sail was down.
//
// retry_budget and circuit_breaker are pure state machines: time is passed in,
// no clock, no threads, no randomness.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include <caf/timespan.hpp>

#include "sail_tinker/messages/types.hpp"
#include "sail_tinker/net/retry_policy.hpp"

namespace sail {

using steady_time = std::chrono::steady_clock::time_point;

/// Two counters over a sliding window of ten slots (the totals cover between
/// nine and ten tenths of the window).
class sliding_counts {
public:
  explicit sliding_counts(caf::timespan window);

  void add(steady_time now, uint64_t first, uint64_t second);
  /// Totals of the window ending at `now`.
  std::pair<uint64_t, uint64_t> totals(steady_time now);
  void clear() noexcept;
  /// Width of one slot (a tenth of the window).
  caf::timespan slot_width() const noexcept {
    return width_;
  }

private:
  static constexpr size_t slots = 10;
  void advance(steady_time now);

  std::array<std::pair<uint64_t, uint64_t>, slots> ring_{};
  caf::timespan width_;
  size_t head_ = 0;
  int64_t head_slot_ = -1;
  uint64_t first_ = 0;
  uint64_t second_ = 0;
};

struct retry_budget_options {
  /// Retries allowed per first attempt within the window.
  double ratio = 1.0;
  /// Floor: retries allowed per second of the window whatever the traffic.
  double min_per_second = 10;
  caf::timespan window = std::chrono::seconds(10);

  /// invalid_argument naming the field (prefixed with `prefix`) if out of range.
  caf::error validate(const std::string& prefix = "retry_budget.") const;
};

class retry_budget {
public:
  explicit retry_budget(retry_budget_options opts = {});

  /// A first attempt went out (deposits into the budget).
  void on_request(steady_time now);
  /// Whether a retry may go out now; if so it is counted against the budget,
  /// if not it is counted as denied.
  bool try_retry(steady_time now);
  /// How long a denied retry should wait before it asks again.
  caf::timespan retry_wait() const noexcept {
    return counts_.slot_width();
  }

  uint64_t requests(steady_time now);
  uint64_t retries(steady_time now);
  /// Retries the window allows now: floor + ratio * requests.
  uint64_t allowed(steady_time now);
  uint64_t denied() const noexcept {
    return denied_;
  }

private:
  uint64_t allowed_for(uint64_t requests) const noexcept;

  retry_budget_options opts_;
  sliding_counts counts_; ///< first: requests, second: retries
  uint64_t denied_ = 0;
};

enum class breaker_state : uint8_t { closed, half_open, open };

/// "closed", "half_open", "open".
const char* to_string(breaker_state state) noexcept;

struct circuit_breaker_options {
  /// Failures within the window needed to open; 0 disables the breaker.
  uint32_t min_failures = 20;
  /// ...and the share of the window's judged attempts they must make.
  double failure_ratio = 0.8;
  /// Failures in a row (no success between them) that open it whatever the
  /// window holds; 0: this rule is off.
  uint32_t consecutive_failures = 50;
  caf::timespan window = std::chrono::seconds(10);
  /// Wait before the first probe; doubles per failed probe up to the max.
  caf::timespan open_delay = std::chrono::seconds(1);
  caf::timespan max_open_delay = std::chrono::seconds(30);
  /// A probe without a verdict after this long is replaced.
  caf::timespan probe_timeout = std::chrono::seconds(30);

  /// invalid_argument naming the field (prefixed with `prefix`) if out of range.
  caf::error validate(const std::string& prefix = "breaker.") const;
};

class circuit_breaker {
public:
  /// May an attempt go out? `probe` != 0: it is the probe with this id.
  struct permit {
    bool go = true;
    uint64_t probe = 0;
    /// !go: ask again after this long.
    caf::timespan wait{0};
  };

  explicit circuit_breaker(circuit_breaker_options opts = {});

  permit admit(steady_time now);
  /// Records how an attempt ended (`probe`: its permit's probe id, or 0).
  /// Returns whether the state changed.
  bool on_result(steady_time now, call_health health, uint64_t probe,
                 const std::string& cause);
  /// The probe's call ended without a verdict: the next attempt probes.
  void abandon_probe(steady_time now, uint64_t probe);

  /// Whether new work is admitted: closed, or a probe is due.
  bool accepts_new_work(steady_time now) const noexcept;

  breaker_state state() const noexcept {
    return state_;
  }
  /// Open: when the next probe may go. Half-open: when the probe in flight
  /// is replaced if it has no verdict by then.
  steady_time next_probe() const noexcept;
  /// Why the breaker opened last, e.g. "24 of 25 attempts failed within 10s
  /// (last: http_503)".
  const std::string& reason() const noexcept {
    return reason_;
  }
  uint64_t opened() const noexcept {
    return opened_;
  }
  uint64_t probes() const noexcept {
    return probes_;
  }

private:
  void open(steady_time now, caf::timespan delay);
  void close();

  circuit_breaker_options opts_;
  sliding_counts counts_; ///< first: failures, second: successes
  uint32_t streak_ = 0;   ///< failures since the last success
  breaker_state state_ = breaker_state::closed;
  caf::timespan delay_;
  steady_time probe_at_{};
  steady_time probe_started_{};
  uint64_t probe_id_ = 0;
  uint64_t opened_ = 0;
  uint64_t probes_ = 0;
  std::string reason_;
};

/// The budget and the breaker of one worker pool, thread-safe.
class retry_guard {
public:
  /// Called on every change of the breaker's state, outside the guard's
  /// lock, possibly from several threads at once.
  using listener = std::function<void(breaker_state, const std::string& detail)>;

  struct permit {
    bool go = true;
    uint64_t probe = 0;
    caf::timespan wait{0};
    /// !go because of the breaker (the next attempt is a fresh request).
    bool held_by_breaker = false;
  };

  retry_guard(retry_budget_options budget, circuit_breaker_options breaker,
              listener on_change = {});

  /// Asks before an attempt goes out; `retry`: it follows a failed attempt.
  permit before_attempt(steady_time now, bool retry);
  /// Reports how an attempt ended.
  void after_attempt(steady_time now, call_health health, uint64_t probe,
                     const std::string& cause);
  /// The probe's call ended without a verdict.
  void abandon_probe(steady_time now, uint64_t probe);
  /// nullopt when new work may start; else why not and when the breaker
  /// probes next (the message of errc::unavailable). Counts refusals.
  std::optional<std::string> refuse_new_work(steady_time now);

  retry_guard_stats stats(steady_time now);

private:
  void notify(breaker_state state, std::string detail);

  std::mutex mtx_;
  retry_budget budget_;
  circuit_breaker breaker_;
  listener listener_;
  uint64_t held_ = 0;
  uint64_t rejected_ = 0;
};

} // namespace sail
