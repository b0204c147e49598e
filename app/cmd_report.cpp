// sail-tinker report JOURNAL: what a run cost, read from its journal.
#include <fstream>
#include <iostream>

#include "sail_tinker/app/cli.hpp"
#include "sail_tinker/app/commands.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/rollout/report.hpp"

namespace sail::app {

namespace {

constexpr const char* report_synopsis
  = "sail-tinker report JOURNAL [--prices FILE] [--format text|json] [--svg FILE]";

constexpr const char* report_description
  = "Reads a rollout journal (OUTPUT.journal) and prints, per step, version and\n"
    "window, the samples, the failures the journal knows of, the billed tokens by\n"
    "kind (input, cached, output, reasoning), the cost (with --prices or\n"
    "[pricing] file) and the latency percentiles p50/p90/p99 (sent to result in\n"
    "hand). A rollout journal is one step and one version (\"-\"); a trainer's\n"
    "durable run groups by its steps and version labels. The journal must not\n"
    "be in use by a running rollout.";

/// The command line of `sail-tinker report`.
command_spec report_command() {
  return {report_synopsis,
          report_description,
          {
            {"prices", "FILE", "prices file (USD per 1M tokens): adds the cost"},
            {"format", "F", "text (default) | json"},
            {"svg", "FILE", "also write an SVG chart of cost and latency per step to FILE"},
          },
          1, log_level::warn};
}

/// `sail-tinker report` with its arguments parsed.
int run_report(const parsed_args& args, app_config& cfg) {
  if (args.positionals.empty())
    return report_error(invalid_argument("journal", "JOURNAL is required"));
  auto format = args.get("format").value_or("text");
  if (format != "text" && format != "json")
    return report_error(invalid_argument("format", "--format: text or json"));
  std::unique_ptr<price_table> prices;
  std::string file = cfg.app.extras.prices_file;
  if (auto v = args.get("prices"))
    file = *v;
  if (!file.empty()) {
    auto table = price_table::load(file);
    if (!table)
      return report_error(table.error());
    prices = std::make_unique<price_table>(std::move(*table));
  }
  auto& path = args.positionals.front();
  {
    std::ifstream probe{path};
    if (!probe)
      return report_error(make_error(errc::io_error, "cannot read " + path, "journal"));
  }
  auto j = rollout::journal::open(path);
  if (!j)
    return report_error(j.error());
  if (!(*j)->run())
    return report_error(invalid_argument("journal", path + " holds no run"));
  auto rep = rollout::build_report(**j, prices.get());
  if (!rep)
    return report_error(rep.error());
  std::cout << (format == "json" ? rollout::render_json(*rep) : rollout::render_text(*rep))
            << std::flush;
  if (auto svg = args.get("svg")) {
    std::ofstream out{*svg, std::ios::binary | std::ios::trunc};
    out << rollout::render_svg(*rep);
    out.flush();
    if (!out)
      return report_error(make_error(errc::io_error, "cannot write " + *svg, "svg"));
  }
  return exit_ok;
}

} // namespace

int cmd_report(const std::vector<std::string>& raw) {
  return run_command<app_config>(raw, report_command(), run_report);
}

} // namespace sail::app
