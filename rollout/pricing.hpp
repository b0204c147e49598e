// Prices and spending caps. Sail bills every sample per token at prices per
// (model, completion window): input, cached input (part of input, cheaper)
// and output, in USD per 1M tokens, published on its /pricing page
// (https://docs.sailresearch.com/pricing). They change, so none is built in:
// they come from a file the user controls (examples/prices-2026-09.json):
//
//   {"prices": [{"model": "zai-org/GLM-5.3", "window": "flex",
//                "input": 0.40, "cached_input": 0.08, "output": 1.80}]}
//
// Other top-level members (source, date, note) are ignored. A price may be
// null or left out where none is published: a sample needing it has no cost
// (unknown, like its usage), and a USD cap refuses the pair.
//
// cost = (input - cached) x input + cached x cached_input + output x output.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "sail_tinker/messages/types.hpp"

namespace sail {

/// USD per 1M tokens of one (model, window); nullopt: not published.
struct token_price {
  std::string model;
  std::string window;
  std::optional<double> input;
  std::optional<double> cached_input;
  std::optional<double> output;

  /// All three prices known.
  bool complete() const noexcept {
    return input && cached_input && output;
  }

  friend bool operator==(const token_price&, const token_price&) = default;
};

class price_table {
public:
  /// Parses the prices file text. invalid_argument (field `prices` or
  /// `prices[i].<member>`) for bad JSON, a missing `prices` array, an entry
  /// without model or window, a price that is not a finite number >= 0, an
  /// unknown member in an entry, or a (model, window) listed twice.
  static caf::expected<price_table> parse(std::string_view text);

  /// Reads and parses the file at `path` (io_error when it cannot be read).
  static caf::expected<price_table> load(const std::string& path);

  /// The price of (model, window), if listed.
  const token_price* find(std::string_view model, std::string_view window) const;

  const std::vector<token_price>& entries() const noexcept {
    return entries_;
  }

  bool empty() const noexcept {
    return entries_.empty();
  }

private:
  std::vector<token_price> entries_;
};

/// USD a sample with `usage` costs at `price`; nullopt when a price it needs
/// is not published (a kind of token the sample has none of needs none).
std::optional<double> cost_usd(const token_price& price, const sample_usage& usage);

/// The most a sample can cost: every prompt token at the input price (no
/// cache discount) and `max_tokens` output tokens; nullopt unless the input
/// and output prices are known.
std::optional<double> worst_case_usd(const token_price& price, int64_t prompt_tokens,
                                     int64_t max_tokens);

// -- budget -------------------------------------------------------------------------

/// Spending caps (either or both).
struct budget_limits {
  /// USD, as priced by the price table.
  std::optional<double> usd;
  /// Input + output tokens, as Sail reports them.
  std::optional<int64_t> tokens;

  bool any() const noexcept {
    return usd.has_value() || tokens.has_value();
  }
};

/// What one admitted sample holds of the budget until its usage is known.
struct budget_hold {
  double usd = 0;
  int64_t tokens = 0;
};

/// The spending cap of a run or a completer: what the server bills never
/// exceeds it. Before a create, the sample's worst case is reserved (prompt
/// + max tokens at the window's price, no cache discount); when its usage
/// arrives the reservation becomes the billed amount. A sample whose usage
/// stays unknown (failed, malformed usage) keeps its worst case as spent: the
/// cap holds whatever the server billed. Thread-safe.
class budget {
public:
  budget(budget_limits limits, price_table prices);

  /// invalid_argument naming the pair when a USD cap is set and (model,
  /// window) has no complete price (nothing may be sent for it).
  caf::error check_priced(std::string_view model, std::string_view window) const;

  /// Reserves the worst case of a sample. budget_exceeded (nothing held)
  /// when it does not fit (and from then on: `exhausted()`);
  /// invalid_argument when it cannot be priced. `force`: held even beyond
  /// the cap (a sample the server already accepted in an earlier run: it is
  /// billed whether or not it is polled).
  caf::expected<budget_hold> reserve(std::string_view model, std::string_view window,
                                     int64_t prompt_tokens, int64_t max_tokens,
                                     bool force = false);

  /// Replaces `hold` by what the sample was billed (`usage`; nullopt: the
  /// worst case stays spent).
  void settle(const budget_hold& hold, std::string_view model, std::string_view window,
              const std::optional<sample_usage>& usage);

  /// Gives `hold` back: the sample was never sent (refused locally).
  void release(const budget_hold& hold);

  /// Counts a sample billed in an earlier run (its usage from the journal)
  /// as spent; unknown usage counts its worst case when given.
  void add_spent(std::string_view model, std::string_view window,
                 const std::optional<sample_usage>& usage,
                 const std::optional<budget_hold>& worst = std::nullopt);

  /// A reservation was refused: no sample is admitted any more.
  bool exhausted() const;

  double spent_usd() const;
  int64_t spent_tokens() const;
  /// Held for samples in flight.
  double reserved_usd() const;
  int64_t reserved_tokens() const;

  const budget_limits& limits() const noexcept {
    return limits_;
  }

  const price_table& prices() const noexcept {
    return prices_;
  }

  /// "$X of $Y" and/or "N of M tokens": what was spent of the caps.
  std::string describe_spent() const;

private:
  std::string describe_locked() const;

  double usd_of(std::string_view model, std::string_view window,
                const sample_usage& usage) const;

  budget_limits limits_;
  price_table prices_;
  mutable std::mutex mtx_;
  double spent_usd_ = 0;
  int64_t spent_tokens_ = 0;
  double held_usd_ = 0;
  int64_t held_tokens_ = 0;
  bool exhausted_ = false;
};

/// "$1.234567" with up to six decimals, trailing zeros dropped ("$0.5").
std::string format_usd(double usd);

// -- totals of a run ------------------------------------------------------------------

/// Usage and cost of the samples of one (model, window).
struct priced_totals {
  usage_totals usage;
  /// USD of the samples whose usage and price are known.
  double cost_usd = 0;
  /// Samples with known usage but no (complete) price: not in cost_usd.
  uint64_t unpriced = 0;
};

/// What a run's samples were billed, per (model, window) and in total, as
/// the summary and the report show it. Not thread-safe.
class usage_ledger {
public:
  /// `prices` may be null (no costs); it must outlive the ledger.
  explicit usage_ledger(const price_table* prices = nullptr) : prices_(prices) {
  }

  /// Counts one sample; returns its cost (nullopt: usage or price unknown).
  std::optional<double> add(const std::string& model, const std::string& window,
                            const std::optional<sample_usage>& usage);

  /// The cost of a sample without counting it.
  std::optional<double> cost_of(const std::string& model, const std::string& window,
                                const std::optional<sample_usage>& usage) const;

  const std::vector<priced_totals>& entries() const noexcept {
    return entries_;
  }

  /// Every (model, window) added up (model and window empty).
  priced_totals total() const;

  bool priced() const noexcept {
    return prices_ != nullptr;
  }

  /// Summary rows: "usage" (samples known/unknown, tokens by kind) and, with
  /// prices, "cost" (USD, and how many samples it leaves out).
  std::vector<std::pair<std::string, std::string>> rows() const;

private:
  const price_table* prices_;
  std::vector<priced_totals> entries_;
};

} // namespace sail
