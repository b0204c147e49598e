// Small, locale-independent text helpers shared by the net/ parsers (HTTP
// header values, URLs, environment values). Header-only.
#pragma once

#include <string_view>

namespace sail::text {

/// HTTP optional whitespace plus line breaks: space, HT, CR, LF.
constexpr bool is_http_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/// The C locale's isspace() set: space, HT, LF, VT, FF, CR.
constexpr bool is_c_space(char c) noexcept {
  return is_http_space(c) || c == '\f' || c == '\v';
}

/// `s` without the leading and trailing characters for which `is_ws` holds.
template <class Predicate>
constexpr std::string_view trim_if(std::string_view s, Predicate is_ws) noexcept {
  while (!s.empty() && is_ws(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back()))
    s.remove_suffix(1);
  return s;
}

/// Trims space, HT, CR and LF (header values: RFC 9110 OWS plus stray line
/// breaks).
constexpr std::string_view trim_http(std::string_view s) noexcept {
  return trim_if(s, is_http_space);
}

/// Trims the C locale's whitespace (also VT and FF).
constexpr std::string_view trim_c_space(std::string_view s) noexcept {
  return trim_if(s, is_c_space);
}

} // namespace sail::text
