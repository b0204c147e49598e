// The step sampler (actors/step_sampler.hpp) through the C++ API a trainer
// uses, against the emulator over real sockets:
//
// - over-provisioned steps deliver K complete groups each, every prompt
//   exactly once over the steps and the drain, and every member the
//   emulator ran reaches the caller (billed == delivered);
// - staleness tags across adapter versions, and max_staleness routing of
//   carried-over groups to `stale`;
// - member refill under injected member failures (the group still
//   completes with n members under new keys); a structural prompt failure
//   fails the group with its error;
// - resume: a sampler reopened on the same run skips acknowledged groups,
//   re-attaches the carried ones from the journal (no inference run twice)
//   and continues the step count; each prompt is delivered exactly once over
//   both processes' lifetimes.
#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <thread>

#include "sail_tinker/actors/step_sampler.hpp"
#include "sail_tinker/rollout/durable_run.hpp"
#include "support/stack_fixture.hpp"
#include "support/temp_dir.hpp"

using namespace sail;
using sail::test::stack_fixture;
using sail::test::temp_dir;

namespace {

completer_config toy() {
  auto c = stack_fixture::config(6);
  c.completion_window = "asap";
  return c;
}

std::vector<group_prompt> prompts(size_t n) {
  std::vector<group_prompt> out;
  for (size_t i = 0; i < n; ++i) {
    group_prompt p;
    p.id = "p" + std::to_string(i);
    p.request.prompt = model_input{{static_cast<int64_t>(i + 1), 7, 9}};
    out.push_back(std::move(p));
  }
  return out;
}

emulator::options spread_latency() {
  auto o = sail::test::test_emulator_options();
  // Heavy tail: median 2 ms, p99 20 ms.
  for (auto* w : o.latency.all())
    w->spread = emulator::latency_spread::log_normal_p99(std::chrono::milliseconds(2), 10.0);
  return o;
}

sampler_target target(stack_fixture& fx, std::string version) {
  auto c = fx.rt->make_completer(toy());
  if (!c)
    throw std::runtime_error(render(c.error()));
  return {*c, toy(), std::move(version)};
}

/// Every group of a batch, wherever it went.
void count(const step_batch& b, std::map<std::string, int>& seen, uint64_t& members) {
  for (auto* list : {&b.groups, &b.stale, &b.failed})
    for (auto& g : *list) {
      ++seen[g.prompt_id];
      members += g.members.size();
      CHECK(g.step == b.step);
    }
}

/// Waits until no group is in flight (a counter, no timing).
void settle(step_sampler& s) {
  while (s.stats().in_flight > 0)
    std::this_thread::yield();
}

} // namespace

TEST_CASE("step sampler: over-provisioned steps deliver K complete groups, every prompt once, "
          "every billed member",
          "[step_sampler]") {
  stack_fixture fx{spread_latency()};
  temp_dir dir{"sampler-basic"};
  auto run = rollout::durable_run::open(dir.file("run.journal"), std::string{"s-basic"});
  REQUIRE(run);
  step_sampler_options o;
  o.group_size = 3;
  o.groups_per_step = 4;
  o.overprovision = 0.5;
  auto s = step_sampler::open(fx.sys, *run, prompts(20), o);
  REQUIRE(s);
  auto t = target(fx, "v0");
  std::map<std::string, int> seen;
  uint64_t members = 0;
  for (uint64_t step = 0; step < 4; ++step) {
    auto b = (*s)->next_step(t);
    REQUIRE(b);
    CHECK(b->step == step);
    CHECK(b->groups.size() == 4);
    for (auto& g : b->groups) {
      CHECK(g.members.size() == 3);
      CHECK(g.version == "v0");
      CHECK(g.staleness == 0);
      CHECK_FALSE(g.error);
    }
    count(*b, seen, members);
    // Over-provisioned: 6 open after each launch, 4 taken.
    CHECK((*s)->stats().launched == std::min<uint64_t>(20, 4 * step + 6));
  }
  // drain() returns the 2 groups still open and launches nothing new.
  auto rest = (*s)->drain();
  REQUIRE(rest);
  CHECK(rest->groups.size() == 2);
  count(*rest, seen, members);
  CHECK(seen.size() == 18);
  for (auto& [id, n] : seen)
    CHECK(n == 1);
  auto st = (*s)->stats();
  CHECK(st.members_completed == st.members_delivered);
  CHECK(members == 54);
  CHECK(fx.emu.snapshot().inference_runs_total == 54);
  CHECK_FALSE((*s)->close());
}

TEST_CASE("step sampler: carried-over groups keep their version across an adapter switch, "
          "beyond max_staleness they go to stale, still delivered",
          "[step_sampler]") {
  auto max_staleness = GENERATE(0u, 1u);
  CAPTURE(max_staleness);
  stack_fixture fx;
  temp_dir dir{"sampler-stale"};
  auto run = rollout::durable_run::open(dir.file("run.journal"), std::string{"s-stale"});
  REQUIRE(run);
  step_sampler_options o;
  o.group_size = 2;
  o.groups_per_step = 2;
  o.overprovision = 1.0;  // 4 open, 2 taken: 2 carried over
  o.max_staleness = max_staleness;
  auto s = step_sampler::open(fx.sys, *run, prompts(6), o);
  REQUIRE(s);
  auto b0 = (*s)->next_step(target(fx, "v0"));
  REQUIRE(b0);
  REQUIRE(b0->groups.size() == 2);
  settle(**s);  // the 2 carried groups have completed
  auto b1 = (*s)->next_step(target(fx, "v1"));
  REQUIRE(b1);
  std::set<std::string> ids;
  for (auto* b : {&*b0, &*b1})
    for (auto* list : {&b->groups, &b->stale})
      for (auto& g : *list)
        CHECK(ids.insert(g.prompt_id).second);
  if (max_staleness == 1) {
    // Delivered first, tagged with the version that sampled them.
    REQUIRE(b1->groups.size() == 2);
    CHECK(b1->stale.empty());
    for (auto& g : b1->groups) {
      CHECK(g.version == "v0");
      CHECK(g.staleness == 1);
      CHECK(g.launched_step == 0);
      CHECK(g.step == 1);
      CHECK(g.members.size() == 2);
    }
  } else {
    // Too stale: returned in `stale`; the step waited for 2 fresh groups.
    REQUIRE(b1->stale.size() == 2);
    for (auto& g : b1->stale) {
      CHECK(g.version == "v0");
      CHECK(g.staleness == 1);
      CHECK(g.members.size() == 2);
    }
    REQUIRE(b1->groups.size() == 2);
    for (auto& g : b1->groups) {
      CHECK(g.version == "v1");
      CHECK(g.staleness == 0);
      CHECK(g.launched_step == 1);
    }
  }
  auto rest = (*s)->drain();
  REQUIRE(rest);
  for (auto* list : {&rest->groups, &rest->stale, &rest->failed})
    for (auto& g : *list)
      CHECK(ids.insert(g.prompt_id).second);
  CHECK(ids.size() == 6);
  auto st = (*s)->stats();
  CHECK(st.members_completed == st.members_delivered);
  CHECK(fx.emu.snapshot().inference_runs_total == st.members_delivered);
}

TEST_CASE("step sampler: a member failing after its retries is refilled under a new key, a "
          "structural prompt failure fails its group with the error",
          "[step_sampler]") {
  auto eo = sail::test::test_emulator_options();
  // Three members' results come back without token ids (after acceptance):
  // inference errors the completer does not retry.
  for (int i = 0; i < 3; ++i)
    eo.faults.scripted.push_back(emulator::fault_kind::missing_token_ids);
  eo.faults.routes = emulator::route_poll;
  stack_fixture fx{eo};
  temp_dir dir{"sampler-refill"};
  auto run = rollout::durable_run::open(dir.file("run.journal"), std::string{"s-refill"});
  REQUIRE(run);
  step_sampler_options o;
  o.group_size = 4;
  o.groups_per_step = 3;
  o.overprovision = 0;
  auto ps = prompts(3);
  ps[2].request.prompt = model_input{};  // empty prompt: refused before any request
  auto s = step_sampler::open(fx.sys, *run, ps, o);
  REQUIRE(s);
  auto b = (*s)->next_step(target(fx, "v0"));
  REQUIRE(b);
  REQUIRE(b->groups.size() == 2);
  for (auto& g : b->groups) {
    CHECK(g.members.size() == 4);
    CHECK_FALSE(g.error);
  }
  REQUIRE(b->failed.size() == 1);
  CHECK(b->failed[0].prompt_id == "p2");
  CHECK(code_of(b->failed[0].error) == errc::invalid_argument);
  CHECK(b->failed[0].refills == 0);
  auto st = (*s)->stats();
  CHECK(st.refills == 3);
  CHECK(b->groups[0].refills + b->groups[1].refills == 3);
  // The refills ran under keys of their own: 8 good members + 3 failed.
  CHECK(fx.emu.snapshot().inference_runs_total == 11);
}

TEST_CASE("step sampler: reopened on the same run it skips acknowledged groups, re-attaches "
          "the carried ones from the journal and delivers every prompt once",
          "[step_sampler]") {
  stack_fixture fx{spread_latency()};
  temp_dir dir{"sampler-resume"};
  auto path = dir.file("run.journal");
  step_sampler_options o;
  o.group_size = 2;
  o.groups_per_step = 3;
  o.overprovision = 1.0;
  std::map<std::string, int> seen;
  uint64_t members = 0;
  uint64_t runs_before = 0;
  {
    auto run = rollout::durable_run::open(path, std::string{"s-resume"});
    REQUIRE(run);
    auto s = step_sampler::open(fx.sys, *run, prompts(12), o);
    REQUIRE(s);
    auto t = target(fx, "v0");
    auto b0 = (*s)->next_step(t);
    REQUIRE(b0);
    count(*b0, seen, members);
    auto b1 = (*s)->next_step(t);  // acknowledges step 0
    REQUIRE(b1);
    // Step 1 is returned but never acknowledged: the trainer "dies" here,
    // with groups still open. Let them finish (billed) before the restart.
    settle(**s);
    runs_before = fx.emu.snapshot().inference_runs_total;
    CHECK(runs_before == 2 * (*s)->stats().launched);
    s->reset();  // no close(): nothing more acknowledged
    REQUIRE_FALSE((*run)->close());
  }
  {
    auto run = rollout::durable_run::open(path, std::string{"s-resume"});
    REQUIRE(run);
    auto s = step_sampler::open(fx.sys, *run, prompts(12), o);
    REQUIRE(s);
    auto st = (*s)->stats();
    CHECK(st.skipped == 3);     // step 0's groups
    CHECK((*s)->step() == 1);   // step 1 again
    auto t = target(fx, "v0");
    while (true) {
      auto b = (*s)->next_step(t);
      REQUIRE(b);
      if (b->groups.empty() && b->stale.empty() && b->failed.empty())
        break;
      count(*b, seen, members);
    }
    auto rest = (*s)->drain();
    REQUIRE(rest);
    count(*rest, seen, members);
    st = (*s)->stats();
    CHECK(st.resumed == 6);  // launched before the restart, not acknowledged
    CHECK_FALSE((*s)->close());
  }
  CHECK(seen.size() == 12);
  for (auto& [id, n] : seen)
    CHECK(n == 1);
  CHECK(members == 24);
  // Nothing created twice: one inference per member.
  CHECK(fx.emu.snapshot().inference_runs_total == 24);
}
