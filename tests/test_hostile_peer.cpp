// A BASP peer that sends what no handler expects: a message holding a
// caf::duration whose unit is beyond nanoseconds. CAF's default handler
// prints an unexpected message, and CAF 0.17.6's to_string(caf::duration)
// reads out of bounds for such a unit: one message crashed a `serve` node
// (found by fuzz/caf_message_fuzz). The actors a peer can reach -- the
// published service front, the metering front `serve` hands out, a bare
// completer (library use) -- drop such messages unprinted and keep serving.
#include <catch2/catch.hpp>

#include <signal.h>

#include <chrono>
#include <regex>
#include <string>
#include <type_traits>

#include <caf/actor_system.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>

#include "sail_tinker/actors/balancer.hpp"
#include "sail_tinker/actors/http_worker.hpp"
#include "sail_tinker/actors/service.hpp"
#include "sail_tinker/actors/system_config.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/type_ids.hpp"
#include "support/cluster_fixture.hpp"
#include "support/lsan_openssl.hpp"
#include "support/paths.hpp"
#include "support/process.hpp"
#include "support/stack_fixture.hpp"

using namespace sail;
using namespace sail::test;
using namespace std::chrono_literals;

namespace {

/// A handler for a message that starts with atom::crash.
template <class Signature>
struct handles_crash : std::false_type {};

template <class... Ts, class Out>
struct handles_crash<caf::typed_mpi<caf::detail::type_list<atom::crash, Ts...>, Out>>
  : std::true_type {};

/// Whether an interface has a crash hook.
template <class Handle>
struct has_crash_hook;

template <class... Signatures>
struct has_crash_hook<caf::typed_actor<Signatures...>>
  : std::disjunction<handles_crash<Signatures>...> {};

// No interface has a crash hook: tests end a worker through the pool's
// observer (support/pool_testing.hpp), which production pools do not have,
// so no message a peer can send ends a worker.
static_assert(!has_crash_hook<service_actor>::value);
static_assert(!has_crash_hook<completer_service_actor>::value);
static_assert(!has_crash_hook<completer_actor>::value);
static_assert(!has_crash_hook<balancer_actor>::value);
static_assert(!has_crash_hook<pool_actor>::value);
static_assert(!has_crash_hook<pool_impl_actor>::value);
static_assert(!has_crash_hook<http_worker_actor>::value);
static_assert(!has_crash_hook<resolver_actor>::value);

/// What CAF 0.17.6 cannot print: a duration with the unit 2^30.
caf::duration hostile_duration() {
  caf::duration d;
  d.unit = static_cast<caf::time_unit>(0x40000000u);
  d.count = 1;
  return d;
}

completer_config valid_config() {
  completer_config cfg;
  cfg.model = "Qwen/Qwen3-8B";
  cfg.max_tokens = 8;
  return cfg;
}

/// A trainer-side actor system connected to the service node on `port`.
struct peer {
  node_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<caf::scoped_actor> self;
  service_actor front;

  explicit peer(uint16_t port) {
    configure_test_node(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    self = std::make_unique<caf::scoped_actor>(*sys);
    auto svc = sys->middleman().remote_actor<service_actor>("127.0.0.1", port);
    REQUIRE(svc);
    front = *svc;
  }

  ~peer() {
    self.reset();
  }

  /// Sends the hostile message to `dest`, then asks it for its counters: the
  /// answer comes after the message was handled (same sender, same link).
  template <class Handle>
  bool survives(const Handle& dest) {
    (*self)->send(caf::actor_cast<caf::actor>(dest), hostile_duration());
    bool answered = false;
    (*self)->request(dest, 10s, atom::stats_v).receive(
      [&](completer_stats&) { answered = true; },
      [&](caf::error& err) { FAIL_CHECK("no answer after the message: " << render(err)); });
    return answered;
  }

  completer_actor obtain() {
    completer_actor result;
    (*self)->request(front, 10s, atom::obtain_v, valid_config()).receive(
      [&](completer_actor& c, webhook_endpoint&) { result = std::move(c); },
      [&](caf::error& err) { FAIL("obtain failed: " << render(err)); });
    return result;
  }
};

} // namespace

TEST_CASE("hostile peer: a serve node drops an unprintable message and keeps serving",
          "[cluster][processes]") {
  process_options opts;
  opts.env["SAIL_API_KEY"] = "sk_x";
  opts.env["SAIL_BASE_URL"] = "http://127.0.0.1:9";
  opts.env["TINKER_API_KEY"] = std::nullopt;
  opts.env["TINKER_BASE_URL"] = std::nullopt;
  subprocess serve{std::string{binary_dir} + "/sail-tinker",
                   {"serve", "--port", "0", "--metrics-port", "0", "--log-level", "warn",
                    "--middleman.heartbeat-interval=200ms",
                    "--middleman.connection-timeout=1s"},
                   opts};
  auto line = serve.wait_for_line("listening on caf://", 30s);
  std::smatch m;
  REQUIRE(line);
  REQUIRE(std::regex_match(*line, m, std::regex{R"(^listening on caf://127\.0\.0\.1:(\d+)$)"}));
  {
    peer p{static_cast<uint16_t>(std::stoi(m[1].str()))};
    // The published front, then the metering front serve hands out.
    CHECK(p.survives(p.front));
    auto c = p.obtain();
    REQUIRE(c);
    CHECK(p.survives(c));
  }
  serve.signal(SIGTERM);
  auto done = serve.wait(30s);
  INFO("stderr: " << done.err);
  CHECK(done.exited);
  CHECK(done.term_signal == 0);
  CHECK(done.exit_code == 0);
}

TEST_CASE("hostile peer: a bare completer drops unprintable and forged down messages",
          "[cluster]") {
  // Library use: a service node without a decorator hands out the completer
  // itself.
  emulator::server emu{test_emulator_options()};
  test_node node{emu};
  {
    peer p{node.port()};
    auto c = p.obtain();
    REQUIRE(c);
    CHECK(p.survives(c));
    // A down message for a monitor the completer never set, whose reason
    // carries the unprintable value (CAF's default down handler prints it).
    caf::down_msg forged{caf::actor_addr{},
                         caf::make_error(caf::sec::runtime_error, hostile_duration())};
    (*p.self)->send(caf::actor_cast<caf::actor>(c), forged);
    CHECK(p.survives(c));
    CHECK(p.survives(p.front));
  }
  CHECK(node.stats().in_flight == 0);
  node.stop();
}

TEST_CASE("hostile peer: crash messages to the published front and a completer are "
          "not handled",
          "[cluster]") {
  emulator::server emu{test_emulator_options()};
  test_node node{emu};
  {
    peer p{node.port()};
    auto c = p.obtain();
    REQUIRE(c);
    for (auto dest : {caf::actor_cast<caf::actor>(p.front), caf::actor_cast<caf::actor>(c)}) {
      (*p.self)->send(dest, atom::crash_v);
      for (uint32_t slot = 0; slot < 4; ++slot)
        (*p.self)->send(dest, atom::crash_v, slot);
    }
    // Answered after the crash messages (same sender, same link).
    CHECK(p.survives(c));
    CHECK(p.survives(p.front));
    sample_request req;
    req.prompt.tokens = {1, 2, 3};
    (*p.self)->request(c, 30s, atom::sample_v, req).receive(
      [&](tokens_with_logprobs& res) { CHECK(!res.tokens.empty()); },
      [&](caf::error& err) { FAIL_CHECK("sample failed: " << render(err)); });
  }
  // No worker of the node's pool died.
  auto s = node.stats();
  CHECK(s.retries_by_cause.count("worker_restart") == 0);
  CHECK(s.retries_by_cause.count("redispatch") == 0);
  CHECK(s.completed == 1);
  node.stop();
}
