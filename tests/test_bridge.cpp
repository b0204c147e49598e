// The bridge from non-actor code to actors (actors/bridge.hpp) and the one
// bounded stop (actors/bounded_stop.hpp), against small real actors: typed
// replies, typed errors (timeout, cancelled), and a shutdown deadline that a
// stream of down messages does not push back.
#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <vector>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "sail_tinker/actors/bounded_stop.hpp"
#include "sail_tinker/actors/bridge.hpp"
#include "support/caf_fixture.hpp"

using namespace sail;
using namespace std::chrono_literals;
using sail::test::caf_fixture;

namespace {

/// Bound of every wait of a test (never reached when the code is right).
constexpr auto wait_bound = std::chrono::seconds(60);

/// A completer stand-in: answers a sample at once with its prompt as tokens,
/// except one keyed "never", which it holds unanswered.
struct fake_completer_state {
  static inline const char* name = "test.fake_completer";
  std::vector<caf::typed_response_promise<tokens_with_logprobs>> held;
};

completer_actor::behavior_type
fake_completer(completer_actor::stateful_pointer<fake_completer_state> self, int /*unused*/) {
  return {
    [self](atom::sample, sample_request& req) -> caf::result<tokens_with_logprobs> {
      if (req.key == "never") {
        auto rp = self->make_response_promise<tokens_with_logprobs>();
        self->state.held.push_back(rp);
        return rp;
      }
      tokens_with_logprobs out;
      out.tokens.assign(req.prompt.tokens.begin(), req.prompt.tokens.end());
      return out;
    },
    [](atom::sample_group, sample_request&, uint32_t n) -> caf::result<group_result> {
      group_result out;
      out.members.resize(n);
      return out;
    },
    [](atom::cancel, std::string&) {},
    [](atom::stats) -> caf::result<completer_stats> { return completer_stats{}; },
  };
}

sample_request request(std::string key, std::vector<int64_t> prompt = {1, 2, 3}) {
  sample_request req;
  req.key = std::move(key);
  req.prompt.tokens = std::move(prompt);
  return req;
}

template <class T>
void require_error(const caf::expected<T>& res, errc kind) {
  REQUIRE(!res);
  INFO("error: " << render(res.error()));
  CHECK(code_of(res.error()) == kind);
}

/// Ignores user_shutdown; goes only when killed.
caf::behavior stubborn(caf::event_based_actor* self, int /*unused*/) {
  self->set_exit_handler([self](caf::exit_msg& em) {
    if (em.reason == caf::exit_reason::kill)
      self->quit(em.reason);
  });
  return {[](int) {}};
}

/// On user_shutdown, goes down (reason normal) `delay` after `previous` went
/// down -- or after the exit when there is no previous: a chain of actors
/// whose down messages arrive one `delay` apart.
caf::behavior late_quitter(caf::event_based_actor* self, caf::actor previous,
                           caf::timespan delay) {
  self->set_exit_handler([=](caf::exit_msg& em) {
    if (em.reason == caf::exit_reason::kill)
      self->quit(em.reason);
    else if (!previous)
      self->delayed_send(self, delay, int{1});
  });
  if (previous) {
    self->monitor(previous);
    self->set_down_handler([=](caf::down_msg&) { self->delayed_send(self, delay, int{1}); });
  }
  return {[self](int) { self->quit(); }};
}

/// The exit reason of each actor of `xs` (monitored by `obs` before they
/// were stopped), once all are down.
std::map<caf::actor_addr, caf::error> down_reasons(caf::scoped_actor& obs, size_t n) {
  std::map<caf::actor_addr, caf::error> out;
  bool timed_out = false;
  while (out.size() < n && !timed_out)
    obs->receive([&](caf::down_msg& dm) { out.emplace(dm.source, dm.reason); },
                 caf::after(wait_bound) >> [&] { timed_out = true; });
  return out;
}

} // namespace

TEST_CASE("stop_bounded: one deadline from the start, not re-armed by down messages",
          "[bounded_stop]") {
  caf_fixture f;
  // grace 1 s; five actors go down on their own 0.4 s apart (0.4, 0.8, 1.2,
  // 1.6, 2.0 s) and one never does. A grace re-armed by every down message
  // would wait for all five (each arrives within the grace of the last) and
  // kill only the stubborn one at 3 s; one deadline kills the late ones.
  const auto grace = caf::timespan{1s};
  const auto step = caf::timespan{400ms};
  std::vector<caf::actor> chain;
  caf::actor previous;
  for (int i = 0; i < 5; ++i) {
    previous = f.sys.spawn(late_quitter, previous, step);
    chain.push_back(previous);
  }
  auto never = f.sys.spawn(stubborn, 0);
  std::vector<caf::actor> all = chain;
  all.push_back(never);
  caf::scoped_actor obs{f.sys};
  for (auto& a : all)
    obs->monitor(a);
  auto killed = stop_bounded(f.sys, all, grace);
  auto reasons = down_reasons(obs, all.size());
  REQUIRE(reasons.size() == all.size());
  // Went down on their own well before the deadline.
  CHECK(reasons[chain[0].address()] == caf::exit_reason::normal);
  // Alive at the deadline: killed, not waited for.
  CHECK(reasons[never.address()] == caf::exit_reason::kill);
  CHECK(reasons[chain[4].address()] == caf::exit_reason::kill);
  size_t kills = 0;
  for (auto& [addr, reason] : reasons)
    if (reason == caf::exit_reason::kill)
      ++kills;
  CHECK(killed == kills);
  CHECK(killed >= 2);
}

TEST_CASE("stop_bounded: actors that go down are not killed, null handles are skipped",
          "[bounded_stop]") {
  caf_fixture f;
  auto a = f.sys.spawn(fake_completer, 0);
  auto b = f.sys.spawn(fake_completer, 0);
  caf::scoped_actor obs{f.sys};
  obs->monitor(a);
  obs->monitor(b);
  // A grace far beyond the test: returning at all shows the wait ended on
  // the down messages.
  CHECK(stop_bounded(f.sys, std::vector<completer_actor>{a, completer_actor{}, b}, 1h) == 0);
  auto reasons = down_reasons(obs, 2);
  CHECK(reasons[a.address()] == caf::exit_reason::user_shutdown);
  CHECK(reasons[b.address()] == caf::exit_reason::user_shutdown);
  CHECK_FALSE(stop_bounded(f.sys, completer_actor{}, 1h));
}

TEST_CASE("bridge: typed replies as futures and callbacks", "[bridge]") {
  caf_fixture f;
  auto c = f.sys.spawn(fake_completer, 0);
  auto bridge = spawn_bridge(f.sys, "test");
  auto res = bridge_future<tokens_with_logprobs>(bridge, atom::sample_v, c,
                                                 request("k1", {4, 5}), no_call_timeout)
               .get();
  REQUIRE(res);
  CHECK(res->tokens == std::vector<int32_t>{4, 5});
  auto group = bridge_future<group_result>(bridge, atom::sample_group_v, c, request("g"),
                                           uint32_t{3}, no_call_timeout)
                 .get();
  REQUIRE(group);
  CHECK(group->members.size() == 3);
  std::promise<caf::expected<tokens_with_logprobs>> p;
  bridge_send<tokens_with_logprobs>(
    bridge, [&p](caf::expected<tokens_with_logprobs> r) { p.set_value(std::move(r)); },
    atom::sample_v, c, request("k2", {9}), caf::duration{caf::timespan{wait_bound}});
  auto cb = p.get_future().get();
  REQUIRE(cb);
  CHECK(cb->tokens == std::vector<int32_t>{9});
  stop_bounded(f.sys, std::vector<caf::actor>{caf::actor_cast<caf::actor>(bridge),
                                              caf::actor_cast<caf::actor>(c)},
               wait_bound);
}

TEST_CASE("bridge: a call past its timeout fails with errc::timeout", "[bridge]") {
  caf_fixture f;
  auto c = f.sys.spawn(fake_completer, 0);
  auto bridge = spawn_bridge(f.sys, "test");
  auto res = bridge_future<tokens_with_logprobs>(bridge, atom::sample_v, c, request("never"),
                                                 caf::duration{caf::timespan{50ms}})
               .get();
  require_error(res, errc::timeout);
  // The bridge serves the next call.
  auto ok = bridge_future<tokens_with_logprobs>(bridge, atom::sample_v, c, request("k"),
                                                no_call_timeout)
              .get();
  CHECK(ok);
  stop_bounded(f.sys, bridge, wait_bound);
  stop_bounded(f.sys, c, wait_bound);
}

TEST_CASE("bridge: open calls fail `cancelled` when it stops, later calls too", "[bridge]") {
  caf_fixture f;
  auto c = f.sys.spawn(fake_completer, 0);
  auto bridge = spawn_bridge(f.sys, "test");
  // Open in the bridge: the completer holds it unanswered.
  auto open = bridge_future<tokens_with_logprobs>(bridge, atom::sample_v, c, request("never"),
                                                  no_call_timeout);
  // A round trip through the bridge after it: the open call was sent.
  CHECK(bridge_future<tokens_with_logprobs>(bridge, atom::sample_v, c, request("k"),
                                            no_call_timeout)
          .get());
  CHECK_FALSE(stop_bounded(f.sys, bridge, wait_bound));
  auto res = open.get();
  require_error(res, errc::cancelled);
  CHECK(render(res.error()).find("test shutting down") != std::string::npos);
  // A call reaching the stopped bridge is dropped: its callback still runs.
  require_error(bridge_future<tokens_with_logprobs>(bridge, atom::sample_v, c, request("late"),
                                                    no_call_timeout)
                  .get(),
                errc::cancelled);
  // No bridge at all.
  require_error(bridge_future<tokens_with_logprobs>(bridge_actor{}, atom::sample_v, c,
                                                    request("none"), no_call_timeout)
                  .get(),
                errc::cancelled);
  // A destination that is gone.
  auto bridge2 = spawn_bridge(f.sys, "test");
  stop_bounded(f.sys, c, wait_bound);
  require_error(bridge_future<tokens_with_logprobs>(bridge2, atom::sample_v, c, request("gone"),
                                                    no_call_timeout)
                  .get(),
                errc::cancelled);
  stop_bounded(f.sys, bridge2, wait_bound);
}

TEST_CASE("blocking_request: the typed reply, errc::timeout past its bound", "[bridge]") {
  caf_fixture f;
  auto c = f.sys.spawn(fake_completer, 0);
  auto stats = blocking_request<completer_stats>(f.sys, c, wait_bound, atom::stats_v);
  CHECK(stats);
  require_error(blocking_request<tokens_with_logprobs>(f.sys, c, caf::timespan{50ms},
                                                       atom::sample_v, request("never")),
                errc::timeout);
  require_error(blocking_request<completer_stats>(f.sys, completer_actor{}, wait_bound,
                                                  atom::stats_v),
                errc::cancelled);
  stop_bounded(f.sys, c, wait_bound);
}

TEST_CASE("once_callback: runs once, a copy takes it over, unrun it fails `cancelled`",
          "[bridge]") {
  std::vector<caf::expected<signed_url>> runs;
  auto record = [&runs](caf::expected<signed_url> r) { runs.push_back(std::move(r)); };
  {
    once_callback<signed_url> a{record};
    once_callback<signed_url> b{a};  // what a CAF message copy would do
    CHECK_FALSE(a.release());        // the source no longer holds it
    b(signed_url{});
    b(signed_url{});
  }
  REQUIRE(runs.size() == 1);
  CHECK(runs[0]);
  {
    once_callback<signed_url> dropped{record};
  }
  REQUIRE(runs.size() == 2);
  require_error(runs[1], errc::cancelled);
}
