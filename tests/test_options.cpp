// validate() of every options struct: the defaults pass, and each range
// refuses a bad value with a typed invalid_argument naming the option as
// caf-application.ini spells it (nested structs under their parent's prefix).
// The same checks through the user's paths: tests/test_cli.cpp (ini file and
// --group.key=value) and tests/python/test_validation.py (the binding). The
// retry budget's and breaker's own ranges: tests/test_retry_guard.cpp.
#include <catch2/catch.hpp>

#include <functional>
#include <limits>
#include <string>

#include "sail_tinker/actors/cluster_options.hpp"
#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/option_check.hpp"

using namespace sail;
using namespace std::chrono_literals;

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();
constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();

/// `change` applied to the defaults of Options makes validate() (with its
/// default prefix) fail, naming `field`.
template <class Options>
void require_refused(std::function<void(Options&)> change, const std::string& field) {
  Options o;
  change(o);
  auto err = o.validate();
  INFO("expected a refusal naming " << field);
  REQUIRE(err);
  CHECK(code_of(err) == errc::invalid_argument);
  REQUIRE(info_of(err) != nullptr);
  CHECK(info_of(err)->field == field);
}

} // namespace

TEST_CASE("options: the defaults of every struct are valid", "[options]") {
  CHECK_FALSE(retry_options{}.validate());
  CHECK_FALSE(adaptive_poll_options{}.validate());
  CHECK_FALSE(http_client_options{}.validate());
  CHECK_FALSE(webhook_options{}.validate());
  CHECK_FALSE(pool_options{}.validate());
  CHECK_FALSE(completer_options{}.validate());
  CHECK_FALSE(resolver_options{}.validate());
  CHECK_FALSE(runtime_options{}.validate());
  CHECK_FALSE(cluster_options{}.validate());
  for (auto& [name, timing] : pool_options::default_windows())
    CHECK_FALSE(timing.validate("pool.windows." + name + "."));
}

TEST_CASE("options: retry_options", "[options]") {
  using o = retry_options;
  require_refused<o>([](o& x) { x.base_delay = -1ms; }, "pool.retry-base-delay");
  require_refused<o>([](o& x) { x.max_delay = -1ms; }, "pool.retry-max-delay");
  require_refused<o>([](o& x) { x.max_retry_after = -1s; }, "pool.retry-max-retry-after");
  require_refused<o>([](o& x) { x.still_building_delay = -1s; },
                     "pool.retry-still-building-delay");
  // The prefix names the owner: the resolver's retry options are flat.
  retry_options r;
  r.base_delay = -1ms;
  CHECK(info_of(r.validate("resolver."))->field == "resolver.base-delay");
}

TEST_CASE("options: adaptive_poll_options", "[options]") {
  using o = adaptive_poll_options;
  require_refused<o>([](o& x) { x.polls = 0; }, "pool.adaptive-polls");
  require_refused<o>([](o& x) { x.polls = 1001; }, "pool.adaptive-polls");
  require_refused<o>([](o& x) { x.max_gap_factor = 0.5; }, "pool.adaptive-max-gap-factor");
  require_refused<o>([](o& x) { x.max_gap_factor = 101; }, "pool.adaptive-max-gap-factor");
  require_refused<o>([](o& x) { x.max_gap_factor = not_a_number; },
                     "pool.adaptive-max-gap-factor");
}

TEST_CASE("options: http_client_options", "[options]") {
  using o = http_client_options;
  require_refused<o>([](o& x) { x.timeouts.connect = 0s; }, "http.connect-timeout");
  require_refused<o>([](o& x) { x.timeouts.tls_handshake = 0s; }, "http.tls-handshake-timeout");
  require_refused<o>([](o& x) { x.timeouts.write = -1s; }, "http.write-timeout");
  require_refused<o>([](o& x) { x.timeouts.read = 0s; }, "http.read-timeout");
  require_refused<o>([](o& x) { x.max_connections_per_origin = 0; },
                     "http.max-connections-per-origin");
  require_refused<o>([](o& x) { x.max_queued_per_origin = 0; }, "http.max-queued-per-origin");
  require_refused<o>([](o& x) { x.idle_timeout = -1s; }, "http.idle-timeout");
}

TEST_CASE("options: webhook_options", "[options]") {
  using o = webhook_options;
  require_refused<o>([](o& x) { x.path = "hook"; }, "webhook.path");
  require_refused<o>([](o& x) { x.body_limit = 0; }, "webhook.body-limit");
  require_refused<o>([](o& x) { x.host = "0.0.0.0"; }, "webhook.insecure-plaintext");
  require_refused<o>([](o& x) { x.public_url = "ftp://x/y"; }, "webhook.public-url");
  require_refused<o>([](o& x) { x.token = "whk_short"; }, "webhook.token");
  webhook_options ok;
  ok.host = "0.0.0.0";
  ok.allow_plaintext = true;
  CHECK_FALSE(ok.validate());
}

TEST_CASE("options: window_timing", "[options]") {
  auto bad = [](std::function<void(window_timing&)> change, const std::string& field) {
    window_timing w;
    change(w);
    auto err = w.validate("pool.windows.flex.");
    REQUIRE(err);
    CHECK(code_of(err) == errc::invalid_argument);
    CHECK(info_of(err)->field == field);
  };
  bad([](window_timing& w) { w.first_poll = -1ms; }, "pool.windows.flex.first-poll");
  bad([](window_timing& w) { w.max_poll = -1ms; }, "pool.windows.flex.max-poll");
  bad([](window_timing& w) { w.deadline = 0s; }, "pool.windows.flex.deadline");
  bad([](window_timing& w) { w.webhook_first_poll = -1s; },
      "pool.windows.flex.webhook-first-poll");
  bad([](window_timing& w) { w.webhook_poll = -1s; }, "pool.windows.flex.webhook-poll");
  window_timing zero_polls;
  zero_polls.first_poll = 0s;
  zero_polls.max_poll = 0s;
  CHECK_FALSE(zero_polls.validate("x."));
}

TEST_CASE("options: pool_options and its nested options", "[options]") {
  using o = pool_options;
  require_refused<o>([](o& x) { x.workers = 0; }, "pool.workers");
  require_refused<o>([](o& x) { x.workers = 1025; }, "pool.workers");
  require_refused<o>([](o& x) { x.max_in_flight = 0; }, "pool.max-in-flight");
  require_refused<o>([](o& x) { x.max_dispatch_attempts = 0; }, "pool.max-dispatch-attempts");
  require_refused<o>([](o& x) { x.restart_window = 0s; }, "pool.restart-window");
  require_refused<o>([](o& x) { x.call_timeout = 0s; }, "pool.call-timeout");
  require_refused<o>([](o& x) { x.poll_growth = 0.9; }, "pool.poll-growth");
  require_refused<o>([](o& x) { x.poll_growth = inf; }, "pool.poll-growth");
  require_refused<o>([](o& x) { x.poll_jitter = -0.1; }, "pool.poll-jitter");
  require_refused<o>([](o& x) { x.poll_jitter = 1.0; }, "pool.poll-jitter");
  require_refused<o>([](o& x) { x.poll_jitter = not_a_number; }, "pool.poll-jitter");
  require_refused<o>([](o& x) { x.retry.max_delay = -1s; }, "pool.retry-max-delay");
  require_refused<o>([](o& x) { x.adaptive.polls = 0; }, "pool.adaptive-polls");
  require_refused<o>([](o& x) { x.retry_budget.ratio = -1; }, "pool.retry-budget-ratio");
  require_refused<o>([](o& x) { x.breaker.failure_ratio = 2; }, "pool.breaker-failure-ratio");
  require_refused<o>([](o& x) { x.windows["priority"].deadline = 0s; },
                     "pool.windows.priority.deadline");
  require_refused<o>([](o& x) { x.default_timing.max_poll = -1s; },
                     "pool.default-window.max-poll");
  // Limits that are only the type's: none of these is refused.
  pool_options edge;
  edge.max_queued = 0;
  edge.max_restarts = 0;
  edge.retry.max_attempts = 0;
  edge.poll_jitter = 0.0;
  edge.poll_growth = 1.0;
  CHECK_FALSE(edge.validate());
}

TEST_CASE("options: completer_options", "[options]") {
  using o = completer_options;
  require_refused<o>([](o& x) { x.max_group_size = 0; }, "completer.max-group-size");
  require_refused<o>([](o& x) { x.resolve_timeout = 0s; }, "completer.resolve-timeout");
}

TEST_CASE("options: resolver_options", "[options]") {
  using o = resolver_options;
  require_refused<o>([](o& x) { x.call_timeout = 0s; }, "resolver.call-timeout");
  require_refused<o>([](o& x) { x.refresh_margin = 0s; }, "resolver.refresh-margin");
  // No sample deadline bounds the resolver's retries: 0 (no cap) is refused.
  require_refused<o>([](o& x) { x.retry.max_attempts = 0; }, "resolver.max-attempts");
  require_refused<o>([](o& x) { x.retry.still_building_delay = -1s; },
                     "resolver.still-building-delay");
}

TEST_CASE("options: runtime_options checks its own and every part", "[options]") {
  using o = runtime_options;
  require_refused<o>([](o& x) { x.io_threads = 0; }, "sail.io-threads");
  require_refused<o>([](o& x) { x.io_threads = 257; }, "sail.io-threads");
  require_refused<o>([](o& x) { x.shutdown_grace = 0s; }, "sail.shutdown-grace");
  require_refused<o>([](o& x) { x.pool.max_in_flight = 0; }, "pool.max-in-flight");
  require_refused<o>([](o& x) { x.pool.breaker.window = 0s; }, "pool.breaker-window");
  require_refused<o>([](o& x) { x.http.timeouts.read = 0s; }, "http.read-timeout");
  require_refused<o>([](o& x) { x.resolver.retry.max_attempts = 0; }, "resolver.max-attempts");
  require_refused<o>([](o& x) { x.completer.max_group_size = 0; }, "completer.max-group-size");
  require_refused<o>([](o& x) { x.wire.stop_field = "stops"; }, "wire.stop-field");
  require_refused<o>([](o& x) { x.wire.layout = ""; }, "wire.layout");
  // The webhook receiver's rules apply when it is enabled.
  runtime_options off;
  off.webhook.host = "0.0.0.0";
  CHECK_FALSE(off.validate());
  require_refused<o>(
    [](o& x) {
      x.webhook.enabled = true;
      x.webhook.host = "0.0.0.0";
    },
    "webhook.insecure-plaintext");
}

TEST_CASE("options: cluster_options", "[options]") {
  using o = cluster_options;
  require_refused<o>([](o& x) { x.connect_timeout = 0s; }, "cluster.connect-timeout");
  require_refused<o>([](o& x) { x.obtain_timeout = 0s; }, "cluster.obtain-timeout");
  require_refused<o>([](o& x) { x.request_timeout = 0s; }, "cluster.request-timeout");
  require_refused<o>([](o& x) { x.queue_timeout = 0s; }, "cluster.queue-timeout");
  require_refused<o>([](o& x) { x.stats_timeout = 0s; }, "cluster.stats-timeout");
  require_refused<o>([](o& x) { x.max_routes = 0; }, "cluster.max-attempts");
  require_refused<o>([](o& x) { x.retry_min = 0s; }, "cluster.retry-min");
  require_refused<o>([](o& x) { x.retry_max = 1ms; }, "cluster.retry-min");
  // The free validate() checks the nodes first, then these.
  cluster_options c;
  c.nodes = {node_address{"127.0.0.1", 4242}};
  c.max_routes = 0;
  CHECK(info_of(validate(c))->field == "cluster.max-attempts");
}

TEST_CASE("options: option_check helpers", "[options]") {
  using namespace option_check;
  CHECK_FALSE(first_error(caf::error{}, caf::error{}));
  auto err = first_error(caf::error{}, at_least(0, 1, "a"), within(5, 1, 4, "b"));
  REQUIRE(err);
  CHECK(info_of(err)->field == "a");
  CHECK(info_of(within(5, 1, 4, "b"))->message == "must be within 1..4");
  CHECK(info_of(within(1.0, 0.0, true, 1.0, false, "j"))->message == "must be within [0, 1)");
  CHECK(info_of(within(0.5, 1.0, true, inf, false, "g"))->message
        == "must be a finite number >= 1");
  CHECK(within(inf, 0.0, true, inf, false, "g"));
  CHECK_FALSE(non_negative(0s, "n"));
  CHECK(positive(0s, "p"));
}
