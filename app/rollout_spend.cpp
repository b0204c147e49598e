#include "sail_tinker/app/rollout_spend.hpp"

#include <cmath>
#include <cstdlib>

#include "sail_tinker/messages/error.hpp"

namespace sail::app {

std::vector<flag_spec> rollout_spend_flags() {
  return {
    {"prices", "FILE", "prices file ({\"prices\":[{model, window, input, cached_input, "
                       "output}]}, USD per 1M tokens; example examples/prices-2026-09.json): "
                       "costs in the output and summary"},
    {"budget-usd", "X", "spending cap in USD (needs --prices for the model and window): "
                        "nothing is created beyond it; exit 3"},
    {"budget-tokens", "N", "spending cap in input + output tokens as Sail reports them; "
                           "exit 3"},
  };
}

std::vector<std::pair<std::string, std::string>> rollout_spend::rows() const {
  auto out = ledger.rows();
  if (cap)
    out.emplace_back("budget", "spent " + cap->describe_spent()
                                 + (cap->exhausted() ? " (reached)" : ""));
  return out;
}

std::string rollout_spend::budget_message(uint64_t done, uint64_t left) const {
  return "budget reached: spent " + (cap ? cap->describe_spent() : std::string{"?"}) + " ("
         + std::to_string(done) + " samples done, " + std::to_string(left)
         + " left); run again with a larger cap to continue";
}

caf::expected<std::unique_ptr<rollout_spend>>
make_rollout_spend(const parsed_args& args, const app_options& config,
                   const completer_config& ccfg) {
  auto result = std::make_unique<rollout_spend>();
  std::string file = config.extras.prices_file;
  if (auto v = args.get("prices"))
    file = *v;
  if (!file.empty()) {
    auto table = price_table::load(file);
    if (!table) {
      // A prices file that cannot be read is a usage error: nothing is sent.
      auto* info = info_of(table.error());
      return invalid_argument("prices", info != nullptr ? info->message : "bad prices file");
    }
    result->prices = std::make_unique<price_table>(std::move(*table));
  }
  budget_limits limits;
  if (auto v = args.get("budget-usd")) {
    char* end = nullptr;
    auto x = std::strtod(v->c_str(), &end);
    if (v->empty() || end != v->c_str() + v->size() || !std::isfinite(x) || x < 0)
      return invalid_argument("budget-usd", "--budget-usd must be a number >= 0 (USD)");
    limits.usd = x;
  }
  if (auto v = args.get("budget-tokens")) {
    auto n = parse_int("budget-tokens", *v, 0, INT64_MAX / 4);
    if (!n)
      return n.error();
    limits.tokens = *n;
  }
  result->ledger = usage_ledger{result->prices.get()};
  if (limits.any()) {
    result->cap = std::make_unique<budget>(limits, result->prices ? *result->prices
                                                                  : price_table{});
    if (auto err = result->cap->check_priced(ccfg.model, ccfg.completion_window)) {
      auto* info = info_of(err);
      return invalid_argument("budget-usd", (info != nullptr ? info->message : "no price")
                                              + (result->prices ? "" : "; give --prices FILE"));
    }
  }
  return result;
}

} // namespace sail::app
