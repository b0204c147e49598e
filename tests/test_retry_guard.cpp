// The pool's retry budget and circuit breaker (net/retry_guard.hpp) as pure
// state machines: time is passed in, every transition is checked directly,
// no clock, no sleeps. The same guard through the pool against the emulator
// (Sail down, then up) is in test_retry_runtime.cpp.
#include <catch2/catch.hpp>

#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/retry_guard.hpp"

using namespace sail;
using namespace std::chrono_literals;

namespace {

steady_time t0() {
  return steady_time{std::chrono::hours(1000)};
}

retry_budget_options budget_opts(double ratio, double min_per_second) {
  retry_budget_options o;
  o.ratio = ratio;
  o.min_per_second = min_per_second;
  o.window = 10s;
  return o;
}

circuit_breaker_options breaker_opts() {
  circuit_breaker_options o;
  o.min_failures = 20;
  o.failure_ratio = 0.8;
  o.window = 10s;
  o.open_delay = 1s;
  o.max_open_delay = 30s;
  o.probe_timeout = 30s;
  return o;
}

void fail_n(circuit_breaker& b, steady_time now, int n, const std::string& cause = "http_503") {
  for (int i = 0; i < n; ++i)
    b.on_result(now, call_health::down, 0, cause);
}

// Opens `b` at `now` with 20 failures.
void open_breaker(circuit_breaker& b, steady_time now) {
  fail_n(b, now, 20);
  REQUIRE(b.state() == breaker_state::open);
}

} // namespace

// -- retry budget -------------------------------------------------------------------

TEST_CASE("budget: the floor allows min_per_second * window retries without traffic") {
  retry_budget b{budget_opts(0.0, 2.0)};
  CHECK(b.allowed(t0()) == 20);
  for (int i = 0; i < 20; ++i)
    REQUIRE(b.try_retry(t0()));
  CHECK_FALSE(b.try_retry(t0()));
  CHECK_FALSE(b.try_retry(t0()));
  CHECK(b.retries(t0()) == 20);
  CHECK(b.denied() == 2);
}

TEST_CASE("budget: retries at most ratio times the first attempts of the window") {
  retry_budget b{budget_opts(0.5, 0.0)};
  CHECK_FALSE(b.try_retry(t0())); // nothing sent yet: nothing to retry against
  for (int i = 0; i < 10; ++i)
    b.on_request(t0());
  CHECK(b.requests(t0()) == 10);
  CHECK(b.allowed(t0()) == 5);
  for (int i = 0; i < 5; ++i)
    REQUIRE(b.try_retry(t0()));
  CHECK_FALSE(b.try_retry(t0()));
  // More first attempts deposit more.
  for (int i = 0; i < 4; ++i)
    b.on_request(t0() + 1s);
  CHECK(b.allowed(t0() + 1s) == 7);
  CHECK(b.try_retry(t0() + 1s));
  CHECK(b.try_retry(t0() + 1s));
  CHECK_FALSE(b.try_retry(t0() + 1s));
  CHECK(b.denied() == 3);
}

TEST_CASE("budget: the window slides, old requests and retries are forgotten") {
  retry_budget b{budget_opts(1.0, 0.0)};
  for (int i = 0; i < 8; ++i)
    b.on_request(t0());
  for (int i = 0; i < 8; ++i)
    REQUIRE(b.try_retry(t0()));
  CHECK_FALSE(b.try_retry(t0() + 5s));
  // Ten slots of a second: after 10 s the first slot has left the window.
  CHECK(b.requests(t0() + 9s) == 8);
  CHECK(b.requests(t0() + 10s) == 0);
  CHECK(b.retries(t0() + 10s) == 0);
  CHECK_FALSE(b.try_retry(t0() + 10s)); // nothing left to retry against
  b.on_request(t0() + 10s);
  CHECK(b.try_retry(t0() + 10s));
  // A long silence empties the window as well.
  CHECK(b.requests(t0() + 1h) == 0);
  CHECK(b.allowed(t0() + 1h) == 0);
}

TEST_CASE("budget: a denied retry waits one slot of the window") {
  retry_budget b{budget_opts(1.0, 10.0)};
  CHECK(b.retry_wait() == caf::timespan{1s});
}

TEST_CASE("budget: options out of range are invalid_argument naming the field") {
  auto bad = [](retry_budget_options o, const std::string& field) {
    auto err = o.validate("pool.retry-budget-");
    REQUIRE(err);
    CHECK(code_of(err) == errc::invalid_argument);
    CHECK(info_of(err)->field == field);
  };
  CHECK_FALSE(retry_budget_options{}.validate());
  bad(budget_opts(-0.1, 1), "pool.retry-budget-ratio");
  bad(budget_opts(std::numeric_limits<double>::infinity(), 1), "pool.retry-budget-ratio");
  bad(budget_opts(1, std::numeric_limits<double>::quiet_NaN()),
      "pool.retry-budget-min-per-second");
  auto o = budget_opts(1, 1);
  o.window = caf::timespan{0};
  bad(o, "pool.retry-budget-window");
}

// -- circuit breaker: closed -> open ------------------------------------------------

TEST_CASE("breaker: min_failures failures within the window open it") {
  circuit_breaker b{breaker_opts()};
  fail_n(b, t0(), 19);
  CHECK(b.state() == breaker_state::closed);
  CHECK(b.admit(t0()).go);
  CHECK(b.on_result(t0(), call_health::down, 0, "transport"));
  CHECK(b.state() == breaker_state::open);
  CHECK(b.opened() == 1);
  CHECK(b.reason() == "20 of 20 attempts failed within 10.0s (last: transport)");
}

TEST_CASE("breaker: the failures must make failure_ratio of the judged attempts") {
  circuit_breaker b{breaker_opts()};
  for (int i = 0; i < 10; ++i)
    b.on_result(t0(), call_health::up, 0, "ok");
  fail_n(b, t0(), 39);
  CHECK(b.state() == breaker_state::closed); // 39 of 49 < 0.8
  fail_n(b, t0(), 1);
  CHECK(b.state() == breaker_state::open); // 40 of 50
}

TEST_CASE("breaker: 429 and 529 (neutral) count neither way") {
  circuit_breaker b{breaker_opts()};
  for (int i = 0; i < 1000; ++i)
    CHECK_FALSE(b.on_result(t0(), call_health::neutral, 0, "http_429"));
  fail_n(b, t0(), 19);
  CHECK(b.state() == breaker_state::closed);
  fail_n(b, t0(), 1);
  CHECK(b.state() == breaker_state::open);
}

TEST_CASE("breaker: failures older than the window are forgotten") {
  circuit_breaker b{breaker_opts()};
  fail_n(b, t0(), 19);
  fail_n(b, t0() + 10s, 1);
  CHECK(b.state() == breaker_state::closed);
  fail_n(b, t0() + 10s, 19);
  CHECK(b.state() == breaker_state::open);
}

TEST_CASE("breaker: consecutive_failures in a row open it whatever the window holds") {
  auto o = breaker_opts();
  o.consecutive_failures = 50;
  circuit_breaker b{o};
  // A busy window full of successes: the ratio rule would need 4,000 failures.
  for (int i = 0; i < 1000; ++i)
    b.on_result(t0(), call_health::up, 0, "ok");
  fail_n(b, t0(), 49);
  b.on_result(t0(), call_health::neutral, 0, "http_429"); // neither breaks nor extends it
  b.on_result(t0(), call_health::up, 0, "ok");           // a success breaks it
  fail_n(b, t0(), 49);
  CHECK(b.state() == breaker_state::closed);
  fail_n(b, t0(), 1, "transport");
  CHECK(b.state() == breaker_state::open);
  CHECK(b.reason() == "50 attempts in a row failed (last: transport)");
  // 0 turns the rule off.
  o.consecutive_failures = 0;
  circuit_breaker off{o};
  for (int i = 0; i < 1000; ++i)
    off.on_result(t0(), call_health::up, 0, "ok");
  fail_n(off, t0(), 500);
  CHECK(off.state() == breaker_state::closed);
}

TEST_CASE("breaker: min_failures 0 disables it") {
  auto o = breaker_opts();
  o.min_failures = 0;
  circuit_breaker b{o};
  fail_n(b, t0(), 10000);
  CHECK(b.state() == breaker_state::closed);
  CHECK(b.admit(t0()).go);
  CHECK(b.accepts_new_work(t0()));
}

// -- open -> half-open -> closed / open ---------------------------------------------

TEST_CASE("breaker: open holds every attempt until the probe is due, then lets one through") {
  circuit_breaker b{breaker_opts()};
  open_breaker(b, t0());
  auto p = b.admit(t0() + 400ms);
  CHECK_FALSE(p.go);
  CHECK(p.wait == caf::timespan{600ms});
  CHECK_FALSE(b.accepts_new_work(t0() + 400ms));
  CHECK(b.next_probe() == t0() + 1s);
  // Due: new work is admitted again (it may be the probe when nothing is in
  // flight), and the first attempt that asks is the probe.
  CHECK(b.accepts_new_work(t0() + 1s));
  auto probe = b.admit(t0() + 1s);
  CHECK(probe.go);
  CHECK(probe.probe != 0);
  CHECK(b.state() == breaker_state::half_open);
  CHECK(b.probes() == 1);
  // Everyone else keeps waiting while the probe is out.
  auto other = b.admit(t0() + 1100ms);
  CHECK_FALSE(other.go);
  CHECK(other.wait == caf::timespan{1s});
  CHECK_FALSE(b.accepts_new_work(t0() + 1100ms));
}

TEST_CASE("breaker: a successful probe closes it and forgets the failures") {
  circuit_breaker b{breaker_opts()};
  open_breaker(b, t0());
  auto probe = b.admit(t0() + 1s);
  REQUIRE(probe.probe != 0);
  CHECK(b.on_result(t0() + 1200ms, call_health::up, probe.probe, "ok"));
  CHECK(b.state() == breaker_state::closed);
  CHECK(b.admit(t0() + 1200ms).go);
  CHECK(b.accepts_new_work(t0() + 1200ms));
  // The window starts afresh: 19 new failures do not reopen it.
  fail_n(b, t0() + 1300ms, 19);
  CHECK(b.state() == breaker_state::closed);
  // The next opening waits the first delay again.
  fail_n(b, t0() + 1300ms, 1);
  CHECK(b.state() == breaker_state::open);
  CHECK(b.next_probe() == t0() + 2300ms);
  CHECK(b.opened() == 2);
}

TEST_CASE("breaker: a neutral probe answer (429) closes it too: Sail answered") {
  circuit_breaker b{breaker_opts()};
  open_breaker(b, t0());
  auto probe = b.admit(t0() + 1s);
  CHECK(b.on_result(t0() + 1s, call_health::neutral, probe.probe, "http_429"));
  CHECK(b.state() == breaker_state::closed);
}

TEST_CASE("breaker: each failed probe doubles the wait up to max_open_delay") {
  circuit_breaker b{breaker_opts()};
  open_breaker(b, t0());
  auto now = t0();
  std::vector<caf::timespan> waits;
  caf::timespan delay = 1s;
  for (int i = 0; i < 8; ++i) {
    now += std::chrono::duration_cast<steady_time::duration>(delay);
    auto probe = b.admit(now);
    REQUIRE(probe.probe != 0);
    REQUIRE(b.on_result(now, call_health::down, probe.probe, "http_503"));
    REQUIRE(b.state() == breaker_state::open);
    delay = std::chrono::duration_cast<caf::timespan>(b.next_probe() - now);
    waits.push_back(delay);
  }
  CHECK(waits == std::vector<caf::timespan>{2s, 4s, 8s, 16s, 30s, 30s, 30s, 30s});
  CHECK(b.opened() == 1); // re-opening after a probe is not a new opening
  CHECK(b.probes() == 8);
}

TEST_CASE("breaker: while not closed only the current probe's verdict counts") {
  circuit_breaker b{breaker_opts()};
  open_breaker(b, t0());
  // Late answers of attempts sent before it opened change nothing.
  CHECK_FALSE(b.on_result(t0() + 100ms, call_health::up, 0, "ok"));
  CHECK_FALSE(b.on_result(t0() + 100ms, call_health::down, 0, "http_503"));
  CHECK(b.state() == breaker_state::open);
  CHECK(b.next_probe() == t0() + 1s);
  auto probe = b.admit(t0() + 1s);
  CHECK_FALSE(b.on_result(t0() + 1s, call_health::up, probe.probe + 7, "ok"));
  CHECK(b.state() == breaker_state::half_open);
  CHECK(b.on_result(t0() + 1s, call_health::up, probe.probe, "ok"));
  CHECK(b.state() == breaker_state::closed);
  // A stale probe id after closing is an ordinary result.
  CHECK_FALSE(b.on_result(t0() + 2s, call_health::down, probe.probe, "http_503"));
  CHECK(b.state() == breaker_state::closed);
}

TEST_CASE("breaker: an abandoned probe is replaced at once") {
  circuit_breaker b{breaker_opts()};
  open_breaker(b, t0());
  auto probe = b.admit(t0() + 1s);
  b.abandon_probe(t0() + 1500ms, probe.probe + 1); // not the probe: no effect
  CHECK(b.state() == breaker_state::half_open);
  b.abandon_probe(t0() + 1500ms, probe.probe);
  CHECK(b.state() == breaker_state::open);
  CHECK(b.accepts_new_work(t0() + 1500ms));
  auto next = b.admit(t0() + 1500ms);
  CHECK(next.go);
  CHECK(next.probe != 0);
  CHECK(next.probe != probe.probe);
}

TEST_CASE("breaker: a probe without a verdict is replaced after probe_timeout") {
  circuit_breaker b{breaker_opts()};
  open_breaker(b, t0());
  auto probe = b.admit(t0() + 1s);
  CHECK_FALSE(b.admit(t0() + 30s).go);
  CHECK_FALSE(b.accepts_new_work(t0() + 30s));
  CHECK(b.next_probe() == t0() + 31s);
  CHECK(b.accepts_new_work(t0() + 31s));
  auto next = b.admit(t0() + 31s);
  CHECK(next.go);
  CHECK(next.probe != probe.probe);
  // The first probe's late answer no longer decides.
  CHECK_FALSE(b.on_result(t0() + 32s, call_health::up, probe.probe, "ok"));
  CHECK(b.state() == breaker_state::half_open);
}

TEST_CASE("breaker: options out of range are invalid_argument naming the field") {
  auto bad = [](circuit_breaker_options o, const std::string& field) {
    auto err = o.validate("pool.breaker-");
    REQUIRE(err);
    CHECK(info_of(err)->field == field);
  };
  CHECK_FALSE(circuit_breaker_options{}.validate());
  auto o = breaker_opts();
  o.failure_ratio = 0;
  bad(o, "pool.breaker-failure-ratio");
  o = breaker_opts();
  o.failure_ratio = 1.5;
  bad(o, "pool.breaker-failure-ratio");
  o = breaker_opts();
  o.max_open_delay = 500ms;
  bad(o, "pool.breaker-open-delay");
  o = breaker_opts();
  o.window = caf::timespan{0};
  bad(o, "pool.breaker-window");
  o = breaker_opts();
  o.probe_timeout = caf::timespan{0};
  bad(o, "pool.breaker-probe-timeout");
}

// -- retry_guard: the two together --------------------------------------------------

TEST_CASE("guard: first attempts deposit, retries draw on the budget") {
  retry_guard g{budget_opts(0.5, 0.0), breaker_opts()};
  auto denied = g.before_attempt(t0(), true);
  CHECK_FALSE(denied.go);
  CHECK_FALSE(denied.held_by_breaker);
  CHECK(denied.wait == caf::timespan{1s});
  for (int i = 0; i < 4; ++i)
    CHECK(g.before_attempt(t0(), false).go);
  CHECK(g.before_attempt(t0(), true).go);
  CHECK(g.before_attempt(t0(), true).go);
  CHECK_FALSE(g.before_attempt(t0(), true).go);
  auto s = g.stats(t0());
  CHECK(s.budget_requests == 4);
  CHECK(s.budget_retries == 2);
  CHECK(s.budget_allowed == 2);
  CHECK(s.budget_denied == 2);
  CHECK(s.breaker == "closed");
}

TEST_CASE("guard: open breaker holds attempts, refuses new work with the next probe time, "
          "and the probe bypasses the spent budget") {
  std::vector<std::pair<breaker_state, std::string>> changes;
  retry_guard g{budget_opts(0.0, 0.0), breaker_opts(),
                [&](breaker_state s, const std::string& d) { changes.emplace_back(s, d); }};
  CHECK_FALSE(g.refuse_new_work(t0()));
  for (int i = 0; i < 20; ++i)
    g.after_attempt(t0(), call_health::down, 0, "http_503");
  REQUIRE(changes.size() == 1);
  CHECK(changes[0].first == breaker_state::open);
  CHECK(changes[0].second
        == "20 of 20 attempts failed within 10.0s (last: http_503); next probe in 1.0s");
  auto held = g.before_attempt(t0() + 250ms, false);
  CHECK_FALSE(held.go);
  CHECK(held.held_by_breaker);
  CHECK(held.wait == caf::timespan{750ms});
  auto why = g.refuse_new_work(t0() + 250ms);
  REQUIRE(why);
  CHECK(*why == "Sail is unavailable: the circuit breaker opened after 20 of 20 attempts "
                "failed within 10.0s (last: http_503); next probe in 0.8s");
  auto s = g.stats(t0() + 250ms);
  CHECK(s.breaker == "open");
  CHECK(s.next_probe_ms == 750);
  CHECK(s.breaker_opened == 1);
  CHECK(s.held == 1);
  CHECK(s.rejected == 1);
  // The budget allows nothing (ratio 0, no floor), yet the probe goes.
  auto probe = g.before_attempt(t0() + 1s, true);
  CHECK(probe.go);
  CHECK(probe.probe != 0);
  REQUIRE(changes.size() == 2);
  CHECK(changes[1].first == breaker_state::half_open);
  auto in_flight = g.refuse_new_work(t0() + 1s);
  REQUIRE(in_flight);
  CHECK(in_flight->find("a probe is in flight") != std::string::npos);
  // The probe fails: open again for twice as long.
  g.after_attempt(t0() + 1100ms, call_health::down, probe.probe, "transport");
  REQUIRE(changes.size() == 3);
  CHECK(changes[2] == std::pair<breaker_state, std::string>{
                        breaker_state::open, "the probe failed (transport); next probe in 2.0s"});
  // The next probe succeeds: closed.
  auto second = g.before_attempt(t0() + 3100ms, false);
  REQUIRE(second.probe != 0);
  g.after_attempt(t0() + 3200ms, call_health::up, second.probe, "ok");
  REQUIRE(changes.size() == 5);
  CHECK(changes[3].first == breaker_state::half_open);
  CHECK(changes[4] == std::pair<breaker_state, std::string>{breaker_state::closed,
                                                            "the probe succeeded"});
  CHECK_FALSE(g.refuse_new_work(t0() + 3200ms));
  s = g.stats(t0() + 3200ms);
  CHECK(s.breaker == "closed");
  CHECK(s.next_probe_ms == 0);
  CHECK(s.probes == 2);
}

TEST_CASE("guard stats merge: counters add up, the worst state and nearest probe win") {
  retry_guard_stats a;
  a.breaker = "half_open";
  a.breaker_opened = 1;
  a.next_probe_ms = 0;
  a.budget_requests = 10;
  retry_guard_stats b;
  b.breaker = "open";
  b.breaker_opened = 2;
  b.next_probe_ms = 500;
  b.budget_requests = 5;
  b.rejected = 3;
  retry_guard_stats c;
  c.next_probe_ms = 200;
  retry_guard_stats sum;
  merge_into(sum, a);
  merge_into(sum, b);
  merge_into(sum, c);
  CHECK(sum.breaker == "open");
  CHECK(sum.breaker_opened == 3);
  CHECK(sum.next_probe_ms == 200);
  CHECK(sum.budget_requests == 15);
  CHECK(sum.rejected == 3);
}
