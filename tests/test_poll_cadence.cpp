// Poll cadence per completion window, measured on the wire:
// the runtime and a completer poll a slow emulator response; the
// emulator records when each request arrived, and the gaps between arrivals
// must follow the pool's configuration for that window:
//
//   gap 1 (create -> first poll)   nominal = first_poll
//   gap k+1                        nominal = min(nominal_k * poll_growth, max_poll)
//   every gap                      within nominal * [1 - poll_jitter, 1 + poll_jitter]
//
// Each gap also holds the request/response round trip and the scheduling
// of the worker's timer, so the bounds carry a documented slack: at most
// 1 ms below (clock granularity: a timer never fires early, and the delay
// starts only after the previous answer arrived) and `upper_slack` plus
// `upper_slack_share` of the nominal gap above (a busy 2-core machine delays
// timers and sockets, more so for longer waits). These are bounds on recorded
// arrival gaps, not on how long the test takes.
//
// Window timings are shortened through pool_options (each window its own,
// in the order of Sail's latency targets) and poll_growth = 2 makes a missing
// cap or a missing growth fall outside the bounds even with the slack: a
// missing growth repeats a gap below the next lower bound (0.9 x 2 x
// nominal), a missing cap doubles it past the upper bound at the cap
// (1.8 x cap > 1.4 x cap + 40 ms for every cap here, the smallest 160 ms).
#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/emulator/emulator.hpp"
#include "support/stack_fixture.hpp"

using namespace sail;
using namespace std::chrono_literals;
using sail::test::stack_fixture;

namespace {

using ms_double = std::chrono::duration<double, std::milli>;

constexpr double growth = 2.0;
constexpr double jitter = 0.1;
constexpr auto lower_slack = 1ms;
constexpr auto upper_slack = 40ms;
constexpr double upper_slack_share = 0.3;
/// Polls that must reach the emulator while the response is still pending:
/// at least two at the cap for every window below.
constexpr int min_polls = 6;

void check_cadence(const std::string& window, window_timing timing) {
  INFO("window " << window);
  // The response stays pending long enough for min_polls polls at their
  // latest (nominal * (1 + jitter) + slack each), plus a margin.
  auto nominal = std::chrono::duration_cast<ms_double>(timing.first_poll);
  auto max_poll = std::chrono::duration_cast<ms_double>(timing.max_poll);
  ms_double pending{100};
  for (int k = 0; k < min_polls; ++k) {
    pending += nominal * (1 + jitter + upper_slack_share) + ms_double{upper_slack};
    nominal = std::min(nominal * growth, max_poll);
  }
  auto eo = sail::test::test_emulator_options();
  eo.threads = 2;
  eo.latency.of(window).queued = std::chrono::duration_cast<std::chrono::microseconds>(pending);
  stack_fixture f{eo, [&](runtime_options& o) {
                    o.pool.windows[window] = timing;
                    o.pool.poll_growth = growth;
                    o.pool.poll_jitter = jitter;
                  }};
  auto cfg = stack_fixture::config(4);
  cfg.completion_window = window;
  sample_request req;
  req.prompt.tokens = {1, 2, 3};
  req.key = "cadence-" + window;
  auto res = f.completer(cfg).sample(req).get();
  REQUIRE(res);
  auto st = f.emu.snapshot();
  auto& created = st.arrivals.at(req.key);
  REQUIRE(created.size() == 1);
  auto& polls = st.poll_arrivals.at(st.timings.at(req.key).id);
  REQUIRE(polls.size() >= static_cast<size_t>(min_polls));
  nominal = std::chrono::duration_cast<ms_double>(timing.first_poll);
  auto previous = created.front().at;
  int at_cap = 0;
  for (size_t k = 0; k < polls.size(); ++k) {
    auto gap = std::chrono::duration_cast<ms_double>(polls[k].at - previous);
    auto low = nominal * (1 - jitter) - ms_double{lower_slack};
    auto high = nominal * (1 + jitter + upper_slack_share) + ms_double{upper_slack};
    INFO("poll " << k + 1 << ": gap " << gap.count() << " ms, nominal " << nominal.count()
                 << " ms, bounds [" << low.count() << ", " << high.count() << "]");
    CHECK(polls[k].status == 200);
    CHECK(gap >= low);
    CHECK(gap <= high);
    if (nominal == max_poll)
      ++at_cap;
    previous = polls[k].at;
    nominal = std::min(nominal * growth, max_poll);
  }
  CHECK(at_cap >= 2);
}

} // namespace

TEST_CASE("poll cadence on the wire: asap", "[wire][poll]") {
  check_cadence("asap", {40ms, 160ms, 5min});
}

TEST_CASE("poll cadence on the wire: priority", "[wire][poll]") {
  check_cadence("priority", {50ms, 200ms, 5min});
}

TEST_CASE("poll cadence on the wire: balanced", "[wire][poll]") {
  check_cadence("balanced", {60ms, 240ms, 5min});
}

TEST_CASE("poll cadence on the wire: standard", "[wire][poll]") {
  check_cadence("standard", {70ms, 280ms, 5min});
}

TEST_CASE("poll cadence on the wire: flex", "[wire][poll]") {
  check_cadence("flex", {80ms, 320ms, 5min});
}
