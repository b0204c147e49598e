// The emulator's heavy-tailed latency (emulator/emulator.hpp): the
// log_normal_p99 spread has the chosen p99/median ratio over many keys and
// is deterministic per key; the named profiles exist and scale
// (`emulate --latency-spread log_normal_p99:...` and `--latency-profile`
// are run by tests/test_rollout_steps.cpp).
#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

#include "sail_tinker/emulator/emulator.hpp"

using namespace sail;
using emulator::latency_spread;

TEST_CASE("emulator latency: log_normal_p99 draws have the chosen p99 / median ratio, the "
          "same per key",
          "[emulator][latency]") {
  auto s = latency_spread::log_normal_p99(std::chrono::milliseconds(100), 10.0);
  std::vector<int64_t> xs;
  for (int i = 0; i < 20000; ++i)
    xs.push_back(s.draw(42, "key-" + std::to_string(i)).count());
  std::sort(xs.begin(), xs.end());
  auto median = static_cast<double>(xs[xs.size() / 2]);
  auto p99 = static_cast<double>(xs[xs.size() * 99 / 100]);
  CHECK(median == Approx(100'000).epsilon(0.05));
  CHECK(p99 / median == Approx(10.0).epsilon(0.15));
  CHECK(s.draw(42, "key-7") == s.draw(42, "key-7"));
  CHECK(s.draw(42, "key-7") != s.draw(43, "key-7"));
  // Ratio 1: no spread.
  auto flat = latency_spread::log_normal_p99(std::chrono::milliseconds(5), 1.0);
  CHECK(flat.draw(1, "a") == std::chrono::milliseconds(5));
}

TEST_CASE("emulator latency: named profiles, scaled", "[emulator][latency]") {
  for (auto& name : emulator::latency_profiles())
    CHECK(emulator::latency_profile(name));
  CHECK_FALSE(emulator::latency_profile("nope"));
  CHECK_FALSE(emulator::latency_profile("measured", 0.0));
  auto real = emulator::latency_profile("measured");
  auto fast = emulator::latency_profile("measured", 0.001);
  REQUIRE(real);
  REQUIRE(fast);
  CHECK(real->priority.spread.median == std::chrono::milliseconds(8500));
  CHECK(real->asap.spread.median == std::chrono::milliseconds(1400));
  CHECK(fast->priority.spread.median == std::chrono::microseconds(8500));
  auto targets = emulator::latency_profile("targets");
  REQUIRE(targets);
  CHECK(targets->priority.spread.median == std::chrono::minutes(1));
}
