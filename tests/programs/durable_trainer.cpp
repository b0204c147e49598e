// A GRPO-shaped C++ trainer on a durable run, for tests/test_durable_run.cpp:
// 3 steps; per step 2 episodes, each a group of 4 (turn 1) and then, per
// member, a second turn whose prompt is the first prompt + the sampled tokens
// + a tool answer. Every call goes through a durable completer on the run,
// in a deterministic order (all turn-1 groups of the step, then every turn
// 2 in episode and member order), so the same program run again after a
// SIGKILL makes the same calls with the same keys.
//
//   durable_trainer --journal FILE --run-id ID --out FILE [--nodes H:P,...]
//
// Sail from the environment (SAIL_BASE_URL, SAIL_API_KEY), or service nodes.
// On success it writes one line per sample to --out, sorted:
//   step episode member turn version tokens...
// and prints "run: fresh F, journal J, reattached A, resent R, failed X".
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "sail_tinker/actors/cluster.hpp"
#include "sail_tinker/actors/durable_completer.hpp"
#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/actors/system_config.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/rollout/durable_run.hpp"

using namespace sail;

namespace {

struct args_t {
  std::string journal;
  std::string run_id;
  std::string out;
  std::string nodes;
};

int fail(const std::string& what) {
  std::cerr << "durable_trainer: " << what << std::endl;
  return 1;
}

int train(caf::actor_system& sys, const args_t& a, rollout::run_handle run) {
  completer_config cfg;
  cfg.model = "emulator/toy";
  cfg.max_tokens = 6;
  cfg.completion_window = "asap";
  std::unique_ptr<runtime> rt;
  std::unique_ptr<cluster> cl;
  if (a.nodes.empty()) {
    auto started = runtime::start(sys, runtime_options::from_env());
    if (!started)
      return fail(render(started.error()));
    rt = std::move(*started);
  } else {
    cluster_options co;
    auto parsed = parse_node_list(a.nodes, "nodes");
    if (!parsed)
      return fail(render(parsed.error()));
    co.nodes = std::move(*parsed);
    co.config = cfg;
    co.connect_timeout = std::chrono::seconds(10);
    auto started = cluster::start(sys, co);
    if (!started)
      return fail(render(started.error()));
    cl = std::move(*started);
    if (!cl->wait_ready(co.nodes.size(), std::chrono::seconds(20)))
      return fail("nodes not ready");
  }
  std::vector<std::string> records;
  int code = 0;
  // The trainer's side of the actor API: requests sent in a fixed order
  // (the call order the keys count in), answers awaited afterwards.
  caf::scoped_actor self{sys};
  const auto timeout = std::chrono::seconds(60);
  for (int step = 0; step < 3 && code == 0; ++step) {
    durable_options d;
    d.run = run;
    d.step = std::to_string(step);
    // The adapter version label of the step (a checkpoint path).
    d.version = "tinker://trainer/sampler_weights/step-" + std::to_string(step);
    auto made = rt ? rt->make_durable_completer(cfg, d) : cl->durable_handle(d);
    if (!made)
      return fail(render(made.error()));
    auto c = *made;
    // Turn 1: one group of 4 per episode.
    std::vector<std::vector<int64_t>> prompts;
    std::vector<caf::response_handle<caf::blocking_actor, caf::message, true>> groups;
    for (int ep = 0; ep < 2; ++ep) {
      std::vector<int64_t> p{1, 2, 3, 10 + step, 20 + ep};
      prompts.push_back(p);
      sample_request req;
      req.prompt = model_input{p};
      groups.push_back(self->request(caf::actor_cast<caf::actor>(c), timeout,
                                     atom::sample_group_v, req, uint32_t{4}));
    }
    std::vector<std::vector<tokens_with_logprobs>> first(2);
    std::string error;
    for (int ep = 0; ep < 2; ++ep) {
      groups[static_cast<size_t>(ep)].receive(
        [&](group_result& g) {
          for (auto& m : g.members) {
            if (!m.ok())
              error = render(m.error);
            else
              first[static_cast<size_t>(ep)].push_back(*m.result);
          }
        },
        [&](caf::error& err) { error = render(err); });
      if (!error.empty())
        return fail("step " + std::to_string(step) + ": " + error);
    }
    // Turn 2 per member: prompt + sampled tokens + a tool answer.
    std::vector<caf::response_handle<caf::blocking_actor, caf::message, true>> second;
    for (int ep = 0; ep < 2; ++ep)
      for (auto& r : first[static_cast<size_t>(ep)]) {
        auto p = prompts[static_cast<size_t>(ep)];
        p.insert(p.end(), r.tokens.begin(), r.tokens.end());
        p.insert(p.end(), {7, 7, 7});
        sample_request req;
        req.prompt = model_input{p};
        second.push_back(self->request(caf::actor_cast<caf::actor>(c), timeout,
                                       atom::sample_v, req));
      }
    for (int ep = 0; ep < 2; ++ep)
      for (int m = 0; m < 4; ++m) {
        std::optional<tokens_with_logprobs> res;
        second[static_cast<size_t>(ep * 4 + m)].receive(
          [&](tokens_with_logprobs& r) { res = std::move(r); },
          [&](caf::error& err) { error = render(err); });
        if (!res)
          return fail(error);
        for (int turn = 1; turn <= 2; ++turn) {
          auto& r = turn == 1 ? first[static_cast<size_t>(ep)][static_cast<size_t>(m)] : *res;
          std::ostringstream line;
          line << step << ' ' << ep << ' ' << m << ' ' << turn << ' ' << *d.version;
          for (auto t : r.tokens)
            line << ' ' << t;
          records.push_back(line.str());
        }
      }
    std::cout << "step " << step << " done" << std::endl;
  }
  uint64_t fresh = 0, journal = 0, reattached = 0, resent = 0, failed = 0;
  for (auto& [step, s] : run->stats()) {
    fresh += s.fresh;
    journal += s.from_journal;
    reattached += s.reattached;
    resent += s.resent;
    failed += s.failed;
  }
  if (auto err = run->close())
    return fail(render(err));
  if (cl)
    cl->shutdown();
  if (rt)
    rt->shutdown();
  std::sort(records.begin(), records.end());
  std::ofstream out{a.out, std::ios::trunc};
  for (auto& r : records)
    out << r << '\n';
  out.close();
  std::cout << "run: fresh " << fresh << ", journal " << journal << ", reattached "
            << reattached << ", resent " << resent << ", failed " << failed << std::endl;
  return code;
}

} // namespace

int main(int argc, char** argv) {
  args_t a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    std::string v = argv[i + 1];
    if (k == "--journal")
      a.journal = v;
    else if (k == "--run-id")
      a.run_id = v;
    else if (k == "--out")
      a.out = v;
    else if (k == "--nodes")
      a.nodes = v;
    else
      return fail("unknown argument " + k);
  }
  if (a.journal.empty() || a.run_id.empty() || a.out.empty())
    return fail("usage: durable_trainer --journal FILE --run-id ID --out FILE [--nodes ...]");
  auto run = rollout::durable_run::open(a.journal, a.run_id);
  if (!run)
    return fail(render(run.error()));
  node_config cfg;
  caf::actor_system sys{cfg};
  return train(sys, a, *run);
}
