// sail-tinker rollout --input: the rollout run's flags and printing. The run
// itself (input check, journal, resume, the loop) is rollout/file_run.hpp.
#include <algorithm>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <caf/actor_system.hpp>

#include "sail_tinker/app/rollout_common.hpp"
#include "sail_tinker/app/rollout_spend.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/validation.hpp"
#include "sail_tinker/rollout/file_run.hpp"
#include "sail_tinker/rollout/keys.hpp"

namespace sail::app {

std::vector<flag_spec> rollout_run_flags() {
  std::vector<flag_spec> flags{
    {"output", "FILE", "samples file, one JSON object per prompt (required with --input)"},
    {"journal", "FILE", "SQLite journal of the run (default OUTPUT.journal)"},
    {"no-journal", "", "run without a journal: no resume (for benchmarks)"},
    {"run-id", "ID", "run id the Idempotency-Keys derive from (default: generated, kept in "
                     "the journal)"},
    {"restart", "", "discard the journal and the output, start over (new run id)"},
    {"ordered", "", "write the output in input order (default: completion order)"},
  };
  auto steps = rollout_steps_flags();
  flags.insert(flags.end(), steps.begin(), steps.end());
  return flags;
}

namespace {

using clock_type = std::chrono::steady_clock;

} // namespace

caf::expected<rollout::file_run_settings> rollout_run_settings(const parsed_args& args) {
  rollout::file_run_settings s;
  s.input = *args.get("input");
  auto output = args.get("output");
  if (!output || output->empty())
    return invalid_argument("output", "--input needs --output FILE");
  if (*output == "-")
    return invalid_argument("output", "--output must be a file (resume appends to it)");
  s.output = *output;
  if (args.has("no-journal")) {
    if (args.has("journal"))
      return invalid_argument("journal", "--journal and --no-journal exclude each other");
  } else {
    s.journal_path = args.get("journal").value_or(s.output + ".journal");
  }
  if (auto v = args.get("run-id")) {
    if (auto err = rollout::check_run_id(*v))
      return err;
    s.run_id = *v;
  }
  s.restart = args.has("restart");
  s.ordered = args.has("ordered");
  if (auto v = args.get("group-size")) {
    auto n = parse_int("group-size", *v, 1, 4096);
    if (!n)
      return std::move(n.error());
    s.group_size = static_cast<uint32_t>(*n);
  }
  if (auto v = args.get("concurrency")) {
    auto n = parse_int("concurrency", *v, 1, 100'000);
    if (!n)
      return std::move(n.error());
    s.concurrency = static_cast<uint32_t>(*n);
  }
  auto ccfg = completer_config_from(args, rollout_completer_defaults);
  if (!ccfg)
    return std::move(ccfg.error());
  s.ccfg = std::move(*ccfg);
  if (s.ccfg.adapter_config) {
    auto normalized = normalize_adapter_config(*s.ccfg.adapter_config);
    if (!normalized)
      return std::move(normalized.error());
    s.ccfg.adapter_config = std::move(*normalized);
  }
  return s;
}

namespace {

/// Prints the progress bar or lines of the run.
class progress_printer {
public:
  explicit progress_printer(progress_mode mode) : mode_(mode) {
    last_line_ = clock_type::now();
  }

  std::chrono::milliseconds tick() const {
    return mode_ == progress_mode::bar ? std::chrono::milliseconds(100)
                                       : std::chrono::milliseconds(250);
  }

  void operator()(const rollout::file_run_progress& p, bool final) {
    if (mode_ == progress_mode::off)
      return;
    if (!final && mode_ == progress_mode::lines) {
      // Every 2 s, and at once when the first prompt is written (time to
      // the first result).
      if (clock_type::now() - last_line_ < std::chrono::seconds(2)
          && (first_written_line_ || p.written == 0))
        return;
      first_written_line_ = p.written > 0;
      last_line_ = clock_type::now();
    }
    auto rate = p.seconds > 0 ? static_cast<double>(p.arrived) / p.seconds : 0.0;
    auto left = p.samples_total - p.samples_done;
    std::string eta = left == 0 ? "0 s" : rate > 0 ? fmt_duration(static_cast<double>(left) / rate)
                                                   : "?";
    if (mode_ == progress_mode::bar) {
      constexpr int width = 30;
      auto filled = p.samples_total == 0 ? width
                                         : static_cast<int>(width * p.samples_done
                                                            / p.samples_total);
      std::string bar(static_cast<size_t>(filled), '#');
      bar.resize(width, '.');
      std::cout << "\r[" << bar << "] " << p.prompts_done << '/' << p.prompts_total
                << " prompts  " << p.samples_done << '/' << p.samples_total << " samples  "
                << p.failed << " failed  " << p.reattached << " re-attached  " << p.in_flight
                << " in flight  " << fmt(rate) << " samples/s  ETA " << eta << "\x1b[K";
      if (final)
        std::cout << '\n';
      std::cout << std::flush;
    } else {
      std::cout << "progress: " << p.prompts_done << '/' << p.prompts_total << " prompts, "
                << p.samples_done << '/' << p.samples_total << " samples (" << p.failed
                << " failed), " << p.reattached << " re-attached, " << p.in_flight
                << " in flight, " << fmt(p.seconds) << " s, ETA " << eta << std::endl;
    }
  }

private:
  progress_mode mode_;
  clock_type::time_point last_line_;
  bool first_written_line_ = false;
};

void summary_rows(const rollout::file_run& run, const row_fn& row) {
  auto c = run.counters();
  row("prompts", std::to_string(c.written) + " written, " + std::to_string(c.skipped)
                   + " already in the output, of " + std::to_string(run.input().prompts)
                   + (c.interrupted ? " (interrupted)" : ""));
  row("samples", std::to_string(c.ok) + " ok, " + std::to_string(c.failed) + " failed, "
                   + std::to_string(c.reattached) + " re-attached, "
                   + std::to_string(c.from_journal) + " from the journal");
  row("tokens", std::to_string(c.tokens) + " ("
                  + fmt(c.ok ? static_cast<double>(c.tokens) / static_cast<double>(c.ok) : 0.0)
                  + " per sample)");
  row("wall time", fmt(c.elapsed, 2) + " s");
  row("throughput", fmt(c.elapsed > 0 ? static_cast<double>(c.arrived) / c.elapsed : 0.0)
                      + " samples/s");
  auto& lat = run.latencies();
  row("prompt latency", "p50 " + fmt(percentile(lat, 0.50), 3) + " s   p90 "
                          + fmt(percentile(lat, 0.90), 3) + " s   p99 "
                          + fmt(percentile(lat, 0.99), 3) + " s");
}

} // namespace

int run_rollout_input(const parsed_args& args, app_node_config& cfg) {
  if (args.has("steps"))
    return run_rollout_steps(args, cfg);
  auto settings = rollout_run_settings(args);
  if (!settings)
    return report_error(settings.error());
  auto& s = *settings;
  // Prices and the cap first: a USD cap without a price sends nothing.
  auto spend = make_rollout_spend(args, cfg.app, s.ccfg);
  if (!spend)
    return report_error(spend.error());
  s.ledger = &(*spend)->ledger;
  s.cap = (*spend)->cap.get();
  auto mode = progress_mode_from(args);
  if (!mode)
    return report_error(mode.error());
  auto tp = plan_target(args, cfg.app, s.ccfg);
  if (!tp)
    return report_error(tp.error());
  if (s.group_size > tp->opts.completer.max_group_size)
    return report_error(invalid_argument("group-size", "--group-size: at most "
                                                         + std::to_string(
                                                           tp->opts.completer.max_group_size)));
  s.limits.max_group_size = tp->opts.completer.max_group_size;
  auto prepared = rollout::file_run::prepare(s);
  if (!prepared)
    return report_error(prepared.error());
  auto& run = **prepared;
  auto& st = run.settings();
  auto before = run.before();

  return run_on_target(cfg, *tp, st.ccfg, [&](caf::actor_system& sys, rollout_target& target) {
    int code = exit_ok;
    auto* jr = run.jr();
    std::cout << "rollout: " << run.input().prompts << " prompts, " << run.input().samples
              << " samples from " << (st.input == "-" ? "standard input" : st.input) << " -> "
              << st.output << ", run " << run.run_id() << ", journal "
              << (jr ? st.journal_path : std::string{"off"}) << ", concurrency "
              << st.concurrency << ", window " << st.ccfg.completion_window << ", target "
              << target.description() << std::endl;
    if (run.resuming())
      std::cout << "resume: " << before.prompts_written << " prompts done (in the output"
                << (run.repaired_lines() > 0
                      ? ", " + std::to_string(run.repaired_lines())
                          + " of them found after the last commit"
                      : std::string{})
                << "), " << before.samples_accepted << " samples to re-attach (response id known), "
                << before.samples_completed << " results from the journal"
                << (run.torn_bytes() > 0 ? ", a torn last line of "
                                             + std::to_string(run.torn_bytes()) + " bytes removed"
                                         : std::string{})
                << std::endl;
    progress_printer printer{*mode};
    signal_watcher watcher{[&run](int) { run.request_stop(); }};
    auto fatal = run.run(sys, target.completer(), printer.tick(), std::ref(printer));
    watcher.stop();
    std::ostringstream text;
    auto row = [&](const std::string& k, const std::string& v) {
      text << "  " << std::left << std::setw(20) << k << v << '\n';
    };
    auto rep = target.stop(sys);
    text << "\nsummary\n";
    summary_rows(run, row);
    for (auto& [k, v] : (*spend)->rows())
      row(k, v);
    target_rows(rep, run.errors_by_kind(), row);
    row("output", st.output + " (" + std::to_string(run.output_size()) + " bytes)");
    row("journal", jr ? st.journal_path + " (" + std::to_string(jr->commits()) + " commits)"
                      : std::string{"off"});
    auto [rss, peak] = rss_mib();
    row("memory", "RSS " + fmt(rss) + " MiB, peak " + fmt(peak) + " MiB");
    std::cout << text.str() << std::flush;
    if (!run.first_error().empty())
      log_warn("rollout", "first error", {{"error", run.first_error()}});
    auto c = run.counters();
    auto unknown = (*spend)->ledger.total().usage.unknown;
    if (unknown > 0)
      log_warn("rollout", "usage unknown (the responses carried no valid usage): not in the "
                          "totals or the cost",
               {{"samples", std::to_string(unknown)}});
    if (fatal) {
      code = report_error(fatal);
    } else if (c.interrupted) {
      code = exit_interrupted;
    } else if (c.budget_stopped) {
      auto total = run.input().samples;
      auto done = std::min(c.samples_done, total);
      auto line = "error: " + (*spend)->budget_message(done, total - done) + "\n";
      std::fwrite(line.data(), 1, line.size(), stderr);
      code = exit_budget;
    } else if (c.failed > 0 || (rep.emulator && rep.emulator->max_runs_per_key > 1)) {
      code = exit_failure;
    }
    return code;
  });
}

} // namespace sail::app
