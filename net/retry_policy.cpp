#include "sail_tinker/net/retry_policy.hpp"

#include <algorithm>
#include <limits>

#include <caf/sec.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/option_check.hpp"
#include "sail_tinker/net/http_date.hpp"
#include "sail_tinker/net/text.hpp"

namespace sail {

namespace {

uint64_t make_seed(uint64_t seed) {
  if (seed != 0)
    return seed;
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ static_cast<uint64_t>(rd());
}

std::string status_cause(unsigned status) {
  return "http_" + std::to_string(status);
}

} // namespace

const char* to_string(request_kind kind) noexcept {
  switch (kind) {
    case request_kind::sail_create:
      return "sail_create";
    case request_kind::sail_poll:
      return "sail_poll";
    case request_kind::tinker_ttl:
      return "tinker_ttl";
    case request_kind::tinker_archive:
      return "tinker_archive";
  }
  return "unknown";
}

bool is_success(request_kind kind, unsigned status) noexcept {
  if (kind == request_kind::tinker_archive)
    return status >= 200 && status < 400; // 302 + Location, or 200 JSON
  return status >= 200 && status < 300;
}

call_health health_of_status(unsigned status) noexcept {
  if (status == 429 || status == 529)
    return call_health::neutral;
  if (status == 408 || (status >= 500 && status <= 599))
    return call_health::down;
  return call_health::up;
}

call_health health_of_error(const caf::error& err) noexcept {
  if (err == caf::sec::request_timeout)
    return call_health::down;
  auto code = code_of(err);
  if (!code)
    return call_health::neutral;
  switch (*code) {
    case errc::transport_error:
    case errc::timeout:
      return call_health::down;
    case errc::http_error:
      if (auto info = info_of(err); info != nullptr && info->http_status != 0)
        return health_of_status(info->http_status);
      return call_health::neutral;
    default:
      return call_health::neutral;
  }
}

void call_attempts::start(request_kind k, time_point until) {
  kind = k;
  attempt = 0;
  deadline = until;
  last_cause.clear();
  last_status = 0;
  retry_due = false;
}

retry_policy::retry_policy(retry_options opts, uint64_t seed)
  : opts_(opts), rng_(make_seed(seed)) {
  // Defensive normalisation: negative durations make no sense as delays.
  auto zero = caf::timespan{0};
  opts_.base_delay = std::max(opts_.base_delay, zero);
  opts_.max_delay = std::max(opts_.max_delay, zero);
  opts_.max_retry_after = std::max(opts_.max_retry_after, zero);
  opts_.still_building_delay = std::max(opts_.still_building_delay, zero);
}

const retry_options& retry_policy::options() const noexcept {
  return opts_;
}

bool retry_policy::retryable_status(request_kind kind,
                                    unsigned status) const noexcept {
  // 501 (not implemented) and 505 (version not supported) do not pass.
  auto transient_5xx = status >= 500 && status <= 599 && status != 501 && status != 505;
  switch (kind) {
    case request_kind::sail_create:
      // POST: 500 may mean the task ran; only statuses Sail documents as
      // transient (or rate limits) are retried, with the same Idempotency-Key.
      return status == 429 || status == 502 || status == 503 || status == 504
             || status == 529;
    case request_kind::sail_poll:
      return status == 408 || status == 429 || transient_5xx;
    case request_kind::tinker_ttl:
    case request_kind::tinker_archive:
      return status == 408 || status == 409 || status == 429 || transient_5xx;
  }
  return false;
}

caf::timespan retry_policy::backoff_cap(uint32_t attempt) const noexcept {
  if (attempt == 0)
    attempt = 1;
  auto base = opts_.base_delay.count();
  auto max = opts_.max_delay.count();
  if (base <= 0 || max <= 0)
    return caf::timespan{0};
  if (base >= max)
    return opts_.max_delay;
  // base * 2^(attempt-1), saturating at max.
  int64_t cap = base;
  for (uint32_t i = 1; i < attempt; ++i) {
    if (cap > max / 2)
      return opts_.max_delay;
    cap *= 2;
  }
  return caf::timespan{std::min(cap, max)};
}

caf::timespan retry_policy::backoff(uint32_t attempt) {
  auto cap = backoff_cap(attempt).count();
  if (cap <= 0)
    return caf::timespan{0};
  std::uniform_int_distribution<int64_t> dist{0, cap};
  return caf::timespan{dist(rng_)};
}

retry_decision retry_policy::decide(uint32_t attempt, std::string cause,
                                    caf::timespan delay) const {
  retry_decision result;
  result.cause = std::move(cause);
  if (opts_.max_attempts != 0 && attempt >= opts_.max_attempts) {
    result.attempts_exhausted = true;
    return result;
  }
  result.retry = true;
  result.delay = delay;
  return result;
}

retry_decision retry_policy::on_transport_error(request_kind kind,
                                                uint32_t attempt,
                                                const caf::error& err) {
  if (auto code = code_of(err)) {
    switch (*code) {
      case errc::transport_error:
        return decide(attempt, "transport", backoff(attempt));
      case errc::timeout:
        return decide(attempt, "timeout", backoff(attempt));
      case errc::http_error: {
        auto info = info_of(err);
        if (info != nullptr && info->http_status != 0)
          return on_status(kind, attempt, info->http_status, {},
                           std::chrono::system_clock::time_point{});
        break;
      }
      case errc::cancelled:
        return retry_decision{false, caf::timespan{0}, "cancelled", false};
      default:
        break;
    }
    return retry_decision{false, caf::timespan{0}, to_string(*code), false};
  }
  if (err == caf::sec::request_timeout)
    return decide(attempt, "timeout", backoff(attempt));
  return retry_decision{false, caf::timespan{0}, "error", false};
}

retry_decision retry_policy::on_status(request_kind kind, uint32_t attempt,
                                       unsigned status,
                                       std::string_view retry_after_header,
                                       std::chrono::system_clock::time_point now) {
  auto cause = status_cause(status);
  if (!retryable_status(kind, status))
    return retry_decision{false, caf::timespan{0}, std::move(cause), false};
  caf::timespan delay;
  if (kind == request_kind::tinker_archive && status == 503) {
    cause = "still_building";
    delay = opts_.still_building_delay;
  } else {
    delay = backoff(attempt);
  }
  if (auto ra = parse_retry_after(retry_after_header, now))
    delay = std::max(delay, std::min(*ra, opts_.max_retry_after));
  return decide(attempt, std::move(cause), delay);
}

verdict retry_policy::judge(call_attempts& call,
                           const caf::expected<http_response>& result,
                           wall_clock::time_point wall_now,
                           steady_clock::time_point now) {
  verdict v;
  retry_decision d;
  if (result) {
    v.status = result->status;
    if (is_success(call.kind, result->status)) {
      v.outcome = verdict::success;
      v.cause = "ok";
      return v;
    }
    v.health = health_of_status(result->status);
    d = on_status(call.kind, call.attempt, result->status,
                  result->header("Retry-After"), wall_now);
  } else {
    v.health = health_of_error(result.error());
    d = on_transport_error(call.kind, call.attempt, result.error());
    if (!d.retry)
      v.error = result.error();
  }
  v.cause = d.cause;
  call.last_cause = d.cause;
  call.last_status = v.status;
  if (!d.retry)
    return v; // fail: v.error, or the status for the caller's codec
  if (now + std::chrono::duration_cast<steady_clock::duration>(d.delay) >= call.deadline) {
    v.error = make_error(errc::timeout,
                         "the deadline comes before the next attempt; attempt "
                           + std::to_string(call.attempt) + " of its " + to_string(call.kind)
                           + " failed (" + d.cause + ")",
                         {}, static_cast<uint16_t>(v.status));
    return v;
  }
  v.outcome = verdict::retry;
  v.delay = d.delay;
  call.retry_due = true;
  return v;
}

std::optional<caf::timespan>
parse_retry_after(std::string_view value,
                  std::chrono::system_clock::time_point now) {
  auto in = text::trim_http(value);
  if (in.empty())
    return std::nullopt;
  if (std::all_of(in.begin(), in.end(),
                  [](char c) { return c >= '0' && c <= '9'; })) {
    // delta-seconds; saturate rather than overflow (a later cap applies).
    constexpr int64_t max_seconds
      = std::numeric_limits<int64_t>::max() / 1'000'000'000;
    int64_t secs = 0;
    for (char c : in) {
      secs = secs * 10 + (c - '0');
      if (secs > max_seconds) {
        secs = max_seconds;
        break;
      }
    }
    return std::chrono::duration_cast<caf::timespan>(std::chrono::seconds{secs});
  }
  auto date = parse_http_date(in);
  if (!date)
    return std::nullopt;
  if (*date <= now)
    return caf::timespan{0};
  return std::chrono::duration_cast<caf::timespan>(*date - now);
}

caf::error retry_options::validate(const std::string& prefix) const {
  using namespace option_check;
  return first_error(non_negative(base_delay, prefix + "base-delay"),
                     non_negative(max_delay, prefix + "max-delay"),
                     non_negative(max_retry_after, prefix + "max-retry-after"),
                     non_negative(still_building_delay, prefix + "still-building-delay"));
}

} // namespace sail
