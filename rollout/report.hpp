// What a journal says a run cost: per step, version and window, the samples,
// failures, billed tokens by kind, cost (with prices) and latency percentiles
// (`sail-tinker report JOURNAL`). A rollout journal is one step and one
// version ("-"); a trainer's durable run (rollout/durable_run.hpp) records
// the step (its prompt id) and the adapter version label per sample, and the
// model and window in each call's settings.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "sail_tinker/rollout/journal.hpp"
#include "sail_tinker/rollout/pricing.hpp"

namespace sail::rollout {

struct report_row {
  std::string step = "-";
  std::string version = "-";
  std::string model;
  std::string window;
  /// Completed samples, and failures the journal knows of.
  uint64_t samples = 0;
  uint64_t failures = 0;
  /// Billed tokens (usage_totals::unknown: samples without a usage).
  usage_totals tokens;
  /// USD with prices (of the samples whose usage and price are known).
  std::optional<double> cost_usd;
  uint64_t unpriced = 0;
  /// Sent to result in hand, milliseconds; nullopt when none was recorded.
  std::optional<double> latency_p50_ms;
  std::optional<double> latency_p90_ms;
  std::optional<double> latency_p99_ms;
};

struct run_report {
  std::string run_id;
  std::vector<report_row> rows;
};

/// Reads every completed sample of `j`; `prices` may be null.
caf::expected<run_report> build_report(journal& j, const price_table* prices);

/// A table, one line per row plus a total.
std::string render_text(const run_report& r);

/// {"run_id":..., "rows":[{"step","version","model","window","samples",
/// "failures","usage_unknown","input_tokens","cached_tokens","output_tokens",
/// "reasoning_tokens","cost_usd" (null without prices),"latency_ms":{"p50",
/// "p90","p99"} (null when not recorded)}]}
std::string render_json(const run_report& r);

/// An SVG chart: cost (bars) and latency p50/p90/p99 (lines) per step.
std::string render_svg(const run_report& r);

} // namespace sail::rollout
