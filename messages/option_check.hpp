// Range checks for the options structs' validate() (runtime_options,
// pool_options, http_client_options, ...): each struct is the one place where
// its defaults and ranges live, and names a bad option as the user spells it
// in caf-application.ini / on the command line ("pool." + "max-in-flight").
// The Python binding maps those names onto its own dict keys.
//
//   return option_check::first_error(
//     option_check::within(workers, 1, 1024, p + "workers"),
//     option_check::positive(call_timeout, p + "call-timeout"),
//     retry.validate(p + "retry-"));
#pragma once

#include <cstdint>
#include <string>

#include <caf/error.hpp>
#include <caf/timespan.hpp>

namespace sail::option_check {

/// invalid_argument naming `name` ("must be > 0") unless `x` > 0.
caf::error positive(caf::timespan x, std::string name);

/// invalid_argument naming `name` ("must not be negative") unless `x` >= 0.
caf::error non_negative(caf::timespan x, std::string name);

/// invalid_argument naming `name` ("must be >= min") unless `x` >= `min`.
caf::error at_least(uint64_t x, uint64_t min, std::string name);

/// invalid_argument naming `name` ("must be within min..max") unless
/// min <= x <= max.
caf::error within(uint64_t x, uint64_t min, uint64_t max, std::string name);

/// invalid_argument naming `name` unless `x` is finite and within the
/// interval from `min` to `max`, each end included or not ("must be within
/// [0, 1)").
caf::error within(double x, double min, bool min_included, double max, bool max_included,
                  std::string name);

/// The first error of `errs` (all are evaluated), or none.
template <class... Ts>
caf::error first_error(Ts... errs) {
  caf::error out;
  ((out ? void() : void(out = std::move(errs))), ...);
  return out;
}

} // namespace sail::option_check
