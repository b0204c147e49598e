#include "sail_tinker/net/poll_planner.hpp"

#include <algorithm>
#include <cmath>

#include "sail_tinker/messages/option_check.hpp"

namespace sail {

namespace {

constexpr double base_ns = 10e6; // 10 ms
constexpr double ratio_log2 = 0.25; // r = 2^(1/4)

double floor_ns(double i) noexcept {
  return base_ns * std::exp2(i * ratio_log2);
}

caf::timespan to_span(double ns) noexcept {
  return caf::timespan{static_cast<int64_t>(std::llround(ns))};
}

} // namespace

// -- latency_sketch -----------------------------------------------------------------

caf::timespan latency_sketch::bucket_floor(size_t i) noexcept {
  return to_span(floor_ns(static_cast<double>(i)));
}

void latency_sketch::add(caf::timespan latency) noexcept {
  auto ns = static_cast<double>(latency.count());
  size_t i = 0;
  if (ns > base_ns) {
    auto pos = std::log2(ns / base_ns) / ratio_log2;
    i = std::min(bucket_count - 1, static_cast<size_t>(pos));
  }
  ++counts_[i];
  ++total_;
}

caf::timespan latency_sketch::quantile(double q) const noexcept {
  if (total_ == 0)
    return caf::timespan{0};
  q = std::clamp(q, 0.0, 1.0);
  auto target = q * static_cast<double>(total_);
  double seen = 0;
  for (size_t i = 0; i < bucket_count; ++i) {
    auto n = static_cast<double>(counts_[i]);
    if (n == 0)
      continue;
    if (seen + n >= target) {
      auto frac = std::clamp((target - seen) / n, 0.0, 1.0);
      return to_span(floor_ns(static_cast<double>(i) + frac));
    }
    seen += n;
  }
  return to_span(floor_ns(static_cast<double>(bucket_count)));
}

double latency_sketch::cdf(caf::timespan t) const noexcept {
  if (total_ == 0)
    return 0;
  auto ns = static_cast<double>(t.count());
  double pos = ns <= base_ns ? 0.0 : std::log2(ns / base_ns) / ratio_log2;
  double below = 0;
  for (size_t i = 0; i < bucket_count; ++i) {
    auto n = static_cast<double>(counts_[i]);
    auto lo = static_cast<double>(i);
    if (pos >= lo + 1) {
      below += n;
      continue;
    }
    if (pos > lo)
      below += n * (pos - lo);
    break;
  }
  return std::clamp(below / static_cast<double>(total_), 0.0, 1.0);
}

void latency_sketch::halve() noexcept {
  total_ = 0;
  for (auto& n : counts_) {
    n = (n + 1) / 2;
    total_ += n;
  }
}

// -- poll_planner -------------------------------------------------------------------

poll_planner::poll_planner(adaptive_poll_options opts) : opts_(opts) {
  opts_.polls = std::max<uint32_t>(opts_.polls, 1);
  opts_.memory = std::max<uint32_t>(opts_.memory, 1);
  opts_.max_keys = std::max<size_t>(opts_.max_keys, 1);
  opts_.max_plan_polls = std::max<size_t>(opts_.max_plan_polls, 1);
}

void poll_planner::observe(const std::string& model, const std::string& window,
                           caf::timespan latency) {
  if (!opts_.enabled)
    return;
  key_type key{model, window};
  auto i = entries_.find(key);
  if (i == entries_.end()) {
    if (entries_.size() >= opts_.max_keys) {
      entries_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(key);
    entry fresh;
    fresh.lru = lru_.begin();
    i = entries_.emplace(std::move(key), std::move(fresh)).first;
  } else {
    lru_.splice(lru_.begin(), lru_, i->second.lru);
  }
  ++i->second.observed;
  auto& sketch = i->second.sketch;
  sketch.add(latency);
  if (sketch.count() >= 2ull * opts_.memory)
    sketch.halve();
}

const latency_sketch* poll_planner::find(const std::string& model,
                                         const std::string& window) const {
  auto i = entries_.find(key_type{model, window});
  return i == entries_.end() ? nullptr : &i->second.sketch;
}

poll_plan poll_planner::plan(const std::string& model, const std::string& window,
                             caf::timespan first_poll, caf::timespan max_poll) const {
  if (!opts_.enabled)
    return {};
  auto i = entries_.find(key_type{model, window});
  if (i == entries_.end() || i->second.sketch.count() < opts_.min_samples)
    return {};
  auto& e = i->second;
  auto refresh_every = std::max<uint64_t>(1, e.sketch.count() / 32);
  if (e.cached.empty() || e.observed - e.cached_at >= refresh_every
      || e.cached_first != first_poll || e.cached_max != max_poll) {
    e.cached = make_plan(e.sketch, first_poll, max_poll);
    e.cached_at = e.observed;
    e.cached_first = first_poll;
    e.cached_max = max_poll;
  }
  return e.cached;
}

poll_plan poll_planner::make_plan(const latency_sketch& s, caf::timespan first_poll,
                                  caf::timespan max_poll) const {
  auto* sketch = &s;
  poll_plan result;
  auto min_gap = std::max(first_poll, caf::timespan{std::chrono::milliseconds(1)});
  auto max_gap = std::max(std::chrono::duration_cast<caf::timespan>(
                             max_poll * std::max(opts_.max_gap_factor, 1.0)),
                           min_gap);
  auto mass = 1.0 / static_cast<double>(opts_.polls);
  auto t = std::max(min_gap, sketch->quantile(mass));
  result.offsets.push_back(t);
  while (result.offsets.size() < opts_.max_plan_polls) {
    auto reached = sketch->cdf(t);
    if (reached >= 0.99)
      break;
    auto target = sketch->quantile(std::min(reached + mass, 0.995));
    auto gap = std::clamp(target - t, min_gap, max_gap);
    t += gap;
    result.offsets.push_back(t);
  }
  return result;
}

caf::error adaptive_poll_options::validate(const std::string& prefix) const {
  using namespace option_check;
  return first_error(within(polls, 1, 1000, prefix + "polls"),
                     within(max_gap_factor, 1.0, true, 100.0, true, prefix + "max-gap-factor"));
}

} // namespace sail
