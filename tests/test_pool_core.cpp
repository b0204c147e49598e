// The worker pool's decisions (actors/pool_core.hpp) one call at a time:
// admission (run, wait, overloaded), placement, pause, restart intensity and
// re-dispatch with the dispatch cap. No actors, no HTTP; time is made up.
// The same decisions through the running pool: tests/test_runtime.cpp.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "sail_tinker/actors/pool_core.hpp"

using namespace sail;
using namespace std::chrono_literals;

namespace {

using core = pool_core<std::string>;
using admission = core::admission;
using clock_type = core::clock_type;

pool_limits limits(size_t slots, size_t max_in_flight, size_t max_queued,
                   uint32_t max_dispatch_attempts = 3, uint32_t max_restarts = 20,
                   caf::timespan restart_window = 10s) {
  return {slots, max_in_flight, max_queued, max_dispatch_attempts, max_restarts,
          restart_window};
}

/// What a test saw the core ask for: dispatches (id, slot, dispatch) and
/// abandoned jobs (id, payload, dispatches).
struct recorder {
  struct dispatch {
    uint64_t id;
    int32_t slot;
    uint32_t number;
    bool operator==(const dispatch&) const = default;
  };
  struct abandoned {
    uint64_t id;
    std::string payload;
    uint32_t dispatches;
    bool operator==(const abandoned&) const = default;
  };
  std::vector<dispatch> dispatched;
  std::vector<abandoned> gave_up;

  auto on_dispatch() {
    return [this](uint64_t id, core::entry& e) {
      dispatched.push_back({id, e.slot, e.dispatch});
    };
  }
  auto on_abandon() {
    return [this](uint64_t id, std::string&& p, uint32_t dispatches) {
      gave_up.push_back({id, std::move(p), dispatches});
    };
  }
};

/// A worker loss handled the way the pool does: give up, or restart the slot.
bool lose_worker(core& c, size_t slot, clock_type::time_point now, recorder& r) {
  if (!c.restart_allowed(now))
    return false;
  c.restart_slot(slot, r.on_dispatch(), r.on_abandon());
  return true;
}

/// Admits job `id` the way the pool does: ask, then add unless refused.
admission submit(core& c, uint64_t id) {
  auto how = c.admit();
  if (how != admission::overloaded)
    c.add(id, "job-" + std::to_string(id), how);
  return how;
}

} // namespace

TEST_CASE("pool core: admission runs, queues, then refuses", "[pool_core][admission]") {
  core c{limits(2, 2, 1)};
  CHECK(submit(c, 1) == admission::run);
  CHECK(submit(c, 2) == admission::run);
  CHECK(submit(c, 3) == admission::wait);
  CHECK(submit(c, 4) == admission::overloaded);
  CHECK(c.active() == 2);
  CHECK(c.queued() == 1);
  CHECK(c.in_flight() == 3);
  CHECK(c.find(4) == nullptr);
  // A finished job makes room: the waiting one runs, in its freed slot.
  auto slot_of_1 = c.find(1)->slot;
  REQUIRE(c.release(1) == std::optional<std::string>{"job-1"});
  recorder r;
  c.pump(r.on_dispatch());
  REQUIRE(r.dispatched.size() == 1);
  CHECK(r.dispatched[0] == recorder::dispatch{3, slot_of_1, 1});
  CHECK(c.active() == 2);
  CHECK(c.queued() == 0);
  // The queue has room again.
  CHECK(submit(c, 5) == admission::wait);
  CHECK(submit(c, 6) == admission::overloaded);
}

TEST_CASE("pool core: a job released while it waits is skipped, its place freed",
          "[pool_core][admission]") {
  core c{limits(1, 1, 2)};
  submit(c, 1);
  CHECK(submit(c, 2) == admission::wait);
  CHECK(submit(c, 3) == admission::wait);
  CHECK(submit(c, 4) == admission::overloaded);
  REQUIRE(c.release(2)); // cancelled while queued
  CHECK(c.queued() == 1);
  CHECK(submit(c, 5) == admission::wait);
  REQUIRE(c.release(1));
  recorder r;
  c.pump(r.on_dispatch());
  REQUIRE(r.dispatched.size() == 1);
  CHECK(r.dispatched[0].id == 3);
  CHECK(!c.release(2)); // already gone
  CHECK(c.in_flight() == 2);
}

TEST_CASE("pool core: placement takes the least loaded slot", "[pool_core][placement]") {
  core c{limits(3, 100, 0)};
  for (uint64_t id = 1; id <= 6; ++id)
    REQUIRE(submit(c, id) == admission::run);
  for (size_t s = 0; s < 3; ++s)
    CHECK(c.load(s) == 2);
  // Empty slot 1, then the next two go there.
  std::vector<uint64_t> on_1;
  for (uint64_t id = 1; id <= 6; ++id)
    if (c.find(id)->slot == 1)
      on_1.push_back(id);
  for (auto id : on_1)
    c.release(id);
  CHECK(c.load(1) == 0);
  submit(c, 7);
  submit(c, 8);
  CHECK(c.find(7)->slot == 1);
  CHECK(c.find(8)->slot == 1);
  submit(c, 9);
  CHECK(c.find(9)->slot == 0); // all at 2 again: the first
  CHECK(c.find(9)->dispatch == 1);
}

TEST_CASE("pool core: a pause queues new work until the resume after the last 429",
          "[pool_core][pause]") {
  core c{limits(2, 10, 10)};
  auto t0 = clock_type::time_point{} + 1h;
  auto p = c.pause(t0, 2s);
  CHECK(p.started);
  REQUIRE(p.resume_after);
  CHECK(*p.resume_after == caf::timespan{2s});
  CHECK(c.paused());
  CHECK(submit(c, 1) == admission::wait);
  // A shorter pause inside the current one changes nothing.
  auto shorter = c.pause(t0 + 500ms, 1s);
  CHECK(!shorter.started);
  CHECK(!shorter.resume_after);
  // A longer one extends it, with a timer of its own.
  auto longer = c.pause(t0 + 1s, 3s);
  CHECK(!longer.started);
  REQUIRE(longer.resume_after);
  CHECK(*longer.resume_after == caf::timespan{3s});
  // The first timer finds the pause still on.
  CHECK(!c.resume(t0 + 2s));
  recorder r;
  c.pump(r.on_dispatch());
  CHECK(r.dispatched.empty());
  CHECK(c.resume(t0 + 4s));
  c.pump(r.on_dispatch());
  REQUIRE(r.dispatched.size() == 1);
  CHECK(r.dispatched[0].id == 1);
  // A second timer after the end is a no-op.
  CHECK(!c.resume(t0 + 5s));
  // No duration: one second.
  auto p0 = c.pause(t0 + 10s, caf::timespan{0});
  CHECK(p0.started);
  CHECK(*p0.resume_after == caf::timespan{1s});
}

TEST_CASE("pool core: a lost worker's jobs are re-dispatched as their next dispatch",
          "[pool_core][redispatch]") {
  core c{limits(2, 10, 10)};
  auto t0 = clock_type::time_point{} + 1h;
  for (uint64_t id = 1; id <= 4; ++id)
    submit(c, id);
  std::vector<uint64_t> on_0;
  for (uint64_t id = 1; id <= 4; ++id)
    if (c.find(id)->slot == 0)
      on_0.push_back(id);
  REQUIRE(on_0.size() == 2);
  recorder r;
  REQUIRE(lose_worker(c, 0, t0, r));
  CHECK(r.gave_up.empty());
  REQUIRE(r.dispatched.size() == 2);
  for (auto& d : r.dispatched) {
    CHECK((d.id == on_0[0] || d.id == on_0[1]));
    CHECK(d.number == 2);
  }
  // Slot 0 started over empty, so both went back there.
  CHECK(c.load(0) == 2);
  CHECK(c.load(1) == 2);
  CHECK(c.active() == 4);
  // The first dispatch's report is stale now; the second's counts.
  CHECK(c.current(on_0[0], 1) == nullptr);
  CHECK(c.current(on_0[0], 2) != nullptr);
  // Jobs of the other slot kept their dispatch.
  for (uint64_t id = 1; id <= 4; ++id)
    if (c.find(id)->slot == 1)
      CHECK(c.current(id, 1) != nullptr);
}

TEST_CASE("pool core: after max_dispatch_attempts a job is abandoned and its place freed",
          "[pool_core][redispatch]") {
  core c{limits(1, 1, 1, /*max_dispatch_attempts*/ 2)};
  auto t0 = clock_type::time_point{} + 1h;
  submit(c, 1);
  CHECK(submit(c, 2) == admission::wait);
  recorder r;
  REQUIRE(lose_worker(c, 0, t0, r));
  REQUIRE(r.dispatched.size() == 1);
  CHECK(r.dispatched[0] == recorder::dispatch{1, 0, 2});
  REQUIRE(lose_worker(c, 0, t0 + 1s, r));
  REQUIRE(r.gave_up.size() == 1);
  CHECK(r.gave_up[0] == recorder::abandoned{1, "job-1", 2});
  CHECK(c.find(1) == nullptr);
  // Its place is free again, and the queue's bound still holds (the
  // abandoned job counted as running, not as waiting).
  CHECK(c.active() == 0);
  CHECK(c.queued() == 1);
  c.pump(r.on_dispatch());
  REQUIRE(r.dispatched.size() == 2);
  CHECK(r.dispatched[1] == recorder::dispatch{2, 0, 1});
  CHECK(c.active() == 1);
  CHECK(c.queued() == 0);
  CHECK(submit(c, 3) == admission::wait);
  CHECK(submit(c, 4) == admission::overloaded);
}

TEST_CASE("pool core: more than max_restarts within the window gives up",
          "[pool_core][restart]") {
  core c{limits(2, 10, 10, 3, /*max_restarts*/ 2, /*window*/ 10s)};
  auto t0 = clock_type::time_point{} + 1h;
  submit(c, 1);
  recorder r;
  CHECK(lose_worker(c, 0, t0, r));
  CHECK(lose_worker(c, 1, t0 + 4s, r));
  // The third within 10 s: give up, nothing touched.
  auto before = r.dispatched.size();
  auto slot = c.find(1)->slot;
  auto dispatch = c.find(1)->dispatch;
  CHECK(!lose_worker(c, static_cast<size_t>(slot), t0 + 9s, r));
  CHECK(r.dispatched.size() == before);
  CHECK(c.find(1)->slot == slot);
  CHECK(c.find(1)->dispatch == dispatch);
}

TEST_CASE("pool core: restarts older than the window no longer count",
          "[pool_core][restart]") {
  core c{limits(1, 10, 10, 3, /*max_restarts*/ 2, /*window*/ 10s)};
  auto t0 = clock_type::time_point{} + 1h;
  recorder r;
  CHECK(lose_worker(c, 0, t0, r));
  CHECK(lose_worker(c, 0, t0 + 5s, r));
  // t0 is more than 10 s before t0 + 11 s: two in the window, allowed.
  CHECK(lose_worker(c, 0, t0 + 11s, r));
  // t0 + 5 s, t0 + 11 s and now: three within 10 s.
  CHECK(!lose_worker(c, 0, t0 + 12s, r));
}

TEST_CASE("pool core: restart_intensity with max_restarts 0 gives up at once",
          "[pool_core][restart]") {
  restart_intensity ri{0, 10s};
  CHECK(!ri.allow(clock_type::time_point{} + 1h));
}

TEST_CASE("pool core: clear hands every job over and empties the pool", "[pool_core]") {
  core c{limits(2, 1, 5)};
  for (uint64_t id = 1; id <= 4; ++id)
    submit(c, id);
  std::vector<std::string> seen;
  c.clear([&](uint64_t, std::string& p) { seen.push_back(p); });
  CHECK(seen.size() == 4);
  CHECK(c.in_flight() == 0);
  CHECK(c.load(0) == 0);
  CHECK(c.load(1) == 0);
  recorder r;
  c.pump(r.on_dispatch());
  CHECK(r.dispatched.empty());
  CHECK(submit(c, 9) == admission::run);
}
