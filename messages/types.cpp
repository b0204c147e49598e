#include "sail_tinker/messages/types.hpp"

#include <algorithm>
#include <tuple>

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

void merge_into(completer_stats& sum, const completer_stats& x) {
  sum.in_flight += x.in_flight;
  sum.completed += x.completed;
  sum.polls += x.polls;
  for (auto& [k, v] : x.failed_by_kind)
    sum.failed_by_kind[k] += v;
  for (auto& [k, v] : x.retries_by_cause)
    sum.retries_by_cause[k] += v;
  for (auto& [k, v] : x.webhooks)
    sum.webhooks[k] += v;
  auto add = [](std::vector<uint64_t>& into, const std::vector<uint64_t>& from) {
    if (into.size() < from.size())
      into.resize(from.size(), 0);
    for (size_t i = 0; i < from.size(); ++i)
      into[i] += from[i];
  };
  add(sum.polls_per_sample, x.polls_per_sample);
  add(sum.notice_delay, x.notice_delay);
  sum.notice_delay_sum_ms += x.notice_delay_sum_ms;
  merge_into(sum.guard, x.guard);
  for (auto& u : x.usage) {
    auto& into = usage_entry(sum.usage, u.model, u.window);
    into.samples += u.samples;
    into.unknown += u.unknown;
    into.input_tokens += u.input_tokens;
    into.cached_tokens += u.cached_tokens;
    into.output_tokens += u.output_tokens;
    into.reasoning_tokens += u.reasoning_tokens;
  }
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

void merge_into(retry_guard_stats& sum, const retry_guard_stats& x) {
  auto rank = [](const std::string& state) {
    return state == "open" ? 2 : state == "half_open" ? 1 : 0;
  };
  if (rank(x.breaker) > rank(sum.breaker))
    sum.breaker = x.breaker;
  if (x.next_probe_ms > 0 && (sum.next_probe_ms == 0 || x.next_probe_ms < sum.next_probe_ms))
    sum.next_probe_ms = x.next_probe_ms;
  sum.breaker_opened += x.breaker_opened;
  sum.probes += x.probes;
  sum.held += x.held;
  sum.rejected += x.rejected;
  sum.budget_requests += x.budget_requests;
  sum.budget_retries += x.budget_retries;
  sum.budget_allowed += x.budget_allowed;
  sum.budget_denied += x.budget_denied;
}

caf::expected<std::vector<double>> tokens_with_logprobs::logprobs() const {
  if (!maybe_logprobs)
    return invalid_argument("maybe_logprobs",
                            "logprobs are not available for this sample");
  return *maybe_logprobs;
}

} // namespace sail
