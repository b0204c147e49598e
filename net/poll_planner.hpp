// Adaptive polling: the pool learns, per (model, completion
// window), the distribution of completion latency from the samples it
// finished, and plans each new sample's polls around the expected completion.
// Pure and deterministic: no clock, no randomness (the worker adds jitter).
//
// The rule (docs/operations.md, "Adaptive polling"), with F the learned CDF of
// latency (measured from the create's acceptance), Q its inverse, m = 1 /
// adaptive_poll_options::polls, and the window's configured first_poll and
// max_poll:
//
//   nothing learned (fewer than min_samples observations): no plan; the
//   worker polls on the configured timing (first_poll, growth, max_poll).
//
//   t_1     = max(first_poll, Q(m))                       first poll near a low quantile
//   t_k+1   = t_k + clamp(Q(F(t_k) + m) - t_k,            each gap spans at most m of
//                         first_poll, G)                  the probability mass: dense
//                                                         where completions are dense
//   with G = max_gap_factor * max_poll (2.5 x by default)
//   the plan ends once F(t_k) >= 0.99 (or after max_plan_polls); later polls
//   follow the configured growth from the last gap, capped at max_poll.
//
// So a sample is polled about `polls` times across the learned distribution,
// never more often than every first_poll. Where little probability mass lies
// (the long tail of a wide spread) a gap may stretch past the window's
// max_poll, up to G: with the cap at max_poll itself, a wide spread (5-120 s
// log-uniform) costs a 60 s sample 12 GETs instead of 7-8, because every gap
// after the first minute sits at the cap (bench/notice_bench, docs/benchmarks.md
// "Completion notice", where the choice of 2.5 is measured). Once the plan
// has ended, or when nothing is learned, max_poll bounds every gap again.
//
// A key's plan is computed once and reused until the key has seen 1/32 more
// observations than when it was made (at most ~3 % of the mass has moved),
// or the window's bounds differ: planning walks the histogram up to
// max_plan_polls times, which would otherwise cost every dispatch.
//
// Memory is bounded: one fixed-size log-bucket histogram per key (96
// counters), counts halved whenever a key reaches 2 * memory observations
// (recent behaviour dominates), at most max_keys keys (the least recently
// observed is forgotten).
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/timespan.hpp>

namespace sail {

/// Log-bucketed histogram of latencies: bucket i holds [base * r^i,
/// base * r^(i+1)) with base = 10 ms and r = 2^(1/4) (about 19 % wide), from
/// 10 ms to about 37 h; shorter latencies count in bucket 0, longer ones in
/// the last. Quantiles interpolate geometrically inside a bucket.
class latency_sketch {
public:
  static constexpr size_t bucket_count = 96;

  /// Lower bound of bucket i.
  static caf::timespan bucket_floor(size_t i) noexcept;

  void add(caf::timespan latency) noexcept;

  /// Observations held (after halvings).
  uint64_t count() const noexcept {
    return total_;
  }

  /// The latency below which a fraction q (0..1) of the observations fall;
  /// zero when empty.
  caf::timespan quantile(double q) const noexcept;

  /// The fraction of observations below `t` (the inverse of quantile).
  double cdf(caf::timespan t) const noexcept;

  /// Halves every counter (rounding up non-zero ones, so that no bucket that
  /// held observations disappears at once).
  void halve() noexcept;

private:
  std::array<uint32_t, bucket_count> counts_{};
  uint64_t total_ = 0;
};

struct adaptive_poll_options {
  /// Off: every sample polls on its window's configured timing.
  bool enabled = true;
  /// Observations of a (model, window) before its plan replaces the
  /// configured timing.
  uint32_t min_samples = 20;
  /// About this many polls across the learned distribution (each gap spans
  /// 1/polls of the probability mass).
  uint32_t polls = 8;
  /// A key's counters are halved when it holds 2 * memory observations.
  uint32_t memory = 1000;
  /// (model, window) keys tracked at most.
  size_t max_keys = 64;
  /// Longest plan (its later polls follow the configured growth).
  size_t max_plan_polls = 64;
  /// A planned gap may stretch to this multiple of the window's max_poll
  /// where little probability mass lies (>= 1; 1 keeps max_poll as the cap).
  double max_gap_factor = 2.5;

  /// invalid_argument naming the option (`prefix` + "polls", ...) if out of
  /// range.
  caf::error validate(const std::string& prefix = "pool.adaptive-") const;
};

/// The planned polls of one sample: offsets from the create's acceptance,
/// ascending. Empty: poll on the configured timing.
struct poll_plan {
  std::vector<caf::timespan> offsets;

  bool empty() const noexcept {
    return offsets.empty();
  }
};

class poll_planner {
public:
  explicit poll_planner(adaptive_poll_options opts = {});

  /// Records the completion latency of a sample of (model, window).
  void observe(const std::string& model, const std::string& window,
               caf::timespan latency);

  /// The plan for a new sample of (model, window) under the window's
  /// configured bounds (see the rule above).
  poll_plan plan(const std::string& model, const std::string& window,
                 caf::timespan first_poll, caf::timespan max_poll) const;

  /// The sketch of (model, window), or nullptr.
  const latency_sketch* find(const std::string& model,
                             const std::string& window) const;

  /// Keys tracked.
  size_t keys() const noexcept {
    return entries_.size();
  }

  const adaptive_poll_options& options() const noexcept {
    return opts_;
  }

private:
  using key_type = std::pair<std::string, std::string>;
  struct entry {
    latency_sketch sketch;
    std::list<key_type>::iterator lru;
    /// Observations ever made of this key (not halved).
    uint64_t observed = 0;
    /// The last plan made, for `observed_at` and these bounds.
    mutable poll_plan cached;
    mutable uint64_t cached_at = 0;
    mutable caf::timespan cached_first{0};
    mutable caf::timespan cached_max{0};
  };

  poll_plan make_plan(const latency_sketch& sketch, caf::timespan first_poll,
                      caf::timespan max_poll) const;

  adaptive_poll_options opts_;
  std::map<key_type, entry> entries_;
  /// Most recently observed first.
  std::list<key_type> lru_;
};

} // namespace sail
