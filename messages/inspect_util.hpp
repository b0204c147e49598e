// Inspection helpers shared by the message types.
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <type_traits>

#include <caf/detail/stringification_inspector.hpp>
#include <caf/error.hpp>

#include "sail_tinker/messages/redact.hpp"

namespace sail::detail {

/// Serializes a std::optional<T> as (flag, value) like caf::optional does.
template <class T>
struct optional_ref {
  std::optional<T>& x;
};

template <class T>
struct optional_value_ref {
  bool& enabled;
  T& storage;
  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f,
                                                 optional_value_ref& x) {
    return x.enabled ? f(x.storage) : f();
  }
};

template <class Inspector, class T>
typename Inspector::result_type inspect(Inspector& f, optional_ref<T>& ref) {
  if constexpr (Inspector::reads_state) {
    if (ref.x)
      return f(true, *ref.x);
    return f(false);
  } else {
    bool flag = false;
    T tmp{};
    optional_value_ref<T> helper{flag, tmp};
    auto result = f(flag, helper);
    if (flag)
      ref.x = std::move(tmp);
    else
      ref.x.reset();
    return result;
  }
}

/// Wraps a string holding a secret (a signed URL, a token): binary
/// serialization carries it unchanged, stringification (deep_to_string, logs,
/// test output) shows it redacted.
struct secret_ref {
  std::string& x;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, secret_ref& ref) {
  if constexpr (std::is_same_v<Inspector, caf::detail::stringification_inspector>) {
    auto shown = redact_url(ref.x);
    return f(shown);
  } else {
    return f(ref.x);
  }
}

/// A bearer token (a webhook token): binary serialization carries it
/// unchanged, stringification shows "[REDACTED]" (never a prefix of it).
struct token_ref {
  std::string& x;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, token_ref& ref) {
  if constexpr (std::is_same_v<Inspector, caf::detail::stringification_inspector>) {
    std::string shown = ref.x.empty() ? std::string{} : std::string{"[REDACTED]"};
    return f(shown);
  } else {
    return f(ref.x);
  }
}

/// Same for an optional secret.
struct optional_secret_ref {
  std::optional<std::string>& x;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f,
                                        optional_secret_ref& ref) {
  if constexpr (std::is_same_v<Inspector, caf::detail::stringification_inspector>) {
    std::optional<std::string> shown;
    if (ref.x)
      shown = redact_url(*ref.x);
    optional_ref<std::string> inner{shown};
    return f(inner);
  } else {
    optional_ref<std::string> inner{ref.x};
    return f(inner);
  }
}

/// True if every value is a finite double.
template <class Range>
bool all_finite(const Range& xs) {
  for (double x : xs)
    if (!std::isfinite(x))
      return false;
  return true;
}

} // namespace sail::detail
