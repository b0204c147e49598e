// sail_tinker._native.Budget: the spending cap of a SailTokenCompleter
// (rollout/pricing.hpp), used by the Python package around each call:
// reserve before the sample is sent, settle when its result (or error)
// arrives.
#include <cmath>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "delivery.hpp"
#include "sail_tinker/rollout/pricing.hpp"

namespace pyb = pybind11;

namespace sail::py {

namespace {

price_table prices_from(pyb::handle prices) {
  if (prices.is_none())
    return {};
  caf::expected<price_table> table{price_table{}};
  if (pyb::isinstance<pyb::str>(prices)) {
    table = price_table::load(prices.cast<std::string>());
  } else {
    // A mapping in the file's shape: serialized by Python's json module.
    auto text = pyb::module_::import("json").attr("dumps")(prices).cast<std::string>();
    table = price_table::parse(text);
  }
  if (!table)
    raise_error(table.error());
  return std::move(*table);
}

std::optional<sample_usage> usage_from(pyb::handle usage) {
  if (usage.is_none())
    return std::nullopt;
  sample_usage u;
  u.input_tokens = usage.attr("input_tokens").cast<int64_t>();
  u.cached_tokens = usage.attr("cached_tokens").cast<int64_t>();
  u.output_tokens = usage.attr("output_tokens").cast<int64_t>();
  u.reasoning_tokens = usage.attr("reasoning_tokens").cast<int64_t>();
  if (!u.valid())
    return std::nullopt;
  return u;
}

} // namespace

void bind_budget(pyb::module_& m) {
  pyb::class_<budget_hold>(m, "BudgetHold")
    .def_readonly("usd", &budget_hold::usd)
    .def_readonly("tokens", &budget_hold::tokens);

  pyb::class_<budget, std::shared_ptr<budget>>(m, "Budget")
    .def(pyb::init([](pyb::object prices, std::optional<double> usd,
                      std::optional<int64_t> tokens) {
           budget_limits limits;
           limits.usd = usd;
           limits.tokens = tokens;
           if (usd && (!std::isfinite(*usd) || *usd < 0))
             raise_error(invalid_argument("budget_usd", "budget_usd must be a number >= 0"));
           if (tokens && *tokens < 0)
             raise_error(invalid_argument("budget_tokens", "budget_tokens must be >= 0"));
           return std::make_shared<budget>(limits, prices_from(prices));
         }),
         pyb::arg("prices"), pyb::arg("usd"), pyb::arg("tokens"))
    .def(
      "check_priced",
      [](const budget& b, const std::string& model, const std::string& window) {
        if (auto err = b.check_priced(model, window))
          raise_error(err);
      },
      "Raises InvalidArgumentError when a USD cap cannot price (model, window).")
    .def(
      "reserve",
      [](budget& b, const std::string& model, const std::string& window, int64_t prompt,
         int64_t max_tokens) {
        auto hold = b.reserve(model, window, prompt, max_tokens);
        if (!hold)
          raise_error(hold.error());
        return *hold;
      },
      "Holds a sample's worst case; BudgetExceededError when it does not fit.")
    .def(
      "settle",
      [](budget& b, const budget_hold& hold, const std::string& model,
         const std::string& window, pyb::handle usage) {
        b.settle(hold, model, window, usage_from(usage));
      },
      "Replaces a hold by the sample's billed usage (None: the worst case stays spent).")
    .def(
      "release", [](budget& b, const budget_hold& hold) { b.release(hold); },
      "Gives a hold back: the sample was never sent.")
    .def(
      "cost",
      [](const budget& b, const std::string& model, const std::string& window,
         pyb::handle usage) -> std::optional<double> {
        auto u = usage_from(usage);
        auto* p = b.prices().find(model, window);
        if (!u || p == nullptr)
          return std::nullopt;
        return cost_usd(*p, *u);
      },
      "USD of a sample's usage at (model, window)'s price; None when unknown.")
    .def_property_readonly("spent_usd", &budget::spent_usd)
    .def_property_readonly("spent_tokens", &budget::spent_tokens)
    .def_property_readonly("reserved_usd", &budget::reserved_usd)
    .def_property_readonly("reserved_tokens", &budget::reserved_tokens)
    .def_property_readonly("exhausted", &budget::exhausted)
    .def_property_readonly("limit_usd", [](const budget& b) { return b.limits().usd; })
    .def_property_readonly("limit_tokens", [](const budget& b) { return b.limits().tokens; });
}

} // namespace sail::py
