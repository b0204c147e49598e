#include "sail_tinker/app/emulator_flags.hpp"

#include "sail_tinker/messages/error.hpp"

namespace sail::app {

std::vector<flag_spec> emulator_fault_latency_flags(const std::string& p) {
  return {
    {p + "fault", "KIND=P",
     "inject fault KIND with probability P in [0,1]; KIND: status_429, status_529, "
     "status_500, status_502, status_503, status_504, connection_reset, truncated_body, "
     "malformed_json, missing_token_ids, logprob_mismatch, slow_response",
     true},
    {p + "fault-seed", "N", "seed of the fault draws (0: derived from the model seed)"},
    {p + "fault-routes", "LIST", "routes faults apply to: comma list of create, poll, tinker (default all)"},
    {p + "after-accept-fraction", "F", "share of 5xx/reset faults injected after acceptance (default 0.5)"},
    {p + "retry-after", "SECONDS", "Retry-After sent with 429/529 (default 1)"},
    {p + "slow-delay-ms", "MS", "delay of slow_response (default 500)"},
    {p + "latency-queued-ms", "MS", "time a response stays queued, every window (default 0)"},
    {p + "latency-per-token-us", "US", "generation time per output token, every window (default 0)"},
  };
}

namespace {

caf::expected<int64_t> int_flag(const parsed_args& args, const std::string& name,
                                int64_t min, int64_t max, int64_t fallback) {
  if (auto v = args.get(name))
    return parse_int(name, *v, min, max);
  return fallback;
}

std::optional<emulator::fault_kind> fault_by_name(std::string_view name) {
  for (size_t i = 0; i < emulator::fault_kind_count; ++i) {
    auto k = static_cast<emulator::fault_kind>(i);
    if (name == emulator::to_string(k))
      return k;
  }
  return std::nullopt;
}

} // namespace

caf::error apply_emulator_flags(const parsed_args& args, const std::string& p,
                                emulator::options& opts) {
  auto& f = opts.faults;
  for (auto& spec : args.all(p + "fault")) {
    auto eq = spec.find('=');
    if (eq == std::string::npos)
      return invalid_argument(p + "fault", "--" + p + "fault: expected KIND=P, got \"" + spec + "\"");
    auto kind = fault_by_name(spec.substr(0, eq));
    if (!kind)
      return invalid_argument(p + "fault", "--" + p + "fault: unknown fault kind \""
                                             + spec.substr(0, eq) + "\"");
    auto prob = parse_double(p + "fault", spec.substr(eq + 1));
    if (!prob)
      return std::move(prob.error());
    if (*prob < 0.0 || *prob > 1.0)
      return invalid_argument(p + "fault", "--" + p + "fault: probability must be within [0, 1]");
    f.set(*kind, *prob);
  }
  auto seed = int_flag(args, p + "fault-seed", 0, INT64_MAX, 0);
  if (!seed)
    return std::move(seed.error());
  f.seed = static_cast<uint64_t>(*seed);
  if (auto v = args.get(p + "fault-routes")) {
    uint8_t mask = 0;
    size_t pos = 0;
    while (pos <= v->size()) {
      auto comma = v->find(',', pos);
      auto part = v->substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      if (part == "create")
        mask |= emulator::route_create;
      else if (part == "poll")
        mask |= emulator::route_poll;
      else if (part == "tinker")
        mask |= emulator::route_tinker;
      else if (part == "all")
        mask |= emulator::route_all;
      else
        return invalid_argument(p + "fault-routes", "--" + p + "fault-routes: unknown route \""
                                                      + part + "\"");
      if (comma == std::string::npos)
        break;
      pos = comma + 1;
    }
    f.routes = mask;
  }
  if (auto v = args.get(p + "after-accept-fraction")) {
    auto x = parse_double(p + "after-accept-fraction", *v);
    if (!x)
      return std::move(x.error());
    if (*x < 0.0 || *x > 1.0)
      return invalid_argument(p + "after-accept-fraction", "must be within [0, 1]");
    f.after_accept_fraction = *x;
  }
  auto ra = int_flag(args, p + "retry-after", 0, 86400, f.retry_after.count());
  if (!ra)
    return std::move(ra.error());
  f.retry_after = std::chrono::seconds(*ra);
  auto slow = int_flag(args, p + "slow-delay-ms", 0, 3'600'000, f.slow_delay.count());
  if (!slow)
    return std::move(slow.error());
  f.slow_delay = std::chrono::milliseconds(*slow);
  auto queued = int_flag(args, p + "latency-queued-ms", 0, 3'600'000, -1);
  if (!queued)
    return std::move(queued.error());
  auto per_token = int_flag(args, p + "latency-per-token-us", 0, 60'000'000, -1);
  if (!per_token)
    return std::move(per_token.error());
  for (auto* w : opts.latency.all()) {
    if (*queued >= 0)
      w->queued = std::chrono::milliseconds(*queued);
    if (*per_token >= 0)
      w->per_token = std::chrono::microseconds(*per_token);
  }
  return caf::none;
}

} // namespace sail::app
