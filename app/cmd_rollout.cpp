// sail-tinker rollout: the rollout run (--input, in rollout_run.cpp) or the
// synthetic load generator: G x N samples (one sample_group per group, at
// most C groups in flight) through the actor stack, with a live progress bar,
// and a summary table. Its target: --nodes, --base-url or SAIL_API_KEY, or
// an embedded emulator with --emulator; none of them exits 2.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "sail_tinker/actors/cluster.hpp"
#include "sail_tinker/app/cli.hpp"
#include "sail_tinker/app/commands.hpp"
#include "sail_tinker/app/rollout_common.hpp"
#include "sail_tinker/app/rollout_spend.hpp"
#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/validation.hpp"

namespace sail::app {

namespace {

using clock_type = std::chrono::steady_clock;

std::vector<flag_spec> rollout_flags() {
  std::vector<flag_spec> flags{
    {"input", "FILE", "the rollout run: prompts, one JSON object per line (- = standard input)"},
  };
  auto append = [&flags](const std::vector<flag_spec>& more) {
    flags.insert(flags.end(), more.begin(), more.end());
  };
  append(rollout_run_flags());
  append({
    {"group-size", "N", "samples per prompt without its own n (default 1; synthetic: 8)"},
    {"concurrency", "C", "prompts (groups) in flight at most (default 16; synthetic: 4)"},
  });
  append(completer_flags(rollout_completer_defaults));
  append({
    {"groups", "G", "synthetic mode: number of groups (default 16)"},
    {"prompt-len", "L", "synthetic mode: prompt length in tokens (default 32)"},
    {"seed", "N", "synthetic mode: seed of the generated prompts (default 1)"},
  });
  append(rollout_spend_flags());
  append(rollout_target_flags());
  return flags;
}

constexpr const char* rollout_synopsis
  = "sail-tinker rollout --input PROMPTS.jsonl|- --output SAMPLES.jsonl [--journal FILE] "
    "[--run-id ID] [--restart] [--ordered] [completer flags] [--nodes HOST:PORT,...]\n"
    "       sail-tinker rollout [--groups G --group-size N --prompt-len L] (synthetic load)";

constexpr const char* rollout_description
  = "The rollout run (--input): reads tokenized prompts (JSONL: id, prompt, n,\n"
    "max_tokens, stop, meta), checks the whole input before sending anything (exit\n"
    "2 naming line and field), samples n per prompt and writes one JSONL line per\n"
    "prompt to --output when its group is done (completion order; --ordered: input\n"
    "order). Idempotency-Keys derive from (run id, prompt id, member), and an\n"
    "SQLite journal (default OUTPUT.journal) records the run, each sample's response\n"
    "id and result: running the same command again resumes (done prompts skipped,\n"
    "known responses polled, the rest created with their same keys; no inference\n"
    "runs twice). A changed configuration or input exits 2 naming what differs;\n"
    "--restart discards the journal and the output.\n"
    "Without --input: the synthetic load generator (G x N samples, one\n"
    "sample_group per group, at most C groups in flight) with a summary.\n"
    "Targets, in order: --nodes (service nodes: least in flight, samples of a lost\n"
    "node re-routed with their keys), --base-url or SAIL_API_KEY (Sail), or\n"
    "--emulator: an embedded emulator (queued 20 ms + 2 ms per token unless\n"
    "--emu-latency-* say otherwise); none of them: exit 2 naming SAIL_API_KEY.\n"
    "Exit 0 when every sample succeeded, 1 otherwise, 2 for invalid\n"
    "input, 3 when a spending cap (--budget-usd, --budget-tokens) stopped the run\n"
    "(in-flight samples finish and are recorded; run again with a larger cap to\n"
    "continue), 130 when interrupted (SIGINT/SIGTERM: in-flight work is cancelled,\n"
    "the journal and output are flushed).";

// -- shared progress -------------------------------------------------------------------

struct progress {
  std::mutex mtx;
  uint64_t samples_ok = 0;
  uint64_t samples_failed = 0;
  uint64_t tokens = 0;
  uint64_t groups_done = 0;
  uint64_t groups_in_flight = 0;
  std::vector<double> group_latencies;
  std::map<std::string, uint64_t> errors_by_kind;
  std::string first_error;
  bool cancelled = false;
  /// Usage and cost totals (under mtx) and the cap (thread-safe); null: none.
  rollout_spend* spend = nullptr;
  /// The cap refused a group: nothing more was created.
  bool budget_stopped = false;
};

struct plan {
  uint32_t groups = 16;
  uint32_t group_size = 8;
  size_t prompt_len = 32;
  int64_t max_tokens = 32;
  uint32_t concurrency = 4;
  uint64_t seed = 1;
  int64_t vocabulary = 64;
  caf::timespan timeout = std::chrono::minutes(16);
  std::string run_id;
  std::string model;
  std::string window;
};

model_input make_prompt(const plan& p, uint32_t group) {
  std::mt19937_64 rng{p.seed * 1'000'003 + group};
  std::uniform_int_distribution<int64_t> dist{0, p.vocabulary - 1};
  std::vector<int64_t> tokens(p.prompt_len);
  for (auto& t : tokens)
    t = dist(rng);
  return model_input{std::move(tokens)};
}

// -- the driver actor ---------------------------------------------------------------------

struct driver_state {
  static inline const char* name = "sail.rollout_driver";
  std::vector<completer_actor> targets;
  plan p;
  std::shared_ptr<progress> prog;
  std::shared_ptr<std::promise<void>> done;
  uint32_t next = 0;
  size_t rr = 0;
  /// group id -> target index
  std::map<std::string, size_t> in_flight;
  /// group id -> what its members hold of the spending cap
  std::map<std::string, std::vector<budget_hold>> holds;
  bool cancelled = false;
  bool budget_stopped = false;
};

using driver_ptr = caf::stateful_actor<driver_state>*;

void finish_if_done(driver_ptr self) {
  auto& st = self->state;
  if (!st.in_flight.empty())
    return;
  if (st.next < st.p.groups && !st.cancelled && !st.budget_stopped)
    return;
  if (st.done) {
    st.done->set_value();
    st.done.reset();
  }
  self->quit();
}

void record_group(driver_ptr self, const std::string& gid, clock_type::time_point start,
                  caf::expected<group_result> res) {
  auto& st = self->state;
  st.in_flight.erase(gid);
  std::vector<budget_hold> holds;
  if (auto i = st.holds.find(gid); i != st.holds.end()) {
    holds = std::move(i->second);
    st.holds.erase(i);
  }
  auto latency = std::chrono::duration<double>(clock_type::now() - start).count();
  {
    std::lock_guard<std::mutex> guard{st.prog->mtx};
    auto& pr = *st.prog;
    // Every member settles its hold at its usage (unknown, failed: the
    // worst case stays spent).
    for (size_t i = 0; i < holds.size(); ++i) {
      std::optional<sample_usage> used;
      if (res && i < res->members.size() && res->members[i].result)
        used = res->members[i].result->usage;
      pr.spend->cap->settle(holds[i], st.p.model, st.p.window, used);
    }
    --pr.groups_in_flight;
    ++pr.groups_done;
    pr.group_latencies.push_back(latency);
    auto fail = [&](const caf::error& err, uint64_t n) {
      pr.samples_failed += n;
      pr.errors_by_kind[error_kind(err)] += n;
      if (pr.first_error.empty())
        pr.first_error = code_of(err) ? render(err) : caf::to_string(err);
    };
    if (!res) {
      fail(res.error(), st.p.group_size);
    } else {
      for (auto& m : res->members) {
        if (m.result) {
          ++pr.samples_ok;
          pr.tokens += m.result->tokens.size();
          if (pr.spend != nullptr)
            pr.spend->ledger.add(st.p.model, st.p.window, m.result->usage);
        } else {
          fail(m.error, 1);
        }
      }
    }
  }
}

void launch(driver_ptr self) {
  auto& st = self->state;
  while (!st.cancelled && !st.budget_stopped && st.next < st.p.groups
         && st.in_flight.size() < st.p.concurrency) {
    // The cap first: a group that does not fit at its worst is not created.
    std::vector<budget_hold> holds;
    if (auto* cap = st.prog->spend != nullptr ? st.prog->spend->cap.get() : nullptr) {
      for (uint32_t i = 0; i < st.p.group_size; ++i) {
        auto h = cap->reserve(st.p.model, st.p.window, static_cast<int64_t>(st.p.prompt_len),
                              st.p.max_tokens);
        if (!h)
          break;
        holds.push_back(*h);
      }
      if (holds.size() < st.p.group_size) {
        for (auto& h : holds)
          cap->release(h);
        st.budget_stopped = true;
        std::lock_guard<std::mutex> guard{st.prog->mtx};
        st.prog->budget_stopped = true;
        break;
      }
    }
    auto g = st.next++;
    auto gid = st.p.run_id + "-g" + std::to_string(g);
    auto target_index = st.rr++ % st.targets.size();
    sample_request req;
    req.prompt = make_prompt(st.p, g);
    req.max_tokens = st.p.max_tokens;
    req.group_id = gid;
    st.in_flight.emplace(gid, target_index);
    if (!holds.empty())
      st.holds.emplace(gid, std::move(holds));
    {
      std::lock_guard<std::mutex> guard{st.prog->mtx};
      ++st.prog->groups_in_flight;
    }
    auto start = clock_type::now();
    self->request(st.targets[target_index], st.p.timeout, atom::sample_group_v, std::move(req),
                  st.p.group_size)
      .then(
        [self, gid, start](group_result& res) {
          record_group(self, gid, start, std::move(res));
          launch(self);
          finish_if_done(self);
        },
        [self, gid, start](caf::error& err) {
          if (err == caf::sec::request_timeout)
            err = make_error(errc::timeout, "group did not finish in time");
          record_group(self, gid, start, std::move(err));
          launch(self);
          finish_if_done(self);
        });
  }
}

caf::behavior driver(driver_ptr self, std::vector<completer_actor> targets, plan p,
                     std::shared_ptr<progress> prog, std::shared_ptr<std::promise<void>> done) {
  auto& st = self->state;
  st.targets = std::move(targets);
  st.p = std::move(p);
  st.prog = std::move(prog);
  st.done = std::move(done);
  // Any exit (also a kill at shutdown) releases the waiting main thread.
  self->attach_functor([d = st.done] {
    try {
      d->set_value();
    } catch (const std::future_error&) {
      // already set
    }
  });
  launch(self);
  finish_if_done(self);
  return {
    [=](atom::cancel, const std::string&) {
      auto& s = self->state;
      if (s.cancelled)
        return;
      s.cancelled = true;
      {
        std::lock_guard<std::mutex> guard{s.prog->mtx};
        s.prog->cancelled = true;
      }
      for (auto& [gid, idx] : s.in_flight)
        self->send(s.targets[idx], atom::cancel_v, gid);
      finish_if_done(self);
    },
  };
}

// -- rendering ------------------------------------------------------------------------------

void render_progress(progress& pr, const plan& p, clock_type::time_point start,
                     progress_mode mode, bool final) {
  uint64_t ok, failed, inflight, gdone;
  {
    std::lock_guard<std::mutex> guard{pr.mtx};
    ok = pr.samples_ok;
    failed = pr.samples_failed;
    inflight = pr.groups_in_flight;
    gdone = pr.groups_done;
  }
  uint64_t total = uint64_t{p.groups} * p.group_size;
  auto done = ok + failed;
  auto secs = std::chrono::duration<double>(clock_type::now() - start).count();
  auto rate = secs > 0 ? static_cast<double>(done) / secs : 0.0;
  if (mode == progress_mode::bar) {
    constexpr int width = 30;
    auto filled = total == 0 ? width : static_cast<int>(width * done / total);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    std::cout << "\r[" << bar << "] " << done << '/' << total << " samples  " << failed
              << " failed  " << inflight << " groups in flight  " << fmt(secs) << " s  "
              << fmt(rate) << " samples/s\x1b[K";
    if (final)
      std::cout << '\n';
    std::cout << std::flush;
  } else if (mode == progress_mode::lines) {
    std::cout << "progress: " << done << '/' << total << " samples (" << failed
              << " failed), " << gdone << '/' << p.groups << " groups, " << inflight
              << " in flight, " << fmt(secs) << " s" << std::endl;
  }
}

caf::expected<int64_t> int_flag(const parsed_args& a, const std::string& name, int64_t min,
                                int64_t max, int64_t fallback) {
  if (auto v = a.get(name))
    return parse_int(name, *v, min, max);
  return fallback;
}

std::string random_run_id() {
  std::random_device rd;
  std::ostringstream out;
  out << std::hex << std::setw(8) << std::setfill('0') << rd();
  return out.str();
}

int run_synthetic(const parsed_args& args, app_node_config& cfg) {
  plan p;
  {
    auto g = int_flag(args, "groups", 1, 1'000'000, p.groups);
    auto n = int_flag(args, "group-size", 1, 4096, p.group_size);
    auto l = int_flag(args, "prompt-len", 1, max_prompt_tokens, 32);
    auto m = int_flag(args, "max-tokens", 1, 1'000'000, rollout_completer_defaults.max_tokens);
    auto c = int_flag(args, "concurrency", 1, 100'000, p.concurrency);
    auto s = int_flag(args, "seed", 0, INT64_MAX, 1);
    for (auto* x : {&g, &n, &l, &m, &c, &s})
      if (!*x)
        return report_error(x->error());
    p.groups = static_cast<uint32_t>(*g);
    p.group_size = static_cast<uint32_t>(*n);
    p.prompt_len = static_cast<size_t>(*l);
    p.max_tokens = *m;
    p.concurrency = static_cast<uint32_t>(*c);
    p.seed = static_cast<uint64_t>(*s);
    p.run_id = random_run_id();
  }
  auto parsed_cfg = completer_config_from(args, rollout_completer_defaults);
  if (!parsed_cfg)
    return report_error(parsed_cfg.error());
  auto ccfg = std::move(*parsed_cfg);
  p.model = ccfg.model;
  p.window = ccfg.completion_window;
  auto spend = make_rollout_spend(args, cfg.app, ccfg);
  if (!spend)
    return report_error(spend.error());
  auto mode = progress_mode_from(args);
  if (!mode)
    return report_error(mode.error());
  auto tp = plan_target(args, cfg.app, ccfg);
  if (!tp)
    return report_error(tp.error());
  p.timeout = tp->request_timeout;

  return run_on_target(cfg, *tp, ccfg, [&](caf::actor_system& sys, rollout_target& target) {
    int code = exit_ok;
    std::vector<completer_actor> targets{target.completer()};
    uint64_t total = uint64_t{p.groups} * p.group_size;
    std::cout << "rollout: " << p.groups << " groups x " << p.group_size << " samples = "
              << total << " samples, prompt " << p.prompt_len << " tokens, max "
              << p.max_tokens << " tokens, concurrency " << p.concurrency << ", window "
              << ccfg.completion_window << ", target " << target.description() << std::endl;
    auto prog = std::make_shared<progress>();
    prog->spend = spend->get();
    auto done = std::make_shared<std::promise<void>>();
    auto finished = done->get_future();
    auto start = clock_type::now();
    auto drv = sys.spawn(driver, targets, p, prog, done);
    signal_watcher watcher{[drv](int) { caf::anon_send(drv, atom::cancel_v, std::string{"all"}); }};
    auto tick = *mode == progress_mode::bar ? std::chrono::milliseconds(100)
                                            : std::chrono::milliseconds(250);
    auto last_line = clock_type::now();
    while (finished.wait_for(tick) != std::future_status::ready) {
      if (*mode == progress_mode::bar) {
        render_progress(*prog, p, start, *mode, false);
      } else if (*mode == progress_mode::lines
                 && clock_type::now() - last_line >= std::chrono::seconds(2)) {
        last_line = clock_type::now();
        render_progress(*prog, p, start, *mode, false);
      }
    }
    auto elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
    render_progress(*prog, p, start, *mode, true);
    watcher.stop();
    // Summary.
    std::ostringstream out;
    auto row = [&](const std::string& k, const std::string& v) {
      out << "  " << std::left << std::setw(20) << k << v << '\n';
    };
    auto rep = target.stop(sys);
    auto& emu_stats = rep.emulator;
    std::lock_guard<std::mutex> guard{prog->mtx};
    auto& pr = *prog;
    auto samples = pr.samples_ok + pr.samples_failed;
    out << "\nsummary\n";
    row("samples", std::to_string(pr.samples_ok) + " ok, " + std::to_string(pr.samples_failed)
                     + " failed, of " + std::to_string(total)
                     + (pr.cancelled ? " (interrupted)" : ""));
    row("groups", std::to_string(pr.groups_done) + " of " + std::to_string(p.groups));
    row("tokens", std::to_string(pr.tokens) + " ("
                    + fmt(pr.samples_ok ? static_cast<double>(pr.tokens)
                                            / static_cast<double>(pr.samples_ok)
                                        : 0.0)
                    + " per sample)");
    row("wall time", fmt(elapsed, 2) + " s");
    row("throughput", fmt(elapsed > 0 ? static_cast<double>(samples) / elapsed : 0.0)
                        + " samples/s, "
                        + fmt(elapsed > 0 ? static_cast<double>(pr.tokens) / elapsed : 0.0)
                        + " tokens/s");
    row("group latency", "p50 " + fmt(percentile(pr.group_latencies, 0.50), 3) + " s   p90 "
                           + fmt(percentile(pr.group_latencies, 0.90), 3) + " s   p99 "
                           + fmt(percentile(pr.group_latencies, 0.99), 3) + " s");
    for (auto& [k, v] : (*spend)->rows())
      row(k, v);
    target_rows(rep, pr.errors_by_kind, row);
    std::cout << out.str() << std::flush;
    if (!pr.first_error.empty())
      log_warn("rollout", "first error", {{"error", pr.first_error}});
    if (pr.cancelled) {
      code = exit_interrupted;
    } else if (pr.budget_stopped) {
      auto line = "error: " + (*spend)->budget_message(samples, total - samples) + "\n";
      std::fwrite(line.data(), 1, line.size(), stderr);
      code = exit_budget;
    } else if (pr.samples_failed > 0 || (emu_stats && emu_stats->max_runs_per_key > 1)) {
      code = exit_failure;
    }
    return code;
  });
}

/// The command line of `sail-tinker rollout`.
command_spec rollout_command() {
  return {rollout_synopsis, rollout_description, rollout_flags(), 0, log_level::info};
}

/// `sail-tinker rollout` with its arguments parsed.
int run_rollout(const parsed_args& args, app_node_config& cfg) {
  if (args.has("input")) {
    for (auto* f : {"groups", "prompt-len", "seed"})
      if (args.has(f))
        return report_error(invalid_argument(
          f, std::string{"--"} + f + " belongs to the synthetic mode (without --input)"));
    return run_rollout_input(args, cfg);
  }
  for (auto& f : rollout_run_flags())
    if (args.has(f.name))
      return report_error(invalid_argument(f.name, "--" + f.name + " needs --input"));
  return run_synthetic(args, cfg);
}

} // namespace

int cmd_rollout(const std::vector<std::string>& raw) {
  return run_command<app_node_config>(raw, rollout_command(), run_rollout);
}

} // namespace sail::app
