// Helpers shared by the libFuzzer targets (not a target itself: targets are
// the *_fuzz.cpp files).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <caf/error.hpp>

#include "sail_tinker/messages/error.hpp"

namespace sail::fuzz {

/// Aborts (a finding) with `what` on stderr unless `condition` holds.
inline void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
    std::abort();
  }
}

/// Every failure of a decoder is a sail error of kind `kind` with its context.
inline void require_kind(const caf::error& err, errc kind, const char* what) {
  require(code_of(err) == kind, what);
  require(info_of(err) != nullptr, what);
}

inline bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

/// The input as text.
inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

/// Splits off the first line of `in` (without its '\n'); `in` keeps the
/// rest. The whole input when there is no newline.
inline std::string_view take_line(std::string_view& in) {
  auto nl = in.find('\n');
  auto line = in.substr(0, nl);
  in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
  return line;
}

} // namespace sail::fuzz
