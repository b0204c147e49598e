#include "sail_tinker/app/rollout_common.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <sstream>

#include <caf/scoped_actor.hpp>

#include "sail_tinker/app/emulator_flags.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/validation.hpp"

namespace sail::app {

namespace {

/// The synthetic load's CAF request timeout is the window's deadline plus two
/// of these: a safety net only, as the completer (or the cluster) answers
/// every sample, with a typed timeout at its deadline at the latest. (It was
/// `[completer] request-margin`, which nothing else read.)
constexpr caf::timespan request_margin = std::chrono::seconds(30);

} // namespace

caf::expected<progress_mode> progress_mode_from(const parsed_args& args) {
  auto mode = isatty(STDOUT_FILENO) ? progress_mode::bar : progress_mode::lines;
  if (auto v = args.get("progress")) {
    if (*v == "bar")
      mode = progress_mode::bar;
    else if (*v == "lines")
      mode = progress_mode::lines;
    else if (*v == "off")
      mode = progress_mode::off;
    else if (*v != "auto")
      return invalid_argument("progress", "--progress: expected auto, bar, lines or off");
  }
  return mode;
}

std::vector<flag_spec> rollout_target_flags() {
  std::vector<flag_spec> flags{
    {"nodes", "HOST:PORT,...",
     "service nodes started with `sail-tinker serve` (least in flight, re-routed on node loss)"},
    {"base-url", "URL", "Sail base URL (overrides SAIL_BASE_URL)"},
    {"emulator", "", "sample from an embedded emulator of Sail (no account needed; the "
                     "--emu-* flags tune it)"},
    {"progress", "MODE", "auto (bar on a terminal, lines otherwise) | bar | lines | off"},
  };
  for (auto& f : emulator_fault_latency_flags("emu-"))
    flags.push_back(f);
  return flags;
}

std::string fmt(double v, int precision) {
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

std::string fmt_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0)
    return "?";
  if (seconds < 60)
    return fmt(seconds) + " s";
  auto total = static_cast<uint64_t>(seconds + 0.5);
  std::ostringstream out;
  if (total >= 3600)
    out << total / 3600 << 'h' << std::setw(2) << std::setfill('0') << (total % 3600) / 60
        << 'm';
  else
    out << total / 60 << 'm' << std::setw(2) << std::setfill('0') << total % 60 << 's';
  return out.str();
}

std::pair<double, double> rss_mib() {
  // VmRSS and VmHWM (its high-water mark) of /proc/self/status, in KiB.
  double rss = 0;
  double peak = 0;
  std::ifstream in{"/proc/self/status"};
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, 6, "VmRSS:") == 0)
      rss = std::strtod(line.c_str() + 6, nullptr) / 1024.0;
    else if (line.compare(0, 6, "VmHWM:") == 0)
      peak = std::strtod(line.c_str() + 6, nullptr) / 1024.0;
  }
  return {rss, peak};
}

caf::expected<target_plan> plan_target(const parsed_args& args, const app_options& config,
                                       const completer_config& ccfg) {
  target_plan plan;
  if (auto v = args.get("nodes")) {
    if (args.has("base-url"))
      return invalid_argument("nodes", "--nodes and --base-url exclude each other");
    auto parsed = parse_node_list(*v, "nodes");
    if (!parsed)
      return std::move(parsed.error());
    plan.nodes = std::move(*parsed);
  }
  // The embedded emulator only when asked for: a forgotten key must not
  // quietly produce samples from a toy model.
  plan.embedded = args.has("emulator");
  if (plan.embedded && (!plan.nodes.empty() || args.has("base-url")))
    return invalid_argument("emulator", "--emulator excludes --nodes and --base-url");
  for (auto* w : plan.emu_opts.latency.all()) {
    w->queued = std::chrono::milliseconds(20);
    w->per_token = std::chrono::microseconds(2000);
  }
  if (auto err = apply_emulator_flags(args, "emu-", plan.emu_opts))
    return err;
  if (!plan.embedded)
    for (auto& f : emulator_fault_latency_flags("emu-"))
      if (args.has(f.name))
        return invalid_argument(f.name, "--" + f.name + " applies to the embedded emulator only");
  auto opts = make_runtime_options(config, args.get("base-url"));
  if (!opts)
    return std::move(opts.error());
  plan.opts = std::move(*opts);
  if (config.extras.group_policy.empty())
    plan.opts.completer.group_policy = group_failure_policy::partial;
  // A cluster's nodes validate the configuration themselves (their model
  // tables decide); locally, the runtime's table does.
  if (plan.nodes.empty()) {
    if (auto err = validate(ccfg, plan.opts.models))
      return err;
  } else {
    auto& c = plan.copts;
    c = config.cluster;
    c.nodes = plan.nodes;
    c.config = ccfg;
    if (auto err = validate(c))
      return err;
  }
  // Checked after the configuration, so that a bad setting is named as such
  // whatever the environment.
  auto* env_key = std::getenv("SAIL_API_KEY");
  if (!plan.embedded && plan.nodes.empty() && !args.has("base-url")
      && (env_key == nullptr || *env_key == '\0'))
    return invalid_argument("SAIL_API_KEY",
                            "no target: set SAIL_API_KEY (Sail), or pass --base-url URL, "
                            "--nodes HOST:PORT,... or --emulator (an embedded emulator)");
  plan.request_timeout = plan.opts.pool.timing(ccfg.completion_window).deadline
                         + 2 * request_margin;
  return plan;
}

rollout_target::~rollout_target() {
  if (emu_)
    emu_->stop();
}

void rollout_target::shutdown_actors() {
  if (cl_) {
    cl_->shutdown();
    cl_.reset();
  }
  if (rt_) {
    rt_->shutdown();
    rt_.reset();
  }
}

caf::error rollout_target::start_emulator(target_plan& plan) {
  if (!plan.embedded)
    return caf::none;
  plan.emu_opts.threads = 2;
  auto made = emulator::server::make(plan.emu_opts);
  if (!made)
    return std::move(made.error());
  emu_ = std::move(*made);
  plan.opts.sail_base_url = emu_->base_url();
  plan.opts.sail_api_key = plan.emu_opts.sail_api_key;
  log_info("rollout", "embedded emulator started", {{"base_url", emu_->base_url()}});
  return caf::none;
}

caf::error rollout_target::start(caf::actor_system& sys, target_plan& plan,
                                 const completer_config& ccfg) {
  if (!plan.nodes.empty()) {
    // Connects asynchronously; wait for the first node (the others join as
    // they come; samples queue while none is ready).
    auto started = cluster::start(sys, plan.copts);
    if (!started)
      return std::move(started.error());
    cl_ = std::move(*started);
    if (!cl_->wait_ready(1, plan.copts.connect_timeout + std::chrono::seconds(1))) {
      std::string why;
      for (auto& n : cl_->status())
        why += "\n  " + n.address.to_string() + ": "
               + (n.last_error.empty() ? to_string(n.state) : n.last_error);
      cl_->shutdown();
      cl_.reset();
      return make_error(errc::node_down, "no service node is ready:" + why, "nodes");
    }
    completer_ = cl_->handle();
    text_ = std::to_string(plan.nodes.size()) + " service node(s)";
    return caf::none;
  }
  auto started = runtime::start(sys, plan.opts);
  if (!started)
    return std::move(started.error());
  rt_ = std::move(*started);
  auto c = rt_->make_completer(ccfg);
  if (!c) {
    rt_->shutdown();
    rt_.reset();
    return std::move(c.error());
  }
  completer_ = *c;
  text_ = emu_ ? "embedded emulator " + emu_->base_url() : rt_->options().sail_base_url;
  return caf::none;
}

rollout_target::report rollout_target::stop(caf::actor_system& sys) {
  report rep;
  if (completer_ && !stopped_) {
    caf::scoped_actor self{sys};
    self->request(completer_, std::chrono::seconds(10), atom::stats_v)
      .receive([&](completer_stats& s) { rep.counters = std::move(s); },
               [&](caf::error& err) {
                 log_warn("rollout", "cannot fetch completer stats", {{"error", render(err)}});
               });
  }
  stopped_ = true;
  if (cl_)
    rep.nodes = cl_->status();
  shutdown_actors();
  if (emu_) {
    emu_->stop();
    rep.emulator = emu_->snapshot();
  }
  return rep;
}

int run_on_target(app_node_config& cfg, target_plan& plan, const completer_config& ccfg,
                  const std::function<int(caf::actor_system&, rollout_target&)>& body) {
  block_termination_signals();
  // Declared before the actor system: stopped after it is gone.
  rollout_target target;
  if (auto err = target.start_emulator(plan))
    return report_error(err);
  caf::actor_system sys{cfg};
  if (auto err = target.start(sys, plan, ccfg)) {
    target.shutdown_actors();
    return report_error(err);
  }
  return body(sys, target);
}

void target_rows(const rollout_target::report& rep,
                 const std::map<std::string, uint64_t>& errors, const row_fn& row) {
  row("retries by cause", rep.counters ? render_map(rep.counters->retries_by_cause) : "n/a");
  row("polls", rep.counters ? std::to_string(rep.counters->polls) : "n/a");
  if (rep.counters && !rep.counters->webhooks.empty())
    row("webhooks", render_map(rep.counters->webhooks));
  if (rep.counters) {
    auto& g = rep.counters->guard;
    row("circuit breaker", g.breaker + ", opened " + std::to_string(g.breaker_opened) + "x, "
                             + std::to_string(g.probes) + " probes, "
                             + std::to_string(g.rejected) + " samples refused");
    row("retry budget", std::to_string(g.budget_retries) + " retries of "
                          + std::to_string(g.budget_allowed) + " allowed in the window, "
                          + std::to_string(g.budget_denied) + " deferred");
  }
  row("errors by kind", render_map(errors));
  for (auto& n : rep.nodes)
    row("node", n.address.to_string() + " " + to_string(n.state) + ", "
                  + std::to_string(n.completed) + " ok, " + std::to_string(n.failed)
                  + " failed, " + std::to_string(n.rerouted) + " re-routed, "
                  + std::to_string(n.losses) + " losses");
  if (auto& emu = rep.emulator) {
    row("inference runs", std::to_string(emu->inference_runs_total) + " for "
                            + std::to_string(emu->inference_runs.size())
                            + " Idempotency-Keys, max " + std::to_string(emu->max_runs_per_key)
                            + " per key"
                            + (emu->max_runs_per_key <= 1 ? " (no double inference)"
                                                          : " (DOUBLE INFERENCE)"));
    row("emulator billed", std::to_string(emu->billed_input_tokens) + " input ("
                             + std::to_string(emu->billed_cached_tokens) + " cached), "
                             + std::to_string(emu->billed_output_tokens) + " output tokens");
    std::map<std::string, uint64_t> fmap{emu->faults.begin(), emu->faults.end()};
    row("faults injected", render_map(fmap));
  } else {
    row("inference runs", "n/a (not on the embedded emulator)");
  }
}

} // namespace sail::app
