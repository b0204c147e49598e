#include "sail_tinker/rollout/pricing.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <boost/json.hpp>

#include "sail_tinker/messages/error.hpp"

namespace sail {

namespace json = boost::json;

namespace {

std::string entry_field(size_t i, std::string_view member) {
  return "prices[" + std::to_string(i) + "]." + std::string{member};
}

caf::expected<std::optional<double>> read_price(const json::object& obj, size_t i,
                                                std::string_view member) {
  auto* x = obj.if_contains(member);
  if (x == nullptr || x->is_null())
    return std::optional<double>{};
  double value = 0;
  if (auto* d = x->if_double())
    value = *d;
  else if (auto* n = x->if_int64())
    value = static_cast<double>(*n);
  else if (auto* u = x->if_uint64())
    value = static_cast<double>(*u);
  else
    return invalid_argument(entry_field(i, member),
                            entry_field(i, member) + " must be a number (USD per 1M tokens)");
  if (!std::isfinite(value) || value < 0)
    return invalid_argument(entry_field(i, member),
                            entry_field(i, member) + " must be a finite number >= 0");
  return std::optional<double>{value};
}

caf::expected<std::string> read_name(const json::object& obj, size_t i,
                                     std::string_view member) {
  auto* x = obj.if_contains(member);
  if (x == nullptr || !x->is_string() || x->get_string().empty())
    return invalid_argument(entry_field(i, member),
                            entry_field(i, member) + " must be a non-empty string");
  return std::string{x->get_string()};
}

} // namespace

caf::expected<price_table> price_table::parse(std::string_view text) {
  json::error_code ec;
  auto doc = json::parse(text, ec);
  if (ec)
    return invalid_argument("prices", "the prices file is not valid JSON: " + ec.message());
  auto* root = doc.if_object();
  auto* xs = root != nullptr ? root->if_contains("prices") : nullptr;
  if (xs == nullptr || !xs->is_array())
    return invalid_argument("prices",
                            "the prices file must be a JSON object with a \"prices\" array");
  price_table result;
  size_t i = 0;
  for (auto& x : xs->get_array()) {
    auto* obj = x.if_object();
    if (obj == nullptr)
      return invalid_argument(entry_field(i, ""), "prices[" + std::to_string(i)
                                                    + "] must be an object");
    for (auto& kv : *obj) {
      static constexpr std::string_view known[]
        = {"model", "window", "input", "cached_input", "output", "note"};
      if (std::find(std::begin(known), std::end(known), std::string_view{kv.key()})
          == std::end(known))
        return invalid_argument(entry_field(i, kv.key()),
                                "unknown member " + entry_field(i, kv.key())
                                  + " (model, window, input, cached_input, output, note)");
    }
    token_price p;
    auto model = read_name(*obj, i, "model");
    if (!model)
      return model.error();
    auto window = read_name(*obj, i, "window");
    if (!window)
      return window.error();
    p.model = std::move(*model);
    p.window = std::move(*window);
    auto input = read_price(*obj, i, "input");
    if (!input)
      return input.error();
    auto cached = read_price(*obj, i, "cached_input");
    if (!cached)
      return cached.error();
    auto output = read_price(*obj, i, "output");
    if (!output)
      return output.error();
    p.input = *input;
    p.cached_input = *cached;
    p.output = *output;
    if (result.find(p.model, p.window) != nullptr)
      return invalid_argument(entry_field(i, "window"),
                              "(" + p.model + ", " + p.window + ") is priced twice");
    result.entries_.push_back(std::move(p));
    ++i;
  }
  return result;
}

caf::expected<price_table> price_table::load(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return make_error(errc::io_error, "cannot read the prices file " + path, "prices");
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad())
    return make_error(errc::io_error, "cannot read the prices file " + path, "prices");
  auto result = parse(buf.str());
  if (!result) {
    auto* info = info_of(result.error());
    return invalid_argument(info != nullptr ? info->field : "prices",
                            path + ": " + (info != nullptr ? info->message : "invalid"));
  }
  return result;
}

const token_price* price_table::find(std::string_view model, std::string_view window) const {
  for (auto& p : entries_)
    if (p.model == model && p.window == window)
      return &p;
  return nullptr;
}

std::optional<double> cost_usd(const token_price& price, const sample_usage& usage) {
  double usd = 0;
  auto add = [&usd](int64_t tokens, const std::optional<double>& per_million) {
    if (tokens == 0)
      return true;
    if (!per_million)
      return false;
    usd += static_cast<double>(tokens) * *per_million / 1e6;
    return true;
  };
  if (!add(usage.input_tokens - usage.cached_tokens, price.input)
      || !add(usage.cached_tokens, price.cached_input)
      || !add(usage.output_tokens, price.output))
    return std::nullopt;
  return usd;
}

std::optional<double> worst_case_usd(const token_price& price, int64_t prompt_tokens,
                                     int64_t max_tokens) {
  if (!price.input || !price.output)
    return std::nullopt;
  return (static_cast<double>(prompt_tokens) * *price.input
          + static_cast<double>(max_tokens) * *price.output)
         / 1e6;
}

// -- budget -------------------------------------------------------------------------

budget::budget(budget_limits limits, price_table prices)
  : limits_(limits), prices_(std::move(prices)) {
  // nop
}

caf::error budget::check_priced(std::string_view model, std::string_view window) const {
  if (!limits_.usd)
    return caf::none;
  auto* p = prices_.find(model, window);
  if (p == nullptr)
    return invalid_argument("prices", "no price for model " + std::string{model}
                                        + ", window " + std::string{window}
                                        + " (a USD budget needs one)");
  if (!p->complete())
    return invalid_argument("prices", "the price of model " + std::string{model}
                                        + ", window " + std::string{window}
                                        + " is incomplete (a USD budget needs input, "
                                          "cached_input and output)");
  return caf::none;
}

caf::expected<budget_hold> budget::reserve(std::string_view model, std::string_view window,
                                           int64_t prompt_tokens, int64_t max_tokens,
                                           bool force) {
  budget_hold hold;
  hold.tokens = prompt_tokens + max_tokens;
  if (limits_.usd) {
    if (auto err = check_priced(model, window))
      return err;
    hold.usd = *worst_case_usd(*prices_.find(model, window), prompt_tokens, max_tokens);
  }
  std::lock_guard<std::mutex> guard{mtx_};
  bool fits = !exhausted_;
  if (fits && limits_.usd)
    fits = spent_usd_ + held_usd_ + hold.usd <= *limits_.usd * (1 + 1e-12);
  if (fits && limits_.tokens)
    fits = spent_tokens_ + held_tokens_ + hold.tokens <= *limits_.tokens;
  if (!fits && !force) {
    exhausted_ = true;
    return make_error(errc::budget_exceeded, "budget reached: spent " + describe_locked());
  }
  held_usd_ += hold.usd;
  held_tokens_ += hold.tokens;
  return hold;
}

double budget::usd_of(std::string_view model, std::string_view window,
                      const sample_usage& usage) const {
  auto* p = prices_.find(model, window);
  if (p == nullptr)
    return 0;
  return cost_usd(*p, usage).value_or(0);
}

void budget::settle(const budget_hold& hold, std::string_view model, std::string_view window,
                    const std::optional<sample_usage>& usage) {
  double usd = hold.usd;
  int64_t tokens = hold.tokens;
  if (usage) {
    usd = limits_.usd ? usd_of(model, window, *usage) : 0;
    tokens = usage->input_tokens + usage->output_tokens;
  }
  std::lock_guard<std::mutex> guard{mtx_};
  held_usd_ = std::max(0.0, held_usd_ - hold.usd);
  held_tokens_ = std::max<int64_t>(0, held_tokens_ - hold.tokens);
  spent_usd_ += usd;
  spent_tokens_ += tokens;
}

void budget::release(const budget_hold& hold) {
  std::lock_guard<std::mutex> guard{mtx_};
  held_usd_ = std::max(0.0, held_usd_ - hold.usd);
  held_tokens_ = std::max<int64_t>(0, held_tokens_ - hold.tokens);
}

void budget::add_spent(std::string_view model, std::string_view window,
                       const std::optional<sample_usage>& usage,
                       const std::optional<budget_hold>& worst) {
  double usd = 0;
  int64_t tokens = 0;
  if (usage) {
    usd = limits_.usd ? usd_of(model, window, *usage) : 0;
    tokens = usage->input_tokens + usage->output_tokens;
  } else if (worst) {
    usd = worst->usd;
    tokens = worst->tokens;
  }
  std::lock_guard<std::mutex> guard{mtx_};
  spent_usd_ += usd;
  spent_tokens_ += tokens;
}

bool budget::exhausted() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return exhausted_;
}

double budget::spent_usd() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return spent_usd_;
}

int64_t budget::spent_tokens() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return spent_tokens_;
}

double budget::reserved_usd() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return held_usd_;
}

int64_t budget::reserved_tokens() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return held_tokens_;
}

std::string budget::describe_spent() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return describe_locked();
}

std::string budget::describe_locked() const {
  std::string out;
  if (limits_.usd)
    out = format_usd(spent_usd_) + " of " + format_usd(*limits_.usd);
  if (limits_.tokens) {
    if (!out.empty())
      out += ", ";
    out += std::to_string(spent_tokens_) + " of " + std::to_string(*limits_.tokens) + " tokens";
  }
  return out;
}

std::optional<double> usage_ledger::cost_of(const std::string& model,
                                            const std::string& window,
                                            const std::optional<sample_usage>& usage) const {
  if (prices_ == nullptr || !usage)
    return std::nullopt;
  auto* p = prices_->find(model, window);
  if (p == nullptr)
    return std::nullopt;
  return cost_usd(*p, *usage);
}

std::optional<double> usage_ledger::add(const std::string& model, const std::string& window,
                                        const std::optional<sample_usage>& usage) {
  auto i = std::find_if(entries_.begin(), entries_.end(), [&](const priced_totals& x) {
    return x.usage.model == model && x.usage.window == window;
  });
  if (i == entries_.end()) {
    priced_totals fresh;
    fresh.usage.model = model;
    fresh.usage.window = window;
    entries_.push_back(std::move(fresh));
    i = entries_.end() - 1;
  }
  i->usage.add(usage);
  auto cost = cost_of(model, window, usage);
  if (cost)
    i->cost_usd += *cost;
  else if (usage)
    ++i->unpriced;
  return cost;
}

priced_totals usage_ledger::total() const {
  priced_totals sum;
  for (auto& x : entries_) {
    merge_into(sum.usage, x.usage);  // labels (model, window) stay empty
    sum.cost_usd += x.cost_usd;
    sum.unpriced += x.unpriced;
  }
  return sum;
}

std::vector<std::pair<std::string, std::string>> usage_ledger::rows() const {
  std::vector<std::pair<std::string, std::string>> out;
  auto t = total();
  auto& u = t.usage;
  std::string usage = std::to_string(u.input_tokens) + " input (" + std::to_string(u.cached_tokens)
                      + " cached), " + std::to_string(u.output_tokens) + " output ("
                      + std::to_string(u.reasoning_tokens) + " reasoning) tokens";
  if (u.unknown > 0)
    usage += "; usage unknown for " + std::to_string(u.unknown) + " sample(s)";
  out.emplace_back("usage", std::move(usage));
  if (prices_ != nullptr) {
    std::string cost = format_usd(t.cost_usd);
    if (t.unpriced > 0 || u.unknown > 0)
      cost += " (without " + std::to_string(t.unpriced + u.unknown)
              + " sample(s) of unknown usage or price)";
    out.emplace_back("cost", std::move(cost));
  }
  return out;
}

std::string format_usd(double usd) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6f", usd);
  std::string s = buf;
  while (s.size() > 1 && s.back() == '0')
    s.pop_back();
  if (!s.empty() && s.back() == '.')
    s += '0';
  return "$" + s;
}

} // namespace sail
