// Date parsing and formatting for HTTP headers (Retry-After, Expires) and for
// ISO-8601 timestamps in JSON bodies. Pure functions, no I/O, no locale.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace sail {

/// Parses an HTTP-date (RFC 9110 section 5.6.7): the preferred IMF-fixdate
/// ("Sun, 06 Nov 1994 08:49:37 GMT") and the obsolete RFC 850
/// ("Sunday, 06-Nov-94 08:49:37 GMT"; two-digit years 70..99 -> 19xx, 00..69
/// -> 20xx) and asctime ("Sun Nov  6 08:49:37 1994") forms. Surrounding
/// whitespace is ignored; the weekday name must be valid but is not checked
/// against the date. Returns nullopt for anything else (including impossible
/// dates such as Feb 30 or hour 24, and years outside 1900..2200).
std::optional<std::chrono::system_clock::time_point>
parse_http_date(std::string_view value);

/// Formats a time point as IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT"
/// (sub-second precision is truncated).
std::string format_http_date(std::chrono::system_clock::time_point tp);

/// Parses an ISO-8601 / RFC 3339 date-time: "YYYY-MM-DDThh:mm:ss" with an
/// optional fraction (any number of digits, kept to nanoseconds) and a zone
/// "Z", "z", "+hh:mm", "-hh:mm", "+hhmm" or "+hh". A space instead of 'T' is
/// accepted; a missing zone is read as UTC (Python's isoformat() of a naive
/// datetime). Returns nullopt for anything else.
std::optional<std::chrono::system_clock::time_point>
parse_iso8601(std::string_view value);

/// Formats a time point as "YYYY-MM-DDThh:mm:ss[.fffffffff]Z" (fraction only
/// when non-zero, trailing zeros dropped).
std::string format_iso8601(std::chrono::system_clock::time_point tp);

} // namespace sail
