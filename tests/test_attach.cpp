// Attach and observe, through a spawned completer against the emulator:
// the observer of a sample hears (key, response id) as soon as Sail accepts
// the create; a sample carrying that response id is polled, not created
// again; an id Sail no longer knows (404) falls back to a create under the
// same key, which replays. What a rollout resume relies on.
#include <catch2/catch.hpp>

#include <future>
#include <mutex>

#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "sail_tinker/messages/type_ids.hpp"
#include "sail_tinker/messages/validation.hpp"
#include "support/stack_fixture.hpp"

using namespace sail;
using namespace std::chrono_literals;
using sail::test::stack_fixture;

namespace {

/// What an observer heard.
struct heard {
  std::mutex mtx;
  std::vector<std::pair<std::string, std::string>> accepted;
  std::promise<void> first;
  bool signalled = false;
};

sample_observer_actor::behavior_type observer(std::shared_ptr<heard> h) {
  return {
    [h](atom::accepted, const std::string& key, const std::string& rid) {
      std::lock_guard<std::mutex> guard{h->mtx};
      h->accepted.emplace_back(key, rid);
      if (!h->signalled) {
        h->signalled = true;
        h->first.set_value();
      }
    },
  };
}

emulator::options slow_emulator() {
  auto opts = sail::test::test_emulator_options();
  // Queued long enough that the observer hears the create before the result.
  for (auto* w : {&opts.latency.asap, &opts.latency.priority, &opts.latency.standard,
                  &opts.latency.flex})
    w->queued = std::chrono::milliseconds(150);
  return opts;
}

sample_request prompt(std::string key) {
  sample_request req;
  req.prompt = model_input{{3, 1, 4, 1, 5}};
  req.key = std::move(key);
  return req;
}

uint64_t posts_for(const emulator::stats& st, const std::string& key) {
  auto i = st.arrivals.find(key);
  return i == st.arrivals.end() ? 0 : i->second.size();
}

uint64_t polls_for(const emulator::stats& st, const std::string& rid) {
  auto i = st.poll_arrivals.find(rid);
  return i == st.poll_arrivals.end() ? 0 : i->second.size();
}

} // namespace

TEST_CASE("attach: the observer hears the response id before the result, attaching "
          "polls it without a second create",
          "[attach]") {
  stack_fixture fx{slow_emulator()};
  auto c = fx.rt->make_completer(stack_fixture::config(6));
  REQUIRE(c);
  auto h = std::make_shared<heard>();
  auto first = h->first.get_future();
  auto obs = fx.sys.spawn(observer, h);
  caf::scoped_actor self{fx.sys};
  auto req = prompt("attach-key-1");
  req.observer = obs;
  std::optional<tokens_with_logprobs> created;
  self->request(*c, 30s, atom::sample_v, req)
    .receive([&](tokens_with_logprobs& r) { created = std::move(r); },
             [&](caf::error& err) { FAIL(render(err)); });
  REQUIRE(created);
  REQUIRE(first.wait_for(10s) == std::future_status::ready);
  std::string rid;
  {
    std::lock_guard<std::mutex> guard{h->mtx};
    REQUIRE(h->accepted.size() == 1);
    CHECK(h->accepted[0].first == "attach-key-1");
    rid = h->accepted[0].second;
  }
  // The response id is the emulator's: it was polled under that id.
  auto before = fx.emu.snapshot();
  CHECK(posts_for(before, "attach-key-1") == 1);
  CHECK(polls_for(before, rid) >= 1);
  // Attach: same key, the response id; no observer notification, no POST.
  auto again = prompt("attach-key-1");
  again.response_id = rid;
  again.observer = obs;
  self->request(*c, 30s, atom::sample_v, again)
    .receive([&](tokens_with_logprobs& r) { CHECK(r == *created); },
             [&](caf::error& err) { FAIL(render(err)); });
  auto after = fx.emu.snapshot();
  CHECK(posts_for(after, "attach-key-1") == 1);
  CHECK(polls_for(after, rid) == polls_for(before, rid) + 1);
  CHECK(after.inference_runs_total == 1);
  {
    std::lock_guard<std::mutex> guard{h->mtx};
    CHECK(h->accepted.size() == 1);
  }
  self->send_exit(obs, caf::exit_reason::user_shutdown);
}

TEST_CASE("attach: an id Sail does not know falls back to a create under the key",
          "[attach]") {
  stack_fixture fx{slow_emulator()};
  auto c = fx.rt->make_completer(stack_fixture::config(6));
  REQUIRE(c);
  auto h = std::make_shared<heard>();
  auto first = h->first.get_future();
  auto obs = fx.sys.spawn(observer, h);
  caf::scoped_actor self{fx.sys};
  auto req = prompt("attach-key-2");
  req.response_id = "resp_forgotten_by_sail";
  req.observer = obs;
  self->request(*c, 30s, atom::sample_v, req)
    .receive([&](tokens_with_logprobs& r) { CHECK_FALSE(r.tokens.empty()); },
             [&](caf::error& err) { FAIL(render(err)); });
  auto st = fx.emu.snapshot();
  CHECK(polls_for(st, "resp_forgotten_by_sail") == 1);
  CHECK(posts_for(st, "attach-key-2") == 1);
  CHECK(st.inference_runs_total == 1);
  // The fallback create was accepted: the observer heard the new id.
  REQUIRE(first.wait_for(10s) == std::future_status::ready);
  {
    std::lock_guard<std::mutex> guard{h->mtx};
    REQUIRE(h->accepted.size() == 1);
    CHECK(h->accepted[0].first == "attach-key-2");
    CHECK(h->accepted[0].second != "resp_forgotten_by_sail");
  }
  self->send_exit(obs, caf::exit_reason::user_shutdown);
}

TEST_CASE("attach: a group or a malformed response id is refused", "[attach]") {
  stack_fixture fx;
  auto c = fx.rt->make_completer(stack_fixture::config(4));
  REQUIRE(c);
  caf::scoped_actor self{fx.sys};
  auto req = prompt("k");
  req.response_id = "resp_1";
  self->request(*c, 10s, atom::sample_group_v, req, uint32_t{2})
    .receive([&](group_result&) { FAIL("a group with a response id was accepted"); },
             [&](caf::error& err) {
               CHECK(code_of(err) == errc::invalid_argument);
               CHECK(info_of(err)->field == "response_id");
             });
  auto bad = prompt("k");
  bad.response_id = "resp\n1";
  CHECK(info_of(validate(bad))->field == "response_id");
  bad.response_id = std::string(1025, 'r');
  CHECK(info_of(validate(bad))->field == "response_id");
  // A dot segment would poll GET /v1/responses/.. (found by fuzz/prompts_line's
  // review): refused through the completer, nothing sent.
  for (const char* dots : {".", ".."}) {
    bad.response_id = dots;
    self->request(*c, 10s, atom::sample_v, bad)
      .receive([&](tokens_with_logprobs&) { FAIL("a dot-segment response id was polled"); },
               [&](caf::error& err) {
                 CHECK(code_of(err) == errc::invalid_argument);
                 CHECK(info_of(err)->field == "response_id");
               });
  }
  CHECK(fx.emu.snapshot().inference_runs_total == 0);
  CHECK(fx.emu.snapshot().requests.count("GET /v1/responses/{id}") == 0);
}
