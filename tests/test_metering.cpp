// The metering front (actors/metering.hpp) around a real completer of the
// in-process stack: it answers exactly what the completer answers and
// records each request's latency and outcome; it exits with the completer.
// (The /metrics text it feeds is checked through `serve` in test_cli.)
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>

#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>

#include "sail_tinker/actors/metering.hpp"
#include "support/stack_fixture.hpp"

using namespace sail;
using sail::test::stack_fixture;
using namespace std::chrono_literals;

namespace {

sample_request prompt_request(std::vector<int64_t> prompt) {
  sample_request req;
  req.prompt.tokens = std::move(prompt);
  return req;
}

} // namespace

TEST_CASE("metering front: forwards, records outcomes, follows the completer") {
  stack_fixture f;
  auto inner = f.rt->make_completer(stack_fixture::config());
  REQUIRE(inner);
  auto metrics = std::make_shared<request_metrics>();
  auto front = spawn_metering_front(f.sys, *inner, metrics);
  caf::scoped_actor self{f.sys};

  // A sample: the completer's answer, recorded as one ok "sample".
  self->request(front, 60s, atom::sample_v, prompt_request({1, 2, 3}))
    .receive([](tokens_with_logprobs& res) { CHECK_FALSE(res.tokens.empty()); },
             [](caf::error& err) { FAIL(render(err)); });
  // A bad sample: the completer's typed error, recorded as failed.
  self->request(front, 60s, atom::sample_v, prompt_request({}))
    .receive([](tokens_with_logprobs&) { FAIL("an empty prompt was sampled"); },
             [](caf::error& err) { CHECK(code_of(err) == errc::invalid_argument); });
  // A group counts once under its own operation.
  self->request(front, 60s, atom::sample_group_v, prompt_request({4, 5}), uint32_t{3})
    .receive([](group_result& res) { CHECK(res.members.size() == 3); },
             [](caf::error& err) { FAIL(render(err)); });
  // stats: the completer's counters, passed through.
  self->request(front, 60s, atom::stats_v)
    .receive([](completer_stats& s) { CHECK(s.completed == 4); },
             [](caf::error& err) { FAIL(render(err)); });

  auto ops = metrics->snapshot();
  CHECK(ops["sample"].ok == 1);
  CHECK(ops["sample"].failed == 1);
  CHECK(ops["sample"].latency.count() == 2);
  CHECK(ops["sample_group"].ok == 1);
  CHECK(ops["sample_group"].failed == 0);
  CHECK(ops["sample_group"].latency.count() == 1);

  // The front's lifetime follows the completer's.
  self->monitor(front);
  self->send_exit(*inner, caf::exit_reason::user_shutdown);
  self->receive([&](caf::down_msg& dm) {
    CHECK(dm.source == front.address());
    CHECK(dm.reason == caf::exit_reason::user_shutdown);
  });
}
