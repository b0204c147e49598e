// The one retry path (net/retry_policy.hpp; docs/wire-contract.md, "Errors
// and retries", and its table of sources): the success
// rule per call kind, the classification of failures, backoff, Retry-After,
// the deadline bound of judge(), and the HTTP-date / ISO-8601 parsers it
// shares with the Tinker codec. Pure functions: `now` is injected, no timing
// assertions. The same path through the worker and the emulator is in
// test_retry_runtime.cpp.
#include <catch2/catch.hpp>

#include <set>
#include <vector>

#include <caf/sec.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/http_date.hpp"
#include "sail_tinker/net/retry_policy.hpp"

using namespace sail;
using namespace std::chrono_literals;
using std::chrono::system_clock;

namespace {

constexpr uint64_t seed = 42;

// 1994-11-06T08:49:37Z, the RFC's example date.
system_clock::time_point rfc_example() {
  return system_clock::time_point{std::chrono::seconds{784111777}};
}

std::vector<unsigned> all_error_statuses() {
  std::vector<unsigned> out;
  for (unsigned s = 400; s <= 599; ++s)
    out.push_back(s);
  return out;
}

void check_retryable_set(request_kind kind, const std::set<unsigned>& expected) {
  retry_policy p{{}, seed};
  for (auto status : all_error_statuses()) {
    INFO("kind " << to_string(kind) << " status " << status);
    CHECK(p.retryable_status(kind, status) == (expected.count(status) == 1));
    auto d = p.on_status(kind, 1, status, "", rfc_example());
    CHECK(d.retry == (expected.count(status) == 1));
    CHECK_FALSE(d.attempts_exhausted);
    if (!d.retry)
      CHECK(d.delay == caf::timespan{0});
  }
}

retry_options small_options() {
  retry_options o;
  o.max_attempts = 6;
  o.base_delay = 100ms;
  o.max_delay = 1s;
  o.max_retry_after = 60s;
  o.still_building_delay = 30s;
  return o;
}

} // namespace

// -- per-kind status classification ------------------------------------------------

TEST_CASE("sail create retries 429 502 503 504 529 and nothing else") {
  check_retryable_set(request_kind::sail_create, {429, 502, 503, 504, 529});
}

TEST_CASE("sail create does not retry 500") {
  retry_policy p{{}, seed};
  auto d = p.on_status(request_kind::sail_create, 1, 500, "", rfc_example());
  CHECK_FALSE(d.retry);
  CHECK(d.cause == "http_500");
}

TEST_CASE("sail create does not retry 400 401 403 404 408 409 422") {
  retry_policy p{{}, seed};
  for (unsigned s : {400u, 401u, 403u, 404u, 408u, 409u, 422u}) {
    INFO(s);
    CHECK_FALSE(p.on_status(request_kind::sail_create, 1, s, "", rfc_example())
                  .retry);
  }
}

TEST_CASE("sail poll retries 408 429 and every 5xx but 501 and 505") {
  std::set<unsigned> expected{408, 429};
  for (unsigned s = 500; s <= 599; ++s)
    if (s != 501 && s != 505)
      expected.insert(s);
  check_retryable_set(request_kind::sail_poll, expected);
}

TEST_CASE("sail poll does not retry 400 401 403 404") {
  retry_policy p{{}, seed};
  for (unsigned s : {400u, 401u, 403u, 404u}) {
    INFO(s);
    auto d = p.on_status(request_kind::sail_poll, 1, s, "", rfc_example());
    CHECK_FALSE(d.retry);
    CHECK(d.cause == "http_" + std::to_string(s));
  }
}

TEST_CASE("tinker ttl retries 408 409 429 and every 5xx but 501 and 505") {
  std::set<unsigned> expected{408, 409, 429};
  for (unsigned s = 500; s <= 599; ++s)
    if (s != 501 && s != 505)
      expected.insert(s);
  check_retryable_set(request_kind::tinker_ttl, expected);
}

TEST_CASE("tinker archive retries 408 409 429 and every 5xx but 501 and 505") {
  std::set<unsigned> expected{408, 409, 429};
  for (unsigned s = 500; s <= 599; ++s)
    if (s != 501 && s != 505)
      expected.insert(s);
  check_retryable_set(request_kind::tinker_archive, expected);
}

TEST_CASE("tinker does not retry 400 401 403 404") {
  retry_policy p{{}, seed};
  for (auto kind : {request_kind::tinker_ttl, request_kind::tinker_archive})
    for (unsigned s : {400u, 401u, 403u, 404u}) {
      INFO(to_string(kind) << " " << s);
      CHECK_FALSE(p.on_status(kind, 1, s, "", rfc_example()).retry);
    }
}

TEST_CASE("success and redirect statuses are never retried") {
  retry_policy p{{}, seed};
  for (auto kind : {request_kind::sail_create, request_kind::sail_poll,
                    request_kind::tinker_ttl, request_kind::tinker_archive})
    for (unsigned s : {100u, 200u, 202u, 204u, 302u, 304u}) {
      INFO(to_string(kind) << " " << s);
      CHECK_FALSE(p.retryable_status(kind, s));
      CHECK_FALSE(p.on_status(kind, 1, s, "", rfc_example()).retry);
    }
}

TEST_CASE("retryable status decisions carry an http_<status> cause") {
  retry_policy p{small_options(), seed};
  auto d = p.on_status(request_kind::sail_create, 1, 429, "", rfc_example());
  CHECK(d.retry);
  CHECK(d.cause == "http_429");
  d = p.on_status(request_kind::sail_poll, 1, 503, "", rfc_example());
  CHECK(d.cause == "http_503");
  d = p.on_status(request_kind::tinker_ttl, 1, 503, "", rfc_example());
  CHECK(d.cause == "http_503");
}

// -- Tinker still building ---------------------------------------------------------

TEST_CASE("tinker archive 503 waits still_building_delay with cause still_building") {
  auto opts = small_options();
  opts.still_building_delay = 30s;
  retry_policy p{opts, seed};
  for (uint32_t attempt = 1; attempt < opts.max_attempts; ++attempt) {
    auto d = p.on_status(request_kind::tinker_archive, attempt, 503, "",
                         rfc_example());
    CHECK(d.retry);
    CHECK(d.cause == "still_building");
    CHECK(d.delay == caf::timespan{30s});
  }
}

TEST_CASE("tinker archive still building is bounded by max_attempts") {
  auto opts = small_options();
  opts.max_attempts = 3;
  retry_policy p{opts, seed};
  CHECK(p.on_status(request_kind::tinker_archive, 2, 503, "", rfc_example()).retry);
  auto d = p.on_status(request_kind::tinker_archive, 3, 503, "", rfc_example());
  CHECK_FALSE(d.retry);
  CHECK(d.attempts_exhausted);
  CHECK(d.cause == "still_building");
  CHECK(d.delay == caf::timespan{0});
}

TEST_CASE("tinker archive still building honours a longer Retry-After up to the cap") {
  auto opts = small_options();
  opts.still_building_delay = 30s;
  opts.max_retry_after = 60s;
  retry_policy p{opts, seed};
  CHECK(p.on_status(request_kind::tinker_archive, 1, 503, "45", rfc_example()).delay
        == caf::timespan{45s});
  CHECK(p.on_status(request_kind::tinker_archive, 1, 503, "5", rfc_example()).delay
        == caf::timespan{30s});
  CHECK(p.on_status(request_kind::tinker_archive, 1, 503, "600", rfc_example()).delay
        == caf::timespan{60s});
}

TEST_CASE("tinker ttl 503 is an ordinary backoff, not still building") {
  auto opts = small_options();
  retry_policy p{opts, seed};
  auto d = p.on_status(request_kind::tinker_ttl, 1, 503, "", rfc_example());
  CHECK(d.retry);
  CHECK(d.cause == "http_503");
  CHECK(d.delay <= p.backoff_cap(1));
}

// -- transport errors --------------------------------------------------------------

TEST_CASE("transport errors are retried for every kind") {
  retry_policy p{small_options(), seed};
  auto err = make_error(errc::transport_error, "connection reset");
  for (auto kind : {request_kind::sail_create, request_kind::sail_poll,
                    request_kind::tinker_ttl, request_kind::tinker_archive}) {
    INFO(to_string(kind));
    auto d = p.on_transport_error(kind, 1, err);
    CHECK(d.retry);
    CHECK(d.cause == "transport");
    CHECK(d.delay >= caf::timespan{0});
    CHECK(d.delay <= p.backoff_cap(1));
  }
}

TEST_CASE("timeouts are retried for every kind") {
  retry_policy p{small_options(), seed};
  for (auto kind : {request_kind::sail_create, request_kind::sail_poll,
                    request_kind::tinker_ttl, request_kind::tinker_archive}) {
    INFO(to_string(kind));
    auto d = p.on_transport_error(kind, 2, make_error(errc::timeout, "read"));
    CHECK(d.retry);
    CHECK(d.cause == "timeout");
    auto d2 = p.on_transport_error(kind, 2, caf::make_error(caf::sec::request_timeout));
    CHECK(d2.retry);
    CHECK(d2.cause == "timeout");
  }
}

TEST_CASE("cancellation and input errors are not retried") {
  retry_policy p{small_options(), seed};
  auto d = p.on_transport_error(request_kind::sail_poll, 1,
                                make_error(errc::cancelled, "by caller"));
  CHECK_FALSE(d.retry);
  CHECK(d.cause == "cancelled");
  d = p.on_transport_error(request_kind::sail_poll, 1,
                           invalid_argument("model", "empty"));
  CHECK_FALSE(d.retry);
  CHECK(d.cause == "invalid_argument");
  d = p.on_transport_error(request_kind::sail_poll, 1,
                           caf::make_error(caf::sec::runtime_error));
  CHECK_FALSE(d.retry);
  CHECK(d.cause == "error");
  d = p.on_transport_error(request_kind::sail_poll, 1, caf::error{});
  CHECK_FALSE(d.retry);
}

TEST_CASE("an http_error given as a transport error is classified by its status") {
  retry_policy p{small_options(), seed};
  auto d = p.on_transport_error(request_kind::sail_create, 1, http_error(503, "{}"));
  CHECK(d.retry);
  CHECK(d.cause == "http_503");
  d = p.on_transport_error(request_kind::sail_create, 1, http_error(500, "{}"));
  CHECK_FALSE(d.retry);
  CHECK(d.cause == "http_500");
}

// -- attempt cap -------------------------------------------------------------------

TEST_CASE("attempt cap: attempts >= max_attempts are not retried") {
  auto opts = small_options();
  opts.max_attempts = 4;
  retry_policy p{opts, seed};
  auto err = make_error(errc::transport_error, "reset");
  for (uint32_t attempt = 1; attempt < 4; ++attempt) {
    INFO(attempt);
    CHECK(p.on_transport_error(request_kind::sail_poll, attempt, err).retry);
    CHECK(p.on_status(request_kind::sail_poll, attempt, 503, "", rfc_example()).retry);
  }
  for (uint32_t attempt : {4u, 5u, 100u}) {
    INFO(attempt);
    auto d = p.on_transport_error(request_kind::sail_poll, attempt, err);
    CHECK_FALSE(d.retry);
    CHECK(d.attempts_exhausted);
    CHECK(d.cause == "transport");
    CHECK(d.delay == caf::timespan{0});
    auto s = p.on_status(request_kind::sail_poll, attempt, 503, "1", rfc_example());
    CHECK_FALSE(s.retry);
    CHECK(s.attempts_exhausted);
    CHECK(s.delay == caf::timespan{0});
  }
}

TEST_CASE("attempt cap: max_attempts 1 never retries") {
  auto opts = small_options();
  opts.max_attempts = 1;
  retry_policy p{opts, seed};
  CHECK_FALSE(p.on_status(request_kind::sail_poll, 1, 503, "", rfc_example()).retry);
  CHECK_FALSE(p.on_transport_error(request_kind::sail_poll, 1,
                                   make_error(errc::transport_error, "x"))
                .retry);
}

TEST_CASE("default options: no attempt cap, 250 ms base, 30 s max, 60 s Retry-After cap") {
  retry_policy p;
  CHECK(p.options().max_attempts == 0);
  CHECK(p.options().base_delay == caf::timespan{250ms});
  CHECK(p.options().max_delay == caf::timespan{30s});
  CHECK(p.options().max_retry_after == caf::timespan{60s});
  CHECK(p.options().still_building_delay == caf::timespan{30s});
  // Transient failures are retried whatever the attempt number: only the
  // call's deadline bounds them (see judge).
  for (uint32_t attempt : {1u, 6u, 7u, 100u, 100000u}) {
    INFO(attempt);
    CHECK(p.on_status(request_kind::sail_poll, attempt, 503, "", rfc_example()).retry);
    CHECK(p.on_status(request_kind::sail_create, attempt, 503, "", rfc_example()).retry);
    CHECK(p.on_transport_error(request_kind::sail_create, attempt,
                               make_error(errc::transport_error, "reset"))
            .retry);
  }
}

// -- backoff -----------------------------------------------------------------------

TEST_CASE("full jitter: the cap doubles per attempt then saturates at max_delay") {
  auto opts = small_options(); // base 100 ms, max 1 s
  retry_policy p{opts, seed};
  CHECK(p.backoff_cap(0) == caf::timespan{100ms});
  CHECK(p.backoff_cap(1) == caf::timespan{100ms});
  CHECK(p.backoff_cap(2) == caf::timespan{200ms});
  CHECK(p.backoff_cap(3) == caf::timespan{400ms});
  CHECK(p.backoff_cap(4) == caf::timespan{800ms});
  CHECK(p.backoff_cap(5) == caf::timespan{1s});
  CHECK(p.backoff_cap(6) == caf::timespan{1s});
  CHECK(p.backoff_cap(64) == caf::timespan{1s});
  CHECK(p.backoff_cap(1000) == caf::timespan{1s});
  CHECK(p.backoff_cap(UINT32_MAX) == caf::timespan{1s});
}

TEST_CASE("full jitter: default cap saturates at 30 s without overflow") {
  retry_policy p{{}, seed};
  CHECK(p.backoff_cap(1) == caf::timespan{250ms});
  CHECK(p.backoff_cap(8) == caf::timespan{30s}); // 32 s > max
  CHECK(p.backoff_cap(7) == caf::timespan{16s});
  CHECK(p.backoff_cap(200) == caf::timespan{30s});
}

TEST_CASE("full jitter: every sampled delay lies within [0, cap]") {
  auto opts = small_options();
  retry_policy p{opts, seed};
  for (uint32_t attempt = 1; attempt <= 8; ++attempt) {
    auto cap = p.backoff_cap(attempt);
    caf::timespan lo = cap, hi{0};
    for (int i = 0; i < 5000; ++i) {
      auto d = p.backoff(attempt);
      REQUIRE(d >= caf::timespan{0});
      REQUIRE(d <= cap);
      lo = std::min(lo, d);
      hi = std::max(hi, d);
    }
    INFO("attempt " << attempt);
    // Jitter really spreads over the range (not a constant, not just the cap).
    CHECK(lo < cap / 10);
    CHECK(hi > cap * 9 / 10);
  }
}

TEST_CASE("full jitter: decisions' delays lie within [0, cap] too") {
  retry_policy p{small_options(), seed};
  for (int i = 0; i < 2000; ++i) {
    auto attempt = static_cast<uint32_t>(1 + i % 5);
    auto d = p.on_status(request_kind::sail_poll, attempt, 502, "", rfc_example());
    REQUIRE(d.retry);
    REQUIRE(d.delay >= caf::timespan{0});
    REQUIRE(d.delay <= p.backoff_cap(attempt));
  }
}

TEST_CASE("full jitter: zero base delay gives zero delays") {
  auto opts = small_options();
  opts.base_delay = caf::timespan{0};
  retry_policy p{opts, seed};
  CHECK(p.backoff(3) == caf::timespan{0});
  CHECK(p.on_status(request_kind::sail_poll, 1, 503, "", rfc_example()).delay
        == caf::timespan{0});
}

TEST_CASE("determinism: the same seed gives the same delays") {
  retry_policy a{small_options(), 7};
  retry_policy b{small_options(), 7};
  retry_policy c{small_options(), 8};
  std::vector<caf::timespan> da, db, dc;
  for (uint32_t i = 1; i <= 50; ++i) {
    da.push_back(a.backoff(1 + i % 6));
    db.push_back(b.backoff(1 + i % 6));
    dc.push_back(c.backoff(1 + i % 6));
  }
  CHECK(da == db);
  CHECK(da != dc);
  auto x = a.on_transport_error(request_kind::sail_create, 2,
                                make_error(errc::transport_error, "r"));
  auto y = b.on_transport_error(request_kind::sail_create, 2,
                                make_error(errc::transport_error, "r"));
  CHECK(x.delay == y.delay);
}

TEST_CASE("seed 0 draws a random seed and still respects the bounds") {
  retry_policy p{small_options(), 0};
  for (int i = 0; i < 100; ++i) {
    auto d = p.backoff(3);
    CHECK(d >= caf::timespan{0});
    CHECK(d <= caf::timespan{400ms});
  }
}

// -- Retry-After -------------------------------------------------------------------

TEST_CASE("Retry-After seconds is a floor over the jittered backoff") {
  retry_policy p{small_options(), seed}; // backoff cap 100 ms at attempt 1
  for (int i = 0; i < 100; ++i) {
    auto d = p.on_status(request_kind::sail_create, 1, 429, "7", rfc_example());
    REQUIRE(d.retry);
    REQUIRE(d.delay == caf::timespan{7s});
  }
}

TEST_CASE("Retry-After shorter than the backoff does not shorten it") {
  auto opts = small_options();
  opts.base_delay = 10s;
  opts.max_delay = 10s;
  retry_policy ref{opts, seed};
  retry_policy p{opts, seed};
  for (int i = 0; i < 100; ++i) {
    auto expected = ref.backoff(1); // same seed -> same draw
    auto d = p.on_status(request_kind::sail_create, 1, 529, "0", rfc_example());
    REQUIRE(d.delay == std::max(expected, caf::timespan{0}));
    auto r = ref.backoff(1);
    auto d2 = p.on_status(request_kind::sail_create, 1, 529, "1", rfc_example());
    REQUIRE(d2.delay == std::max(r, caf::timespan{1s}));
  }
}

TEST_CASE("Retry-After is capped at max_retry_after") {
  auto opts = small_options();
  opts.max_retry_after = 60s;
  retry_policy p{opts, seed};
  CHECK(p.on_status(request_kind::sail_create, 1, 429, "3600", rfc_example()).delay
        == caf::timespan{60s});
  CHECK(p.on_status(request_kind::sail_create, 1, 429, "99999999999999999999999",
                    rfc_example())
          .delay
        == caf::timespan{60s});
}

TEST_CASE("Retry-After HTTP-date is a floor measured from now") {
  retry_policy p{small_options(), seed};
  auto now = rfc_example();
  auto d = p.on_status(request_kind::sail_poll, 1, 503,
                       "Sun, 06 Nov 1994 08:50:07 GMT", now);
  CHECK(d.retry);
  CHECK(d.delay == caf::timespan{30s});
  auto capped = p.on_status(request_kind::sail_poll, 1, 503,
                            "Sun, 06 Nov 1994 10:00:00 GMT", now);
  CHECK(capped.delay == caf::timespan{60s});
}

TEST_CASE("Retry-After unparseable is ignored") {
  retry_policy p{small_options(), seed};
  for (auto v : {"soon", "-5", "1.5", "5s", "Sun, 06 Nov 1994", "0x10", " ",
                 "Sun, 31 Feb 1994 08:49:37 GMT"}) {
    INFO(v);
    auto d = p.on_status(request_kind::sail_create, 1, 429, v, rfc_example());
    CHECK(d.retry);
    CHECK(d.delay <= p.backoff_cap(1));
  }
}

TEST_CASE("parse_retry_after: delta-seconds") {
  auto now = rfc_example();
  CHECK(parse_retry_after("0", now) == caf::timespan{0});
  CHECK(parse_retry_after("120", now) == caf::timespan{120s});
  CHECK(parse_retry_after("  5 \t", now) == caf::timespan{5s});
  CHECK(parse_retry_after("007", now) == caf::timespan{7s});
  auto huge = parse_retry_after("184467440737095516160000", now);
  REQUIRE(huge);
  CHECK(*huge > caf::timespan{std::chrono::hours{24 * 365 * 100}});
}

TEST_CASE("parse_retry_after: HTTP-date, past dates clamp to 0") {
  auto now = rfc_example();
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now)
        == caf::timespan{10s});
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now)
        == caf::timespan{0});
  CHECK(parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now)
        == caf::timespan{0});
  CHECK(parse_retry_after("Sunday, 06-Nov-94 08:49:57 GMT", now)
        == caf::timespan{20s});
  CHECK(parse_retry_after("Sun Nov  6 08:50:37 1994", now) == caf::timespan{60s});
}

TEST_CASE("parse_retry_after: absent or unparseable is nullopt") {
  auto now = rfc_example();
  CHECK_FALSE(parse_retry_after("", now));
  CHECK_FALSE(parse_retry_after("   ", now));
  CHECK_FALSE(parse_retry_after("-1", now));
  CHECK_FALSE(parse_retry_after("+1", now));
  CHECK_FALSE(parse_retry_after("1.0", now));
  CHECK_FALSE(parse_retry_after("tomorrow", now));
  CHECK_FALSE(parse_retry_after("Sun, 06 Nov 1994 08:49:37 UTC", now));
}

// -- HTTP-date ---------------------------------------------------------------------

TEST_CASE("HTTP-date: IMF-fixdate") {
  CHECK(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == rfc_example());
  CHECK(parse_http_date("  Sun, 06 Nov 1994 08:49:37 GMT\r\n") == rfc_example());
  CHECK(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT")
        == system_clock::time_point{});
  CHECK(parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT")
        == system_clock::time_point{std::chrono::seconds{1835481599}});
}

TEST_CASE("HTTP-date: RFC 850 form") {
  CHECK(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == rfc_example());
  CHECK(parse_http_date("Wednesday, 25-Nov-26 13:00:00 GMT")
        == parse_http_date("Wed, 25 Nov 2026 13:00:00 GMT"));
}

TEST_CASE("HTTP-date: asctime form") {
  CHECK(parse_http_date("Sun Nov  6 08:49:37 1994") == rfc_example());
  CHECK(parse_http_date("Sun Nov 06 08:49:37 1994") == rfc_example());
}

TEST_CASE("HTTP-date: malformed values are rejected") {
  for (auto v : {"", "0", "-1", "Sun, 06 Nov 1994 08:49:37", "Sun, 6 Nov 1994 08:49:37 GMT",
                 "Sun, 06 Foo 1994 08:49:37 GMT", "Xyz, 06 Nov 1994 08:49:37 GMT",
                 "Sun, 30 Feb 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
                 "Sun, 06 Nov 1994 08:60:00 GMT", "Sun, 06 Nov 1994 08:49:37 GMT x",
                 "Sun, 06 Nov 9999 08:49:37 GMT", "Sun Nov  6 08:49:37 94",
                 "1994-11-06T08:49:37Z"}) {
    INFO(v);
    CHECK_FALSE(parse_http_date(v));
  }
}

TEST_CASE("HTTP-date: format round-trips") {
  CHECK(format_http_date(rfc_example()) == "Sun, 06 Nov 1994 08:49:37 GMT");
  auto t = system_clock::time_point{std::chrono::seconds{1795000000}}
           + std::chrono::milliseconds{999};
  auto parsed = parse_http_date(format_http_date(t));
  REQUIRE(parsed);
  CHECK(*parsed == std::chrono::floor<std::chrono::seconds>(t));
}

// -- ISO-8601 ----------------------------------------------------------------------

TEST_CASE("ISO-8601: Z, offsets and fractional seconds") {
  CHECK(parse_iso8601("1994-11-06T08:49:37Z") == rfc_example());
  CHECK(parse_iso8601("1994-11-06t08:49:37z") == rfc_example());
  CHECK(parse_iso8601("1994-11-06 08:49:37Z") == rfc_example());
  CHECK(parse_iso8601("1994-11-06T08:49:37") == rfc_example());
  CHECK(parse_iso8601("1994-11-06T09:49:37+01:00") == rfc_example());
  CHECK(parse_iso8601("1994-11-06T03:19:37-05:30") == rfc_example());
  CHECK(parse_iso8601("1994-11-06T09:49:37+0100") == rfc_example());
  CHECK(parse_iso8601("1994-11-06T09:49:37+01") == rfc_example());
  CHECK(parse_iso8601("1994-11-06T08:49:37+00:00") == rfc_example());
  CHECK(parse_iso8601("1994-11-06T08:49:37.5Z")
        == rfc_example() + std::chrono::milliseconds{500});
  CHECK(parse_iso8601("1994-11-06T08:49:37.123456Z")
        == rfc_example() + std::chrono::microseconds{123456});
  CHECK(parse_iso8601("1994-11-06T08:49:37.123456789123Z")
        == rfc_example() + std::chrono::nanoseconds{123456789});
  CHECK(parse_iso8601("1994-11-06T08:49:37.250+01:00")
        == rfc_example() - std::chrono::hours{1} + std::chrono::milliseconds{250});
}

TEST_CASE("ISO-8601: malformed values are rejected") {
  for (auto v : {"", "1994-11-06", "1994-11-06T08:49", "1994-11-06T08:49:37.Z",
                 "1994-13-06T08:49:37Z", "1994-02-30T08:49:37Z",
                 "1994-11-06T25:49:37Z", "1994-11-06T08:49:37+24:00",
                 "1994-11-06T08:49:37+1", "1994-11-06T08:49:37Zjunk",
                 "94-11-06T08:49:37Z", "Sun, 06 Nov 1994 08:49:37 GMT"}) {
    INFO(v);
    CHECK_FALSE(parse_iso8601(v));
  }
}

TEST_CASE("ISO-8601: format round-trips") {
  CHECK(format_iso8601(rfc_example()) == "1994-11-06T08:49:37Z");
  auto t = rfc_example() + std::chrono::milliseconds{250};
  CHECK(format_iso8601(t) == "1994-11-06T08:49:37.25Z");
  CHECK(parse_iso8601(format_iso8601(t)) == t);
}

TEST_CASE("request kinds have stable names") {
  CHECK(std::string{to_string(request_kind::sail_create)} == "sail_create");
  CHECK(std::string{to_string(request_kind::sail_poll)} == "sail_poll");
  CHECK(std::string{to_string(request_kind::tinker_ttl)} == "tinker_ttl");
  CHECK(std::string{to_string(request_kind::tinker_archive)} == "tinker_archive");
}

// -- one success rule per call kind -------------------------------------------------

TEST_CASE("success: 2xx for create, poll and TTL, 200..399 for the archive") {
  for (unsigned status : {100u, 199u, 200u, 201u, 202u, 204u, 299u, 300u, 302u, 304u, 399u,
                          400u, 404u, 429u, 500u, 503u}) {
    INFO(status);
    bool two = status >= 200 && status < 300;
    CHECK(is_success(request_kind::sail_create, status) == two);
    CHECK(is_success(request_kind::sail_poll, status) == two);
    CHECK(is_success(request_kind::tinker_ttl, status) == two);
    CHECK(is_success(request_kind::tinker_archive, status)
          == (status >= 200 && status < 400));
  }
}

// -- judge: the verdict on one attempt ----------------------------------------------

namespace {

using steady = std::chrono::steady_clock;

caf::expected<http_response> answer(unsigned status, std::string retry_after = {},
                                    std::string body = "{}") {
  http_response r;
  r.status = status;
  if (!retry_after.empty())
    r.headers.push_back({"Retry-After", std::move(retry_after)});
  r.body = std::move(body);
  return r;
}

caf::expected<http_response> failure(caf::error err) {
  return caf::expected<http_response>{std::move(err)};
}

steady::time_point t0() {
  return steady::time_point{std::chrono::hours(1000)};
}

} // namespace

TEST_CASE("judge: a success ends the call with cause ok, Sail up") {
  retry_policy p{small_options(), seed};
  call_attempts call;
  call.start(request_kind::sail_create, t0() + 1h);
  call.sent();
  auto v = p.judge(call, answer(202), rfc_example(), t0());
  CHECK(v.outcome == verdict::success);
  CHECK(v.cause == "ok");
  CHECK(v.status == 202);
  CHECK(v.health == call_health::up);
  CHECK_FALSE(v.error);
  CHECK_FALSE(call.retry_due);
  call.start(request_kind::tinker_archive);
  call.sent();
  CHECK(p.judge(call, answer(302), rfc_example(), t0()).outcome == verdict::success);
}

TEST_CASE("judge: a transient status schedules a retry and records its cause") {
  retry_policy p{small_options(), seed};
  call_attempts call;
  call.start(request_kind::sail_create, t0() + 1h);
  call.sent();
  auto v = p.judge(call, answer(503), rfc_example(), t0());
  CHECK(v.outcome == verdict::retry);
  CHECK(v.cause == "http_503");
  CHECK(v.health == call_health::down);
  CHECK(v.delay <= p.backoff_cap(1));
  CHECK(call.retry_due);
  CHECK(call.last_cause == "http_503");
  CHECK(call.last_status == 503);
  call.sent();
  CHECK(call.attempt == 2);
  CHECK_FALSE(call.retry_due);
}

TEST_CASE("judge: only the deadline bounds transient failures by default") {
  auto opts = small_options();
  opts.max_attempts = 0;
  retry_policy uncapped{opts, seed};
  call_attempts call;
  call.start(request_kind::sail_create, t0() + 1h);
  auto now = t0();
  for (int i = 0; i < 1000; ++i) {
    call.sent();
    auto v = uncapped.judge(call, i % 2 ? answer(503) : failure(make_error(errc::transport_error, "reset")),
                            rfc_example(), now);
    REQUIRE(v.outcome == verdict::retry);
    REQUIRE(v.delay <= opts.max_delay);
    now += std::chrono::duration_cast<steady::duration>(v.delay);
  }
  CHECK(call.attempt == 1000);
}

TEST_CASE("judge: no retry is scheduled past the deadline, the call times out typed") {
  retry_policy p{small_options(), seed};
  call_attempts call;
  call.start(request_kind::sail_create, t0() + 5s);
  call.sent();
  // Retry-After 7 s is a floor: it would end after the deadline.
  auto v = p.judge(call, answer(429, "7"), rfc_example(), t0());
  CHECK(v.outcome == verdict::fail);
  REQUIRE(v.error);
  CHECK(code_of(v.error) == errc::timeout);
  CHECK(info_of(v.error)->http_status == 429);
  CHECK(render(v.error).find("http_429") != std::string::npos);
  CHECK(v.health == call_health::neutral);
  // Within the deadline the same answer is retried.
  call.start(request_kind::sail_create, t0() + 8s);
  call.sent();
  auto ok = p.judge(call, answer(429, "7"), rfc_example(), t0());
  CHECK(ok.outcome == verdict::retry);
  CHECK(ok.delay == caf::timespan{7s});
}

TEST_CASE("judge: final statuses end the call at once for the caller's codec") {
  retry_policy p{small_options(), seed};
  call_attempts call;
  for (unsigned status : {400u, 401u, 404u, 409u, 422u, 500u}) {
    INFO(status);
    call.start(request_kind::sail_create, t0() + 1h);
    call.sent();
    auto v = p.judge(call, answer(status), rfc_example(), t0());
    CHECK(v.outcome == verdict::fail);
    CHECK(v.status == status);
    CHECK_FALSE(v.error); // decoded from the body by error_from_status
    CHECK(v.health == (status >= 500 ? call_health::down : call_health::up));
    CHECK_FALSE(call.retry_due);
  }
  call.start(request_kind::tinker_archive);
  call.sent();
  auto v = p.judge(call, answer(501), rfc_example(), t0());
  CHECK(v.outcome == verdict::fail);
  CHECK(v.status == 501);
}

TEST_CASE("judge: errors below HTTP: transport and timeouts retried, others passed through") {
  retry_policy p{small_options(), seed};
  call_attempts call;
  call.start(request_kind::sail_poll, t0() + 1h);
  call.sent();
  auto v = p.judge(call, failure(make_error(errc::transport_error, "reset")), rfc_example(), t0());
  CHECK(v.outcome == verdict::retry);
  CHECK(v.cause == "transport");
  CHECK(v.health == call_health::down);
  call.sent();
  v = p.judge(call, failure(make_error(errc::timeout, "read")), rfc_example(), t0());
  CHECK(v.outcome == verdict::retry);
  CHECK(v.cause == "timeout");
  call.sent();
  v = p.judge(call, failure(make_error(errc::cancelled, "by caller")), rfc_example(), t0());
  CHECK(v.outcome == verdict::fail);
  CHECK(code_of(v.error) == errc::cancelled);
  CHECK(v.health == call_health::neutral);
}

TEST_CASE("judge: with an attempt cap the last failure is the call's result") {
  auto opts = small_options();
  opts.max_attempts = 3;
  retry_policy p{opts, seed};
  call_attempts call;
  call.start(request_kind::tinker_archive);
  for (int i = 1; i <= 2; ++i) {
    call.sent();
    CHECK(p.judge(call, answer(503), rfc_example(), t0()).outcome == verdict::retry);
  }
  call.sent();
  auto v = p.judge(call, answer(503), rfc_example(), t0());
  CHECK(v.outcome == verdict::fail);
  CHECK(v.cause == "still_building");
  CHECK(v.status == 503);
  CHECK_FALSE(v.error);
  call.start(request_kind::sail_poll, t0() + 1h);
  for (int i = 1; i <= 2; ++i) {
    call.sent();
    CHECK(p.judge(call, failure(make_error(errc::transport_error, "x")), rfc_example(), t0())
            .outcome
          == verdict::retry);
  }
  call.sent();
  auto t = p.judge(call, failure(make_error(errc::transport_error, "x")), rfc_example(), t0());
  CHECK(t.outcome == verdict::fail);
  CHECK(code_of(t.error) == errc::transport_error);
}

TEST_CASE("decision: a 429 without a valid Retry-After is retried with the backoff") {
  // Sail's SDK surfaces it at once; the product owns a deadline per sample
  // and retries it (net/retry_policy.hpp, docs/wire-contract.md).
  retry_policy p{small_options(), seed};
  for (auto header : {"", "soon", "-1"}) {
    INFO("Retry-After '" << header << "'");
    call_attempts call;
    call.start(request_kind::sail_create, t0() + 1h);
    call.sent();
    auto v = p.judge(call, answer(429, header), rfc_example(), t0());
    CHECK(v.outcome == verdict::retry);
    CHECK(v.delay <= p.backoff_cap(1));
    CHECK(v.health == call_health::neutral);
  }
}

TEST_CASE("health: what an answer says about Sail") {
  CHECK(health_of_status(200) == call_health::up);
  CHECK(health_of_status(400) == call_health::up);
  CHECK(health_of_status(404) == call_health::up);
  CHECK(health_of_status(408) == call_health::down);
  CHECK(health_of_status(429) == call_health::neutral);
  CHECK(health_of_status(529) == call_health::neutral);
  for (unsigned s : {500u, 502u, 503u, 504u})
    CHECK(health_of_status(s) == call_health::down);
  CHECK(health_of_error(make_error(errc::transport_error, "x")) == call_health::down);
  CHECK(health_of_error(make_error(errc::timeout, "x")) == call_health::down);
  CHECK(health_of_error(caf::make_error(caf::sec::request_timeout)) == call_health::down);
  CHECK(health_of_error(http_error(503, "{}")) == call_health::down);
  CHECK(health_of_error(make_error(errc::cancelled, "x")) == call_health::neutral);
  CHECK(health_of_error(caf::error{}) == call_health::neutral);
}
