// Prices and the spending cap of `sail-tinker rollout` (both modes):
// --prices FILE (or [pricing] file), --budget-usd X, --budget-tokens N; the
// run's usage and cost totals for the summary; exit 3 when the cap stops it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "sail_tinker/app/cli.hpp"
#include "sail_tinker/rollout/pricing.hpp"

namespace sail::app {

/// The run stopped at its spending cap (flushed; run again with a larger cap
/// to continue).
inline constexpr int exit_budget = 3;

/// --prices, --budget-usd, --budget-tokens.
std::vector<flag_spec> rollout_spend_flags();

/// What a rollout knows about spending. Prices may be absent (no costs); the
/// cap may be absent (nothing refused).
struct rollout_spend {
  std::unique_ptr<price_table> prices;
  std::unique_ptr<budget> cap;
  usage_ledger ledger;

  /// Usage, cost and (with a cap) budget rows for the summary.
  std::vector<std::pair<std::string, std::string>> rows() const;

  /// "budget reached: spent $X of $Y (N samples done, M left); run again with
  /// a larger cap to continue".
  std::string budget_message(uint64_t done, uint64_t left) const;
};

/// Reads the flags and the [pricing] file (the flag wins). invalid_argument
/// (exit 2, nothing sent) for a bad file or cap, or a USD cap whose model
/// and window (`ccfg`) have no complete price, naming the pair.
caf::expected<std::unique_ptr<rollout_spend>>
make_rollout_spend(const parsed_args& args, const app_options& config,
                   const completer_config& ccfg);

} // namespace sail::app
