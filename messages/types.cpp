#include "sail_tinker/messages/types.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <type_traits>

namespace sail {

stop_condition stop_condition::tokens(std::vector<int64_t> ids) {
  stop_condition result;
  result.token_ids = std::move(ids);
  return result;
}

stop_condition stop_condition::text(std::string s) {
  stop_condition result;
  result.strings.push_back(std::move(s));
  result.bare_string = true;
  return result;
}

stop_condition stop_condition::texts(std::vector<std::string> xs) {
  stop_condition result;
  result.strings = std::move(xs);
  return result;
}

signed_url with_refresh_schedule(signed_url url, caf::timespan margin,
                                 caf::timestamp now) {
  auto life = url.expires - now;
  auto m = std::max(caf::timespan{0},
                    std::min(margin, std::chrono::duration_cast<caf::timespan>(life / 4)));
  url.refresh_at = url.expires - 2 * m;
  url.use_until = url.expires - m;
  return url;
}

usage_totals& usage_entry(std::vector<usage_totals>& xs, const std::string& model,
                          const std::string& window) {
  auto less = [](const usage_totals& x, const std::pair<const std::string&, const std::string&>& k) {
    return std::tie(x.model, x.window) < std::tie(k.first, k.second);
  };
  std::pair<const std::string&, const std::string&> key{model, window};
  auto i = std::lower_bound(xs.begin(), xs.end(), key, less);
  if (i != xs.end() && i->model == model && i->window == window)
    return *i;
  usage_totals fresh;
  fresh.model = model;
  fresh.window = window;
  return *xs.insert(i, std::move(fresh));
}

caf::expected<std::vector<double>> tokens_with_logprobs::logprobs() const {
  if (!maybe_logprobs)
    return invalid_argument("maybe_logprobs",
                            "logprobs are not available for this sample");
  return *maybe_logprobs;
}

// -- statistics ------------------------------------------------------------------

void histogram::observe(std::span<const double> bounds, double value) {
  if (counts.size() != bounds.size() + 1)
    counts.resize(bounds.size() + 1, 0);
  auto i = std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin();
  ++counts[static_cast<size_t>(i)];
  sum += value;
}

uint64_t histogram::count() const noexcept {
  uint64_t n = 0;
  for (auto c : counts)
    n += c;
  return n;
}

std::vector<std::string> errc_kinds() {
  std::vector<std::string> xs;
  for (uint8_t c = 1; c <= errc_count; ++c)
    xs.emplace_back(to_string(static_cast<errc>(c)));
  return xs;
}

namespace {

/// Adds one field of x to the same field of sum, as its kind says.
struct field_merger {
  void operator()(const stat_info& info, uint64_t& sum, uint64_t x) const {
    (void) info;
    sum += x;
  }

  void operator()(const stat_info& info, int64_t& sum, int64_t x) const {
    if (info.kind != stat_kind::soonest)
      sum += x;
    else if (x > 0 && (sum == 0 || x < sum))
      sum = x;
  }

  void operator()(const stat_info& info, std::string& sum, const std::string& x) const {
    if (info.kind != stat_kind::state)
      return; // a label: equal in both
    // The worst state wins (the one latest in `known`; an unknown one ranks first).
    auto rank = [&](const std::string& v) {
      auto i = std::find(info.known.begin(), info.known.end(), v);
      return i == info.known.end() ? 0 : i - info.known.begin();
    };
    if (rank(x) > rank(sum))
      sum = x;
  }

  void operator()(const stat_info&, std::map<std::string, uint64_t>& sum,
                  const std::map<std::string, uint64_t>& x) const {
    for (auto& [k, v] : x)
      sum[k] += v;
  }

  void operator()(const stat_info&, histogram& sum, const histogram& x) const {
    merge_into(sum, x);
  }

  void operator()(const stat_info&, std::vector<usage_totals>& sum,
                  const std::vector<usage_totals>& x) const {
    for (auto& u : x)
      merge_into(usage_entry(sum, u.model, u.window), u);
  }

  template <described_stats T>
  void operator()(const stat_info&, T& sum, const T& x) const {
    merge_into(sum, x);
  }
};

/// invalid_argument unless every histogram of x has at most its buckets and
/// a finite, non-negative sum (a peer's NaN would reach /metrics).
template <class T>
caf::error check_histograms(const T& x) {
  caf::error err;
  for_each_stat(x, [&](const stat_info& info, const auto& v) {
    if constexpr (std::is_same_v<std::decay_t<decltype(v)>, histogram>)
      if (v.counts.size() > info.bounds.size() + 1 || !std::isfinite(v.sum) || v.sum < 0)
        err = caf::make_error(caf::sec::invalid_argument);
  });
  return err;
}

} // namespace

void merge_into(histogram& sum, const histogram& x) {
  if (sum.counts.size() < x.counts.size())
    sum.counts.resize(x.counts.size(), 0);
  for (size_t i = 0; i < x.counts.size(); ++i)
    sum.counts[i] += x.counts[i];
  sum.sum += x.sum;
}

void merge_into(retry_guard_stats& sum, const retry_guard_stats& x) {
  for_each_stat(sum, x, field_merger{});
}

void merge_into(usage_totals& sum, const usage_totals& x) {
  for_each_stat(sum, x, field_merger{});
}

void merge_into(pool_stats& sum, const pool_stats& x) {
  for_each_stat(sum, x, field_merger{});
}

void merge_into(completer_stats& sum, const completer_stats& x) {
  for_each_stat(sum, x, field_merger{});
}

caf::error check_stats(const pool_stats& x) {
  return check_histograms(x);
}

caf::error check_stats(const completer_stats& x) {
  for (size_t i = 1; i < x.usage.size(); ++i)
    if (!(std::tie(x.usage[i - 1].model, x.usage[i - 1].window)
          < std::tie(x.usage[i].model, x.usage[i].window)))
      return caf::make_error(caf::sec::invalid_argument);
  return check_stats(x.pool);
}

} // namespace sail
