#include "sail_tinker/messages/option_check.hpp"

#include <cmath>
#include <limits>
#include <sstream>

#include "sail_tinker/messages/error.hpp"

namespace sail::option_check {

caf::error positive(caf::timespan x, std::string name) {
  if (x.count() > 0)
    return caf::none;
  return invalid_argument(std::move(name), "must be > 0");
}

caf::error non_negative(caf::timespan x, std::string name) {
  if (x.count() >= 0)
    return caf::none;
  return invalid_argument(std::move(name), "must not be negative");
}

caf::error at_least(uint64_t x, uint64_t min, std::string name) {
  if (x >= min)
    return caf::none;
  return invalid_argument(std::move(name), "must be >= " + std::to_string(min));
}

caf::error within(uint64_t x, uint64_t min, uint64_t max, std::string name) {
  if (x >= min && x <= max)
    return caf::none;
  return invalid_argument(std::move(name), "must be within " + std::to_string(min) + ".."
                                             + std::to_string(max));
}

caf::error within(double x, double min, bool min_included, double max, bool max_included,
                  std::string name) {
  bool ok = std::isfinite(x) && (min_included ? x >= min : x > min)
            && (max_included ? x <= max : x < max);
  if (ok)
    return caf::none;
  std::ostringstream msg;
  if (max == std::numeric_limits<double>::infinity())
    msg << "must be a finite number " << (min_included ? ">= " : "> ") << min;
  else
    msg << "must be within " << (min_included ? '[' : '(') << min << ", " << max
        << (max_included ? ']' : ')');
  return invalid_argument(std::move(name), msg.str());
}

} // namespace sail::option_check
