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
    {p + "latency-spread", "SPEC",
     "extra per-request latency drawn from a seeded spread, every window: "
     "log_uniform:MIN_MS:MAX_MS | log_normal:MEDIAN_MS:SIGMA:MIN_MS:MAX_MS | "
     "log_normal_p99:MEDIAN_MS:P99_OVER_MEDIAN"},
    {p + "latency-profile", "NAME[:SCALE]",
     "a named latency model (measured | targets | heavy-tail), every duration times SCALE "
     "(default 1); applied before the other latency flags"},
    {p + "webhook-drop", "P", "probability that a response's webhook is dropped (default 0)"},
    {p + "webhook-duplicate", "P", "probability that a webhook is delivered twice (default 0)"},
    {p + "webhook-delay-ms", "MS", "delay of every webhook after completion (default 0)"},
    {p + "prompt-cache-min-tokens", "N", "shortest prompt prefix billed as cached input under "
                                         "one prompt_cache_key (default 0: no caching)"},
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
  if (auto v = args.get(p + "latency-profile")) {
    std::string spec{*v};
    double scale = 1.0;
    auto colon = spec.find(':');
    if (colon != std::string::npos) {
      auto x = parse_double(p + "latency-profile", spec.substr(colon + 1));
      if (!x)
        return std::move(x.error());
      scale = *x;
      spec.resize(colon);
    }
    if (!(scale > 0.0 && scale <= 1000.0))
      return invalid_argument(p + "latency-profile", "--" + p + "latency-profile: SCALE must be within (0, 1000]");
    auto model = emulator::latency_profile(spec, scale);
    if (!model)
      return invalid_argument(p + "latency-profile", "--" + p + "latency-profile: unknown profile '" + spec
                                                       + "' (measured, targets, heavy-tail)");
    opts.latency = *model;
  }
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
  auto cache_min = int_flag(args, p + "prompt-cache-min-tokens", 0, 2'000'000, -1);
  if (!cache_min)
    return std::move(cache_min.error());
  if (*cache_min >= 0)
    opts.prompt_cache_min_tokens = *cache_min;
  if (auto v = args.get(p + "latency-spread")) {
    auto spread = parse_latency_spread(p + "latency-spread", *v);
    if (!spread)
      return std::move(spread.error());
    for (auto* w : opts.latency.all())
      w->spread = *spread;
  }
  for (auto [name, field] : {std::pair{"webhook-drop", &f.webhook_drop},
                             std::pair{"webhook-duplicate", &f.webhook_duplicate}}) {
    if (auto v = args.get(p + name)) {
      auto x = parse_double(p + name, *v);
      if (!x)
        return std::move(x.error());
      if (*x < 0.0 || *x > 1.0)
        return invalid_argument(p + name, "must be within [0, 1]");
      *field = *x;
    }
  }
  auto delay = int_flag(args, p + "webhook-delay-ms", 0, 3'600'000, f.webhook_delay.count());
  if (!delay)
    return std::move(delay.error());
  f.webhook_delay = std::chrono::milliseconds(*delay);
  return caf::none;
}

caf::expected<emulator::latency_spread> parse_latency_spread(const std::string& flag,
                                                             std::string_view spec) {
  using emulator::latency_spread;
  std::vector<std::string> parts;
  size_t pos = 0;
  while (true) {
    auto colon = spec.find(':', pos);
    parts.emplace_back(spec.substr(pos, colon == std::string_view::npos ? colon : colon - pos));
    if (colon == std::string_view::npos)
      break;
    pos = colon + 1;
  }
  auto bad = [&] {
    return invalid_argument(flag, "--" + flag
                                    + ": expected log_uniform:MIN_MS:MAX_MS or "
                                      "log_normal:MEDIAN_MS:SIGMA:MIN_MS:MAX_MS or "
                                      "log_normal_p99:MEDIAN_MS:P99_OVER_MEDIAN");
  };
  auto ms = [&](const std::string& x) -> caf::expected<std::chrono::microseconds> {
    auto v = parse_double(flag, x);
    if (!v)
      return std::move(v.error());
    if (!(*v >= 0.0 && *v <= 86'400'000.0))
      return invalid_argument(flag, "--" + flag + ": milliseconds must be within 0..86400000");
    return std::chrono::microseconds{static_cast<int64_t>(*v * 1000.0)};
  };
  latency_spread s;
  std::vector<std::string> bounds;
  if (parts.size() == 3 && parts[0] == "log_normal_p99") {
    auto median = ms(parts[1]);
    if (!median)
      return std::move(median.error());
    auto ratio = parse_double(flag, parts[2]);
    if (!ratio)
      return std::move(ratio.error());
    if (!(*ratio >= 1.0 && *ratio <= 1000.0))
      return invalid_argument(flag, "--" + flag + ": P99_OVER_MEDIAN must be within 1..1000");
    return latency_spread::log_normal_p99(*median, *ratio);
  }
  if (parts.size() == 3 && parts[0] == "log_uniform") {
    s.kind = latency_spread::shape::log_uniform;
    bounds = {parts[1], parts[2]};
  } else if (parts.size() == 5 && parts[0] == "log_normal") {
    s.kind = latency_spread::shape::log_normal;
    auto median = ms(parts[1]);
    if (!median)
      return std::move(median.error());
    s.median = *median;
    auto sigma = parse_double(flag, parts[2]);
    if (!sigma)
      return std::move(sigma.error());
    if (!(*sigma >= 0.0 && *sigma <= 10.0))
      return invalid_argument(flag, "--" + flag + ": SIGMA must be within 0..10");
    s.sigma = *sigma;
    bounds = {parts[3], parts[4]};
  } else {
    return bad();
  }
  auto lo = ms(bounds[0]);
  if (!lo)
    return std::move(lo.error());
  auto hi = ms(bounds[1]);
  if (!hi)
    return std::move(hi.error());
  if (*hi < *lo || (s.kind == latency_spread::shape::log_uniform && lo->count() == 0))
    return invalid_argument(flag, "--" + flag + ": need 0 < MIN <= MAX");
  s.min = *lo;
  s.max = *hi;
  return s;
}

} // namespace sail::app
