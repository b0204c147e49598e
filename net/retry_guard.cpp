#include "sail_tinker/net/retry_guard.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/option_check.hpp"

namespace sail {

namespace {

/// "1.4s" (one decimal; at least 0).
std::string seconds_text(caf::timespan d) {
  auto s = std::max(0.0, std::chrono::duration<double>(d).count());
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1fs", s);
  return buf;
}

caf::timespan since(steady_time later, steady_time earlier) {
  return std::chrono::duration_cast<caf::timespan>(later - earlier);
}

} // namespace

// -- sliding_counts -----------------------------------------------------------------

sliding_counts::sliding_counts(caf::timespan window)
  : width_(std::max(caf::timespan{1}, window / static_cast<int64_t>(slots))) {
}

void sliding_counts::advance(steady_time now) {
  auto slot = std::chrono::duration_cast<caf::timespan>(now.time_since_epoch()).count()
              / width_.count();
  if (head_slot_ < 0) {
    head_slot_ = slot;
    return;
  }
  if (slot <= head_slot_)
    return;
  auto steps = std::min<int64_t>(slot - head_slot_, static_cast<int64_t>(slots));
  for (int64_t i = 0; i < steps; ++i) {
    head_ = (head_ + 1) % slots;
    first_ -= ring_[head_].first;
    second_ -= ring_[head_].second;
    ring_[head_] = {0, 0};
  }
  head_slot_ = slot;
}

void sliding_counts::add(steady_time now, uint64_t first, uint64_t second) {
  advance(now);
  ring_[head_].first += first;
  ring_[head_].second += second;
  first_ += first;
  second_ += second;
}

std::pair<uint64_t, uint64_t> sliding_counts::totals(steady_time now) {
  advance(now);
  return {first_, second_};
}

void sliding_counts::clear() noexcept {
  ring_ = {};
  first_ = 0;
  second_ = 0;
}

// -- retry_budget -------------------------------------------------------------------

caf::error retry_budget_options::validate(const std::string& prefix) const {
  using namespace option_check;
  constexpr auto unbounded = std::numeric_limits<double>::infinity();
  return first_error(within(ratio, 0.0, true, unbounded, false, prefix + "ratio"),
                     within(min_per_second, 0.0, true, unbounded, false,
                            prefix + "min-per-second"),
                     positive(window, prefix + "window"));
}

retry_budget::retry_budget(retry_budget_options opts)
  : opts_(opts), counts_(opts.window) {
}

void retry_budget::on_request(steady_time now) {
  counts_.add(now, 1, 0);
}

uint64_t retry_budget::allowed_for(uint64_t requests) const noexcept {
  auto window_s = std::chrono::duration<double>(opts_.window).count();
  auto allowed = opts_.min_per_second * window_s
                 + opts_.ratio * static_cast<double>(requests);
  if (!(allowed < 1e18))
    return static_cast<uint64_t>(1e18);
  return static_cast<uint64_t>(allowed);
}

bool retry_budget::try_retry(steady_time now) {
  auto [requests, retries] = counts_.totals(now);
  if (retries >= allowed_for(requests)) {
    ++denied_;
    return false;
  }
  counts_.add(now, 0, 1);
  return true;
}

uint64_t retry_budget::requests(steady_time now) {
  return counts_.totals(now).first;
}

uint64_t retry_budget::retries(steady_time now) {
  return counts_.totals(now).second;
}

uint64_t retry_budget::allowed(steady_time now) {
  return allowed_for(counts_.totals(now).first);
}

// -- circuit_breaker ----------------------------------------------------------------

const char* to_string(breaker_state state) noexcept {
  switch (state) {
    case breaker_state::closed:
      return "closed";
    case breaker_state::half_open:
      return "half_open";
    case breaker_state::open:
      return "open";
  }
  return "unknown";
}

caf::error circuit_breaker_options::validate(const std::string& prefix) const {
  using namespace option_check;
  if (auto err = first_error(within(failure_ratio, 0.0, false, 1.0, true,
                                    prefix + "failure-ratio"),
                             positive(window, prefix + "window")))
    return err;
  if (open_delay.count() <= 0 || max_open_delay < open_delay)
    return invalid_argument(prefix + "open-delay",
                            "need 0 < open-delay <= max-open-delay");
  return positive(probe_timeout, prefix + "probe-timeout");
}

circuit_breaker::circuit_breaker(circuit_breaker_options opts)
  : opts_(opts), counts_(opts.window), delay_(opts.open_delay) {
}

circuit_breaker::permit circuit_breaker::admit(steady_time now) {
  switch (state_) {
    case breaker_state::closed:
      return {};
    case breaker_state::open:
      if (now < probe_at_)
        return {false, 0, since(probe_at_, now)};
      break;
    case breaker_state::half_open:
      if (now < probe_started_ + opts_.probe_timeout)
        // Someone probes: look again soon (the probe may close the breaker).
        return {false, 0,
                std::min(opts_.open_delay, since(probe_started_ + opts_.probe_timeout, now))};
      break;
  }
  state_ = breaker_state::half_open;
  probe_started_ = now;
  ++probes_;
  return {true, ++probe_id_, caf::timespan{0}};
}

bool circuit_breaker::on_result(steady_time now, call_health health, uint64_t probe,
                                const std::string& cause) {
  if (opts_.min_failures == 0)
    return false;
  if (state_ != breaker_state::closed) {
    // Only the current probe's verdict counts while not closed.
    if (probe == 0 || probe != probe_id_ || state_ != breaker_state::half_open)
      return false;
    if (health == call_health::down)
      open(now, std::min(delay_ * 2, opts_.max_open_delay));
    else
      close();
    return true;
  }
  if (health == call_health::neutral)
    return false;
  counts_.add(now, health == call_health::down ? 1 : 0, health == call_health::up ? 1 : 0);
  if (health != call_health::down) {
    streak_ = 0;
    return false;
  }
  ++streak_;
  auto [failures, successes] = counts_.totals(now);
  auto judged = failures + successes;
  if (opts_.consecutive_failures != 0 && streak_ >= opts_.consecutive_failures)
    reason_ = std::to_string(streak_) + " attempts in a row failed (last: " + cause + ")";
  else if (failures >= opts_.min_failures
           && static_cast<double>(failures)
                >= opts_.failure_ratio * static_cast<double>(judged))
    reason_ = std::to_string(failures) + " of " + std::to_string(judged)
              + " attempts failed within " + seconds_text(opts_.window) + " (last: " + cause
              + ")";
  else
    return false;
  ++opened_;
  open(now, opts_.open_delay);
  return true;
}

void circuit_breaker::abandon_probe(steady_time now, uint64_t probe) {
  if (state_ == breaker_state::half_open && probe != 0 && probe == probe_id_) {
    state_ = breaker_state::open;
    probe_at_ = now;
  }
}

bool circuit_breaker::accepts_new_work(steady_time now) const noexcept {
  switch (state_) {
    case breaker_state::closed:
      return true;
    case breaker_state::open:
      return now >= probe_at_;
    case breaker_state::half_open:
      return now >= probe_started_ + opts_.probe_timeout;
  }
  return true;
}

steady_time circuit_breaker::next_probe() const noexcept {
  return state_ == breaker_state::half_open ? probe_started_ + opts_.probe_timeout
                                            : probe_at_;
}

void circuit_breaker::open(steady_time now, caf::timespan delay) {
  state_ = breaker_state::open;
  delay_ = delay;
  probe_at_ = now + delay;
}

void circuit_breaker::close() {
  state_ = breaker_state::closed;
  delay_ = opts_.open_delay;
  counts_.clear();
  streak_ = 0;
}

// -- retry_guard --------------------------------------------------------------------

retry_guard::retry_guard(retry_budget_options budget, circuit_breaker_options breaker,
                         listener on_change)
  : budget_(budget), breaker_(breaker), listener_(std::move(on_change)) {
}

retry_guard::permit retry_guard::before_attempt(steady_time now, bool retry) {
  std::unique_lock<std::mutex> guard{mtx_};
  auto before = breaker_.state();
  auto p = breaker_.admit(now);
  if (!p.go) {
    ++held_;
    return {false, 0, p.wait, true};
  }
  if (p.probe != 0) {
    guard.unlock();
    if (before != breaker_state::half_open)
      notify(breaker_state::half_open, "probing Sail with one attempt");
    return {true, p.probe, caf::timespan{0}, false};
  }
  if (!retry) {
    budget_.on_request(now);
    return {};
  }
  if (budget_.try_retry(now))
    return {};
  return {false, 0, budget_.retry_wait(), false};
}

void retry_guard::after_attempt(steady_time now, call_health health, uint64_t probe,
                                const std::string& cause) {
  std::unique_lock<std::mutex> guard{mtx_};
  if (!breaker_.on_result(now, health, probe, cause))
    return;
  auto state = breaker_.state();
  std::string detail;
  if (state == breaker_state::open)
    detail = (probe != 0 ? "the probe failed (" + cause + ")" : breaker_.reason())
             + "; next probe in " + seconds_text(since(breaker_.next_probe(), now));
  else
    detail = "the probe succeeded";
  guard.unlock();
  notify(state, std::move(detail));
}

void retry_guard::abandon_probe(steady_time now, uint64_t probe) {
  std::lock_guard<std::mutex> guard{mtx_};
  breaker_.abandon_probe(now, probe);
}

std::optional<std::string> retry_guard::refuse_new_work(steady_time now) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (breaker_.accepts_new_work(now))
    return std::nullopt;
  ++rejected_;
  std::string msg = "Sail is unavailable: the circuit breaker opened after "
                    + breaker_.reason();
  if (breaker_.state() == breaker_state::half_open)
    msg += "; a probe is in flight (replaced in "
           + seconds_text(since(breaker_.next_probe(), now)) + " if it gets no answer)";
  else
    msg += "; next probe in " + seconds_text(since(breaker_.next_probe(), now));
  return msg;
}

retry_guard_stats retry_guard::stats(steady_time now) {
  std::lock_guard<std::mutex> guard{mtx_};
  retry_guard_stats s;
  s.breaker = to_string(breaker_.state());
  s.breaker_opened = breaker_.opened();
  if (breaker_.state() == breaker_state::open)
    s.next_probe_ms = std::max<int64_t>(
      0, std::chrono::duration_cast<std::chrono::milliseconds>(breaker_.next_probe() - now)
           .count());
  s.probes = breaker_.probes();
  s.held = held_;
  s.rejected = rejected_;
  s.budget_requests = budget_.requests(now);
  s.budget_retries = budget_.retries(now);
  s.budget_allowed = budget_.allowed(now);
  s.budget_denied = budget_.denied();
  return s;
}

void retry_guard::notify(breaker_state state, std::string detail) {
  if (listener_)
    listener_(state, detail);
}

} // namespace sail
