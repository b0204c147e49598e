// sail-tinker rollout --input P --output O --steps K [--overprovision F]:
// training steps from files. The prompts go through a step sampler
// (actors/step_sampler.hpp) over a durable run (journal: --journal, default
// O.journal): each step returns K complete groups, the surplus in flight is
// carried over, nothing billed is dropped. One output line per group, in
// delivery order:
//
//   {"step":S,"version":"...","staleness":0,"stale":false,"id":"...",
//    "samples":[...],"meta":...}
//
// (a failed group also carries "error"). A step's lines are synced before
// the next step acknowledges it; run again after a crash, the command
// resumes: acknowledged groups are skipped, groups already in the output are
// not written again, the rest re-attach from the journal.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <set>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <caf/actor_system.hpp>

#include "sail_tinker/actors/step_sampler.hpp"
#include "sail_tinker/app/rollout_common.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/rollout/durable_run.hpp"
#include "sail_tinker/rollout/file_run.hpp"
#include "sail_tinker/rollout/prompts_file.hpp"
#include "sail_tinker/rollout/samples_file.hpp"

namespace sail::app {

namespace {

caf::expected<double> double_flag(const parsed_args& args, const std::string& name,
                                  double fallback, double lo, double hi) {
  auto v = args.get(name);
  if (!v)
    return fallback;
  char* end = nullptr;
  auto x = std::strtod(v->c_str(), &end);
  if (v->empty() || end != v->c_str() + v->size() || !(x >= lo && x <= hi))
    return invalid_argument(name, "--" + name + ": expected a number within ["
                                    + fmt(lo, 2) + ", " + fmt(hi, 2) + "]");
  return x;
}

std::string group_line(const sampled_group& g, bool stale, const std::optional<std::string>& meta) {
  std::vector<std::string> samples;
  for (auto& m : g.members)
    samples.push_back(rollout::format_result(m));
  auto body = rollout::format_line(g.prompt_id, samples, meta);
  std::string head = "{\"step\":" + std::to_string(g.step) + ",\"version\":"
                     + boost::json::serialize(boost::json::value(g.version)) + ",\"staleness\":"
                     + std::to_string(g.staleness) + ",\"stale\":" + (stale ? "true" : "false")
                     + ",\"launched_step\":" + std::to_string(g.launched_step)
                     + ",\"refills\":" + std::to_string(g.refills) + ",";
  if (g.error) {
    auto e = rollout::format_error(g.error);  // {"error":{...}}
    head += e.substr(1, e.size() - 2) + ",";
  }
  return head + body.substr(1);
}

} // namespace

std::vector<flag_spec> rollout_steps_flags() {
  return {
    {"steps", "K", "training steps of K complete groups each (a step sampler over a durable "
                   "run): one record per group with its step"},
    {"overprovision", "F", "with --steps: extra groups kept in flight, a fraction of K "
                           "(default 0.25)"},
    {"max-staleness", "V", "with --steps: versions a delivered group may lag (default 1)"},
    {"version", "LABEL", "with --steps: the adapter version label (default: the adapter)"},
  };
}

int run_rollout_steps(const parsed_args& args, app_node_config& cfg) {
  auto settings = rollout_run_settings(args);
  if (!settings)
    return report_error(settings.error());
  auto& s = *settings;
  if (s.input == "-")
    return report_error(invalid_argument("input", "--steps needs an input file"));
  if (s.journal_path.empty())
    return report_error(invalid_argument("no-journal", "--steps needs its journal"));
  if (s.ordered)
    return report_error(invalid_argument("ordered", "--steps writes in delivery order"));
  auto k = parse_int("steps", *args.get("steps"), 1, 1'000'000);
  if (!k)
    return report_error(k.error());
  auto over = double_flag(args, "overprovision", 0.25, 0.0, 10.0);
  if (!over)
    return report_error(over.error());
  step_sampler_options so;
  so.groups_per_step = static_cast<uint32_t>(*k);
  so.overprovision = *over;
  so.group_size = args.has("group-size") ? s.group_size : 8;
  if (auto v = args.get("max-staleness")) {
    auto n = parse_int("max-staleness", *v, 0, 1'000'000);
    if (!n)
      return report_error(n.error());
    so.max_staleness = static_cast<uint32_t>(*n);
  }
  auto tp = plan_target(args, cfg.app, s.ccfg);
  if (!tp)
    return report_error(tp.error());

  // The prompts: every line checked before anything is sent.
  auto reader = rollout::prompts_reader::open(s.input);
  if (!reader)
    return report_error(reader.error());
  std::vector<group_prompt> prompts;
  std::vector<std::optional<std::string>> metas;
  std::set<std::string> ids;
  while (true) {
    std::string_view text;
    uint64_t line = 0;
    auto more = (*reader)->next(text, line);
    if (!more)
      return report_error(more.error());
    if (!*more)
      break;
    auto p = rollout::parse_prompt_line(text, line, s.limits);
    if (!p)
      return report_error(p.error());
    if (p->n && *p->n != so.group_size)
      return report_error(invalid_argument(
        "n", "line " + std::to_string(line) + ": --steps samples groups of --group-size "
               + std::to_string(so.group_size) + " (n " + std::to_string(*p->n) + ")"));
    if (!ids.insert(p->id).second)
      return report_error(invalid_argument("id", "line " + std::to_string(line)
                                                   + ": duplicate id '" + p->id + "'"));
    group_prompt g;
    g.id = p->id;
    g.request.prompt = model_input{std::move(p->prompt)};
    g.request.stop = std::move(p->stop);
    g.request.max_tokens = p->max_tokens;
    prompts.push_back(std::move(g));
    metas.push_back(std::move(p->meta));
  }
  if (prompts.empty())
    return report_error(invalid_argument("input", "no prompts"));
  std::map<std::string, size_t> meta_of;
  for (size_t i = 0; i < prompts.size(); ++i)
    meta_of[prompts[i].id] = i;

  if (s.restart)
    if (auto err = rollout::start_over(s.journal_path, s.output))
      return report_error(err);
  // Groups already in the output (a step written but not acknowledged).
  std::set<std::string> written;
  auto repaired = rollout::repair_samples_file(s.output, 0, [&](std::string_view id) {
    written.emplace(id);
    return caf::error{};
  });
  if (!repaired)
    return report_error(repaired.error());
  auto run = rollout::durable_run::open(s.journal_path, s.run_id);
  if (!run)
    return report_error(run.error());
  auto out = rollout::samples_writer::open(s.output);
  if (!out)
    return report_error(out.error());

  return run_on_target(cfg, *tp, s.ccfg, [&](caf::actor_system& sys, rollout_target& target) {
    int code = exit_ok;
    auto sampler = step_sampler::open(sys, *run, std::move(prompts), so);
    if (!sampler) {
      target.shutdown_actors();
      return report_error(sampler.error());
    }
    std::cout << "rollout: steps of " << so.groups_per_step << " groups of " << so.group_size
              << ", overprovision " << fmt(so.overprovision, 2) << ", max staleness "
              << so.max_staleness << ", run " << (*run)->id() << ", journal " << s.journal_path
              << ", target " << target.description() << std::endl;
    auto version = args.get("version").value_or("");
    sampler_target st{target.completer(), s.ccfg, version};
    // The durable fronts encode in this process: with its [wire] (through
    // service nodes too, whose own [wire] then must match).
    st.wire = tp->opts.wire;
    bool interrupted = false;
    signal_watcher watcher{[&interrupted](int) { interrupted = true; }};
    uint64_t groups = 0, stale = 0, failed = 0, steps = 0, dup = 0;
    caf::error fatal;
    auto write = [&](const step_batch& b) -> caf::error {
      for (auto* list : {&b.groups, &b.stale, &b.failed})
        for (auto& g : *list) {
          if (written.count(g.prompt_id)) {
            ++dup;
            continue;
          }
          if (auto err = (*out)->append(group_line(g, list == &b.stale,
                                                   metas[meta_of[g.prompt_id]])))
            return err;
          written.insert(g.prompt_id);
          ++groups;
          stale += list == &b.stale;
          failed += list == &b.failed;
        }
      return (*out)->sync();
    };
    while (!interrupted) {
      auto b = (*sampler)->next_step(st);
      if (!b) {
        fatal = b.error();
        break;
      }
      if (b->groups.empty() && b->stale.empty() && b->failed.empty())
        break;
      ++steps;
      if (auto err = write(*b)) {
        fatal = err;
        break;
      }
      std::cout << "step " << b->step << ": " << b->groups.size() << " groups, "
                << b->stale.size() << " stale, " << b->failed.size() << " failed" << std::endl;
    }
    if (!fatal && !interrupted) {
      auto rest = (*sampler)->drain();
      if (!rest)
        fatal = rest.error();
      else if (auto err = write(*rest))
        fatal = err;
    }
    if (!fatal && !interrupted)
      fatal = (*sampler)->close();
    watcher.stop();
    auto stats = (*sampler)->stats();
    sampler->reset();
    target.stop(sys);
    if (auto err = (*run)->close(); err && !fatal)
      fatal = err;
    std::cout << "\nsummary\n  steps               " << steps << "\n  groups written      "
              << groups << " (" << stale << " stale, " << failed << " failed; "
              << written.size() << " in the output)\n  groups skipped      "
              << stats.skipped << " acknowledged earlier, " << dup
              << " already in the output\n  members             " << stats.members_delivered
              << " delivered, " << stats.refills << " refills\n";
    if (fatal)
      code = report_error(fatal);
    else if (interrupted)
      code = exit_interrupted;
    else if (failed > 0)
      code = exit_failure;
    return code;
  });
}

} // namespace sail::app
