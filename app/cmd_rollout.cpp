// sail-tinker rollout: drives G x N samples (one sample_group per group, at
// most C groups in flight) through the actor stack, with a live progress bar,
// and ends with a summary table. Without --base-url, --nodes and SAIL_API_KEY
// it runs against the embedded emulator.
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
#include "sail_tinker/app/emulator_flags.hpp"
#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/validation.hpp"

namespace sail::app {

namespace {

using clock_type = std::chrono::steady_clock;

std::vector<flag_spec> rollout_flags() {
  std::vector<flag_spec> flags{
    {"groups", "G", "number of groups (default 16)"},
    {"group-size", "N", "samples per group (default 8)"},
    {"prompt-len", "L", "prompt length in tokens (default 32)"},
    {"max-tokens", "M", "max output tokens per sample (default 32)"},
    {"window", "W", "completion window (default priority)"},
    {"concurrency", "C", "groups in flight at most (default 4)"},
    {"model", "M", "model (default Qwen/Qwen3-8B)"},
    {"temperature", "T", "sampling temperature (default 1.0)"},
    {"seed", "N", "seed of the generated prompts (default 1)"},
    {"nodes", "HOST:PORT,...", "service nodes started with `sail-tinker serve` (least in flight, re-routed on node loss)"},
    {"base-url", "URL", "Sail base URL (overrides SAIL_BASE_URL; disables the embedded emulator)"},
    {"progress", "MODE", "auto (bar on a terminal, lines otherwise) | bar | lines | off"},
  };
  for (auto& f : emulator_fault_latency_flags("emu-"))
    flags.push_back(f);
  return flags;
}

constexpr const char* rollout_synopsis
  = "sail-tinker rollout [--base-url URL] --groups G --group-size N --prompt-len L "
    "--max-tokens M [--window W] [--concurrency C] [--nodes HOST:PORT,...]";

constexpr const char* rollout_description
  = "Drives G x N samples through the actor stack (one sample_group per group, at\n"
    "most C groups in flight) and prints a summary: samples, tokens, throughput,\n"
    "group latency p50/p90/p99, retries by cause, errors by kind and inference\n"
    "runs per Idempotency-Key. Targets, in order: --nodes (a cluster of service\n"
    "nodes: least in flight, samples of a lost node re-routed with their keys),\n"
    "--base-url or SAIL_API_KEY (Sail), else an embedded emulator (queued 20 ms +\n"
    "2 ms per token unless --emu-latency-* say otherwise). --emu-* flags configure\n"
    "the embedded emulator. Exit 0 when every sample succeeded, 1 otherwise, 130\n"
    "when interrupted (SIGINT/SIGTERM cancel the groups in flight).";

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
  bool cancelled = false;
};

using driver_ptr = caf::stateful_actor<driver_state>*;

void finish_if_done(driver_ptr self) {
  auto& st = self->state;
  if (!st.in_flight.empty())
    return;
  if (st.next < st.p.groups && !st.cancelled)
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
  auto latency = std::chrono::duration<double>(clock_type::now() - start).count();
  {
    std::lock_guard<std::mutex> guard{st.prog->mtx};
    auto& pr = *st.prog;
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
        } else {
          fail(m.error, 1);
        }
      }
    }
  }
}

void launch(driver_ptr self) {
  auto& st = self->state;
  while (!st.cancelled && st.next < st.p.groups && st.in_flight.size() < st.p.concurrency) {
    auto g = st.next++;
    auto gid = st.p.run_id + "-g" + std::to_string(g);
    auto target_index = st.rr++ % st.targets.size();
    sample_request req;
    req.prompt = make_prompt(st.p, g);
    req.max_tokens = st.p.max_tokens;
    req.group_id = gid;
    st.in_flight.emplace(gid, target_index);
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

std::string fmt(double v, int precision = 1) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(precision) << v;
  return out.str();
}

double percentile(std::vector<double> xs, double q) {
  if (xs.empty())
    return 0;
  std::sort(xs.begin(), xs.end());
  auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(xs.size())));
  rank = std::clamp<size_t>(rank, 1, xs.size());
  return xs[rank - 1];
}

std::string render_map(const std::map<std::string, uint64_t>& m) {
  std::string out;
  for (auto& [k, v] : m) {
    if (v == 0)
      continue;
    if (!out.empty())
      out += "  ";
    out += k + "=" + std::to_string(v);
  }
  return out.empty() ? "none" : out;
}

enum class progress_mode { bar, lines, off };

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

} // namespace

int cmd_rollout(const std::vector<std::string>& raw) {
  const command_spec spec{rollout_synopsis, rollout_description, rollout_flags(), 0,
                          log_level::info};
  app_node_config cfg;
  int early_exit = exit_ok;
  auto args = begin_command(raw, spec, cfg, early_exit);
  if (!args)
    return early_exit;
  plan p;
  {
    auto g = int_flag(*args, "groups", 1, 1'000'000, p.groups);
    auto n = int_flag(*args, "group-size", 1, 4096, p.group_size);
    auto l = int_flag(*args, "prompt-len", 1, max_prompt_tokens, 32);
    auto m = int_flag(*args, "max-tokens", 1, 1'000'000, p.max_tokens);
    auto c = int_flag(*args, "concurrency", 1, 100'000, p.concurrency);
    auto s = int_flag(*args, "seed", 0, INT64_MAX, 1);
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
  completer_config ccfg;
  ccfg.model = args->get("model").value_or("Qwen/Qwen3-8B");
  ccfg.max_tokens = p.max_tokens;
  ccfg.completion_window = args->get("window").value_or("priority");
  if (auto v = args->get("temperature")) {
    auto t = parse_double("temperature", *v);
    if (!t)
      return report_error(t.error());
    ccfg.temperature = *t;
  }
  auto mode = isatty(STDOUT_FILENO) ? progress_mode::bar : progress_mode::lines;
  if (auto v = args->get("progress")) {
    if (*v == "bar")
      mode = progress_mode::bar;
    else if (*v == "lines")
      mode = progress_mode::lines;
    else if (*v == "off")
      mode = progress_mode::off;
    else if (*v != "auto")
      return report_error(invalid_argument("progress", "--progress: expected auto, bar, lines or off"));
  }
  // Where the samples go.
  std::vector<node_address> nodes;
  if (auto v = args->get("nodes")) {
    if (args->has("base-url"))
      return report_error(invalid_argument("nodes", "--nodes and --base-url exclude each other"));
    auto parsed = parse_node_list(*v, "nodes");
    if (!parsed)
      return report_error(parsed.error());
    nodes = std::move(*parsed);
  }
  auto* env_key = std::getenv("SAIL_API_KEY");
  bool embedded = nodes.empty() && !args->has("base-url")
                  && (env_key == nullptr || *env_key == '\0');
  emulator::options emu_opts;
  for (auto* w : emu_opts.latency.all()) {
    w->queued = std::chrono::milliseconds(20);
    w->per_token = std::chrono::microseconds(2000);
  }
  if (auto err = apply_emulator_flags(*args, "emu-", emu_opts))
    return report_error(err);
  if (!embedded)
    for (auto& f : emulator_fault_latency_flags("emu-"))
      if (args->has(f.name))
        return report_error(invalid_argument(f.name, "--" + f.name
                                                       + " applies to the embedded emulator only"));
  auto opts = make_runtime_options(cfg.tune, args->get("base-url"));
  if (!opts)
    return report_error(opts.error());
  if (cfg.tune.group_policy.empty())
    opts->completer.group_policy = group_failure_policy::partial;
  // A cluster's nodes validate the configuration themselves (their model
  // tables decide); locally, the runtime's table does.
  if (nodes.empty()) {
    if (auto err = validate(ccfg, opts->models))
      return report_error(err);
  }
  cluster_options copts;
  if (!nodes.empty()) {
    copts.nodes = nodes;
    copts.config = ccfg;
    copts.connect_timeout = cfg.tune.cluster_connect_timeout;
    copts.queue_timeout = cfg.tune.cluster_queue_timeout;
    copts.max_attempts = static_cast<uint32_t>(cfg.tune.cluster_max_attempts);
    copts.retry_min = cfg.tune.cluster_retry_min;
    copts.retry_max = cfg.tune.cluster_retry_max;
    if (auto err = validate(copts))
      return report_error(err);
  }
  p.timeout = opts->pool.timing(ccfg.completion_window).deadline
              + 2 * opts->completer.request_margin;

  block_termination_signals();
  std::unique_ptr<emulator::server> emu;
  if (embedded) {
    emu_opts.threads = 2;
    auto made = emulator::server::make(emu_opts);
    if (!made)
      return report_error(made.error());
    emu = std::move(*made);
    opts->sail_base_url = emu->base_url();
    opts->sail_api_key = emu_opts.sail_api_key;
    log_info("rollout", "embedded emulator started", {{"base_url", emu->base_url()}});
  }
  int code = exit_ok;
  {
    caf::actor_system sys{cfg};
    std::unique_ptr<runtime> rt;
    std::unique_ptr<cluster> cl;
    std::vector<completer_actor> targets;
    std::string target_text;
    if (!nodes.empty()) {
      // Connects asynchronously; wait for the first node (the others join
      // as they come; samples queue while none is ready).
      auto started = cluster::start(sys, copts);
      if (!started)
        return report_error(started.error());
      cl = std::move(*started);
      if (!cl->wait_ready(1, copts.connect_timeout + std::chrono::seconds(1))) {
        std::string why;
        for (auto& n : cl->status())
          why += "\n  " + n.address.to_string() + ": "
                 + (n.last_error.empty() ? to_string(n.state) : n.last_error);
        cl->shutdown();
        return report_error(make_error(errc::node_down, "no service node is ready:" + why,
                                       "nodes"));
      }
      targets.push_back(cl->handle());
      target_text = std::to_string(nodes.size()) + " service node(s)";
    } else {
      auto started = runtime::start(sys, *opts);
      if (!started)
        return report_error(started.error());
      rt = std::move(*started);
      auto c = rt->make_completer(ccfg);
      if (!c) {
        rt->shutdown();
        return report_error(c.error());
      }
      targets.push_back(*c);
      target_text = embedded ? "embedded emulator " + emu->base_url()
                             : rt->options().sail_base_url;
    }
    uint64_t total = uint64_t{p.groups} * p.group_size;
    std::cout << "rollout: " << p.groups << " groups x " << p.group_size << " samples = "
              << total << " samples, prompt " << p.prompt_len << " tokens, max "
              << p.max_tokens << " tokens, concurrency " << p.concurrency << ", window "
              << ccfg.completion_window << ", target " << target_text << std::endl;
    auto prog = std::make_shared<progress>();
    auto done = std::make_shared<std::promise<void>>();
    auto finished = done->get_future();
    auto start = clock_type::now();
    auto drv = sys.spawn(driver, targets, p, prog, done);
    signal_watcher watcher{[drv](int) { caf::anon_send(drv, atom::cancel_v, std::string{"all"}); }};
    auto tick = mode == progress_mode::bar ? std::chrono::milliseconds(100)
                                           : std::chrono::milliseconds(250);
    auto last_line = clock_type::now();
    while (finished.wait_for(tick) != std::future_status::ready) {
      if (mode == progress_mode::bar) {
        render_progress(*prog, p, start, mode, false);
      } else if (mode == progress_mode::lines
                 && clock_type::now() - last_line >= std::chrono::seconds(2)) {
        last_line = clock_type::now();
        render_progress(*prog, p, start, mode, false);
      }
    }
    auto elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
    render_progress(*prog, p, start, mode, true);
    watcher.stop();
    // Counters of the completers (retries, polls).
    completer_stats merged;
    bool have_stats = false;
    {
      caf::scoped_actor self{sys};
      for (auto& t : targets) {
        self->request(t, std::chrono::seconds(10), atom::stats_v)
          .receive(
            [&](completer_stats& s) {
              have_stats = true;
              merge_into(merged, s);
            },
            [&](caf::error& err) {
              log_warn("rollout", "cannot fetch completer stats", {{"error", render(err)}});
            });
      }
    }
    std::optional<emulator::stats> emu_stats;
    std::vector<node_status> node_rows;
    if (cl) {
      node_rows = cl->status();
      cl->shutdown();
    }
    if (rt)
      rt->shutdown();
    if (emu) {
      emu->stop();
      emu_stats = emu->snapshot();
    }
    // Summary.
    std::lock_guard<std::mutex> guard{prog->mtx};
    auto& pr = *prog;
    auto samples = pr.samples_ok + pr.samples_failed;
    std::ostringstream out;
    auto row = [&](const std::string& k, const std::string& v) {
      out << "  " << std::left << std::setw(20) << k << v << '\n';
    };
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
    row("retries by cause", have_stats ? render_map(merged.retries_by_cause) : "n/a");
    row("polls", have_stats ? std::to_string(merged.polls) : "n/a");
    if (have_stats && !merged.webhooks.empty())
      row("webhooks", render_map(merged.webhooks));
    row("errors by kind", render_map(pr.errors_by_kind));
    for (auto& n : node_rows)
      row("node", n.address.to_string() + " " + to_string(n.state) + ", "
                    + std::to_string(n.completed) + " ok, " + std::to_string(n.failed)
                    + " failed, " + std::to_string(n.rerouted) + " re-routed, "
                    + std::to_string(n.losses) + " losses");
    if (emu_stats) {
      uint64_t faults = 0;
      for (auto& [k, v] : emu_stats->faults)
        faults += v;
      row("inference runs", std::to_string(emu_stats->inference_runs_total) + " for "
                              + std::to_string(emu_stats->inference_runs.size())
                              + " Idempotency-Keys, max "
                              + std::to_string(emu_stats->max_runs_per_key) + " per key"
                              + (emu_stats->max_runs_per_key <= 1 ? " (no double inference)"
                                                                  : " (DOUBLE INFERENCE)"));
      std::map<std::string, uint64_t> fmap{emu_stats->faults.begin(), emu_stats->faults.end()};
      row("faults injected", render_map(fmap));
    } else {
      row("inference runs", "n/a (not on the embedded emulator)");
    }
    std::cout << out.str() << std::flush;
    if (!pr.first_error.empty())
      log_warn("rollout", "first error", {{"error", pr.first_error}});
    if (pr.cancelled)
      code = exit_interrupted;
    else if (pr.samples_failed > 0 || (emu_stats && emu_stats->max_runs_per_key > 1))
      code = exit_failure;
  }
  return code;
}

} // namespace sail::app
