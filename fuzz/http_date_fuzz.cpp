// libFuzzer target for the date parsers of response headers and bodies
// (net/http_date.*, net/retry_policy.*): parse_http_date (Expires,
// Retry-After), parse_iso8601 (Tinker's "expires"), parse_retry_after.
//
// Invariants: no crash or UB (signed overflow in the field arithmetic is a
// finding under -fsanitize=undefined); an accepted date lies within the
// documented year range and round-trips through its formatter (HTTP dates to
// the second, ISO-8601 to the nanosecond, when its UTC form is within the
// range); Retry-After is never negative and
// a date in the past is 0.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_util.hpp"
#include "sail_tinker/net/http_date.hpp"
#include "sail_tinker/net/retry_policy.hpp"

namespace {

using namespace sail;
using sail::fuzz::require;
using sys_clock = std::chrono::system_clock;
namespace chr = std::chrono;

// 1900-01-01 minus a day and 2201-01-01 plus a day (zone offsets move a
// date by less than a day).
const sys_clock::time_point earliest
  = sys_clock::time_point{chr::sys_days{chr::year{1899} / 12 / 31}};
const sys_clock::time_point latest
  = sys_clock::time_point{chr::sys_days{chr::year{2201} / 1 / 2}};

const sys_clock::time_point first_day{chr::sys_days{chr::year{1900} / 1 / 1}};
const sys_clock::time_point end_of_range{chr::sys_days{chr::year{2201} / 1 / 1}};

const sys_clock::time_point fixed_now{chr::seconds(1'750'000'000)};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto text = fuzz::as_text(data, size);
  if (auto tp = parse_http_date(text)) {
    require(*tp >= earliest && *tp < latest, "HTTP date outside 1900..2200");
    require(*tp == chr::floor<chr::seconds>(*tp), "HTTP date with a fraction");
    auto again = parse_http_date(format_http_date(*tp));
    require(again && *again == *tp, "HTTP date does not round-trip");
  }
  if (auto tp = parse_iso8601(text)) {
    require(*tp >= earliest && *tp < latest, "ISO-8601 date outside 1900..2200");
    // The year range applies to the local date: with a zone offset the UTC
    // form can fall just outside it (1900-01-01T00:00+05:30 is 1899 in UTC)
    // and is then not parseable again.
    if (*tp >= first_day && *tp < end_of_range) {
      auto again = parse_iso8601(format_iso8601(*tp));
      require(again && *again == *tp, "ISO-8601 date does not round-trip");
    }
  }
  if (auto d = parse_retry_after(text, fixed_now)) {
    require(d->count() >= 0, "negative Retry-After");
    if (auto tp = parse_http_date(text); tp && *tp <= fixed_now)
      require(d->count() == 0, "Retry-After date in the past is not 0");
  }
  return 0;
}
