// The adaptive polling planner: a pure component, so its
// rule is checked on exact inputs here; tests/test_webhooks.cpp checks it on
// the wire (poll arrivals recorded by the emulator).
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <random>
#include <vector>

#include "sail_tinker/net/poll_planner.hpp"

using namespace sail;
using namespace std::chrono_literals;

namespace {

double secs(caf::timespan t) {
  return std::chrono::duration<double>(t).count();
}

caf::timespan from_secs(double s) {
  return std::chrono::duration_cast<caf::timespan>(std::chrono::duration<double>(s));
}

/// Latencies of a seeded log-normal (median m seconds, sigma s).
std::vector<caf::timespan> lognormal(size_t n, double m, double s, uint64_t seed) {
  std::mt19937_64 rng{seed};
  std::normal_distribution<double> z;
  std::vector<caf::timespan> out;
  for (size_t i = 0; i < n; ++i)
    out.push_back(from_secs(m * std::exp(s * z(rng))));
  return out;
}

/// Polls a sample of latency `l` costs under `plan` (then growth 1.5 from
/// the last gap, capped), and the delay between completion and notice.
std::pair<int, double> simulate(const poll_plan& plan, caf::timespan l,
                                caf::timespan max_poll) {
  int polls = 0;
  caf::timespan prev{0};
  caf::timespan gap{0};
  for (auto t : plan.offsets) {
    ++polls;
    gap = t - prev;
    prev = t;
    if (t >= l)
      return {polls, secs(t - l)};
  }
  while (true) {
    gap = std::min(std::chrono::duration_cast<caf::timespan>(gap * 1.5), max_poll);
    prev += gap;
    ++polls;
    if (prev >= l)
      return {polls, secs(prev - l)};
  }
}

} // namespace

TEST_CASE("latency sketch: quantiles and cdf within a bucket's width",
          "[poll_planner]") {
  latency_sketch s;
  CHECK(s.quantile(0.5) == caf::timespan{0});
  CHECK(s.cdf(1s) == 0.0);
  for (int i = 1; i <= 1000; ++i)
    s.add(from_secs(i * 0.1)); // uniform 0.1 .. 100 s
  CHECK(s.count() == 1000);
  for (double q : {0.1, 0.25, 0.5, 0.75, 0.9, 0.99}) {
    INFO("q " << q);
    auto want = q * 100.0;
    CHECK(secs(s.quantile(q)) == Approx(want).epsilon(0.2));
    CHECK(s.cdf(from_secs(want)) == Approx(q).epsilon(0.2));
  }
  // Monotonic.
  caf::timespan last{0};
  for (double q = 0; q <= 1.0; q += 0.01) {
    auto v = s.quantile(q);
    CHECK(v >= last);
    last = v;
  }
  // Out of range values land in the first and last bucket.
  latency_sketch t;
  t.add(1ms);
  t.add(1000h);
  CHECK(t.quantile(0.0) <= latency_sketch::bucket_floor(1));
  CHECK(t.quantile(1.0) >= latency_sketch::bucket_floor(latency_sketch::bucket_count - 1));
}

TEST_CASE("latency sketch: halving keeps the shape", "[poll_planner]") {
  latency_sketch s;
  for (int i = 0; i < 100; ++i)
    s.add(2s);
  for (int i = 0; i < 100; ++i)
    s.add(20s);
  auto median = s.quantile(0.5);
  s.halve();
  CHECK(s.count() == 100);
  CHECK(s.quantile(0.5) == median);
  s.add(5ms); // a new single observation survives the next halving
  s.halve();
  CHECK(s.quantile(0.0) < 20ms);
}

TEST_CASE("planner: configured timing until min_samples observations",
          "[poll_planner]") {
  adaptive_poll_options o;
  o.min_samples = 5;
  poll_planner p{o};
  CHECK(p.plan("m", "priority", 500ms, 5s).empty());
  for (int i = 0; i < 4; ++i)
    p.observe("m", "priority", 10s);
  CHECK(p.plan("m", "priority", 500ms, 5s).empty());
  p.observe("m", "priority", 10s);
  CHECK_FALSE(p.plan("m", "priority", 500ms, 5s).empty());
  // Per (model, window): other keys know nothing.
  CHECK(p.plan("m", "standard", 500ms, 5s).empty());
  CHECK(p.plan("other", "priority", 500ms, 5s).empty());
  // Disabled: never a plan, nothing kept.
  adaptive_poll_options off;
  off.enabled = false;
  off.min_samples = 1;
  poll_planner q{off};
  q.observe("m", "priority", 10s);
  CHECK(q.keys() == 0);
  CHECK(q.plan("m", "priority", 500ms, 5s).empty());
}

TEST_CASE("planner: the rule (first poll near a low quantile, gaps of 1/polls "
          "mass within the configured bounds)",
          "[poll_planner]") {
  adaptive_poll_options o;
  o.polls = 8;
  poll_planner p{o};
  auto ls = lognormal(500, 30.0, 0.6, 1);
  for (auto l : ls)
    p.observe("m", "priority", l);
  auto* sk = p.find("m", "priority");
  REQUIRE(sk != nullptr);
  auto first_poll = 500ms;
  auto max_poll = 5s;
  auto plan = p.plan("m", "priority", first_poll, max_poll);
  REQUIRE_FALSE(plan.empty());
  CHECK(plan.offsets.front() == std::max<caf::timespan>(first_poll, sk->quantile(1.0 / 8)));
  for (size_t k = 1; k < plan.offsets.size(); ++k) {
    auto prev = plan.offsets[k - 1];
    auto gap = plan.offsets[k] - prev;
    INFO("poll " << k << " at " << secs(plan.offsets[k]) << " s, gap " << secs(gap));
    CHECK(gap >= first_poll);
    CHECK(gap <= max_poll * o.max_gap_factor);
    // Never more than 1/polls of the mass between two polls (up to the
    // sketch's resolution), unless the gap is at the minimum.
    if (gap > first_poll)
      CHECK(sk->cdf(plan.offsets[k]) - sk->cdf(prev) <= 1.0 / 8 + 0.02);
  }
  CHECK(sk->cdf(plan.offsets.back()) >= 0.99);
  CHECK(plan.offsets.size() <= o.max_plan_polls);
}

TEST_CASE("planner: a narrow distribution is polled around its median",
          "[poll_planner]") {
  // Every sample of this (model, window) takes 60 s +- 5 %: the configured
  // timing (500 ms, x1.5, 5 s cap) costs 16-17 GETs per sample and notices
  // up to 5 s late; the plan costs at most about `polls` GETs and notices
  // within a fraction of a second.
  poll_planner p;
  auto ls = lognormal(400, 60.0, 0.025, 2);
  for (auto l : ls)
    p.observe("m", "priority", l);
  auto plan = p.plan("m", "priority", 500ms, 5s);
  REQUIRE_FALSE(plan.empty());
  auto fresh = lognormal(1000, 60.0, 0.025, 3);
  double gets = 0;
  std::vector<double> delays;
  int max_gets = 0;
  for (auto l : fresh) {
    auto [n, d] = simulate(plan, l, 5s);
    gets += n;
    max_gets = std::max(max_gets, n);
    delays.push_back(d);
  }
  std::sort(delays.begin(), delays.end());
  auto mean = gets / static_cast<double>(fresh.size());
  INFO("mean GETs " << mean << ", max " << max_gets << ", notice p50 "
                    << delays[delays.size() / 2] << " s");
  CHECK(mean <= 8.0);
  CHECK(delays[delays.size() / 2] <= 1.0);
}

namespace {

/// Latencies of a seeded log-uniform spread between lo and hi seconds.
std::vector<caf::timespan> log_uniform(size_t n, double lo, double hi, uint64_t seed) {
  std::mt19937_64 rng{seed};
  std::uniform_real_distribution<double> u{std::log(lo), std::log(hi)};
  std::vector<caf::timespan> out;
  for (size_t i = 0; i < n; ++i)
    out.push_back(from_secs(std::exp(u(rng))));
  return out;
}

} // namespace

TEST_CASE("planner: on a wide spread, gaps stretch past max_poll where little "
          "mass lies, up to max_gap_factor x max_poll",
          "[poll_planner]") {
  // Log-uniform 5-120 s (notice_bench's wide spread): half the mass lies below 25 s.
  // With the window's max_poll (5 s) as the cap, every gap after ~30 s sits
  // at the cap and a 60 s sample costs 12 GETs; with 2.5 x it costs <= 8.
  auto ls = log_uniform(2000, 5, 120, 4);
  auto gets_for_60s = [&](double factor, caf::timespan* widest) {
    adaptive_poll_options o;
    o.max_gap_factor = factor;
    poll_planner p{o};
    for (auto l : ls)
      p.observe("m", "priority", l);
    auto plan = p.plan("m", "priority", 1s, 5s);
    REQUIRE_FALSE(plan.empty());
    *widest = caf::timespan{0};
    for (size_t k = 1; k < plan.offsets.size(); ++k)
      *widest = std::max(*widest, plan.offsets[k] - plan.offsets[k - 1]);
    return simulate(plan, 60s, 5s).first;
  };
  caf::timespan widest_capped{0};
  caf::timespan widest_stretched{0};
  auto capped = gets_for_60s(1.0, &widest_capped);
  auto stretched = gets_for_60s(2.5, &widest_stretched);
  INFO("60 s sample: " << capped << " GETs with the cap at max_poll, " << stretched
                       << " with 2.5 x");
  CHECK(widest_capped == 5s);
  CHECK(widest_stretched > 5s);
  CHECK(widest_stretched <= 12500ms);
  CHECK(capped >= 11);
  CHECK(stretched <= 8);
}

TEST_CASE("planner: bounded keys and recency", "[poll_planner]") {
  adaptive_poll_options o;
  o.max_keys = 3;
  o.memory = 10;
  o.min_samples = 1;
  poll_planner p{o};
  p.observe("a", "w", 1s);
  p.observe("b", "w", 1s);
  p.observe("c", "w", 1s);
  p.observe("a", "w", 1s); // a is now the most recent
  p.observe("d", "w", 1s); // forgets b, the least recently observed
  CHECK(p.keys() == 3);
  CHECK(p.find("b", "w") == nullptr);
  CHECK(p.find("a", "w") != nullptr);
  CHECK(p.find("d", "w") != nullptr);
  // memory = 10: counts halve at 20, so a key never holds 20 or more.
  for (int i = 0; i < 100; ++i)
    p.observe("a", "w", 1s);
  CHECK(p.find("a", "w")->count() < 20);
  // Recent behaviour dominates: after a shift from 1 s to 30 s the median
  // follows within a few halvings.
  for (int i = 0; i < 60; ++i)
    p.observe("a", "w", 30s);
  CHECK(secs(p.find("a", "w")->quantile(0.5)) == Approx(30).epsilon(0.2));
}

TEST_CASE("planner: deterministic", "[poll_planner]") {
  poll_planner a;
  poll_planner b;
  for (auto l : lognormal(300, 10.0, 0.8, 9)) {
    a.observe("m", "w", l);
    b.observe("m", "w", l);
  }
  CHECK(a.plan("m", "w", 100ms, 2s).offsets == b.plan("m", "w", 100ms, 2s).offsets);
}

TEST_CASE("planner: a key's plan is reused until 1/32 more observations or other bounds",
          "[poll_planner]") {
  adaptive_poll_options o;
  o.min_samples = 10;
  poll_planner p{o};
  for (int i = 0; i < 320; ++i)
    p.observe("m", "priority", 10s);
  auto first = p.plan("m", "priority", 500ms, 5s);
  REQUIRE_FALSE(first.empty());
  // Fewer than 320 / 32 = 10 new observations: the same plan, even though
  // they moved the distribution.
  for (int i = 0; i < 9; ++i)
    p.observe("m", "priority", 100s);
  CHECK(p.plan("m", "priority", 500ms, 5s).offsets == first.offsets);
  // Other bounds: planned again at once.
  CHECK(p.plan("m", "priority", 2s, 5s).offsets.front() >= 2s);
  // Enough new observations: planned again from the moved distribution.
  for (int i = 0; i < 400; ++i)
    p.observe("m", "priority", 100s);
  auto moved = p.plan("m", "priority", 500ms, 5s);
  CHECK(moved.offsets != first.offsets);
  CHECK(moved.offsets.back() > first.offsets.back());
}
