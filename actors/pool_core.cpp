#include "sail_tinker/actors/pool_core.hpp"

namespace sail {

restart_intensity::restart_intensity(uint32_t max_restarts, caf::timespan window)
  : max_restarts_(max_restarts), window_(window) {
}

bool restart_intensity::allow(clock_type::time_point now) {
  at_.push_back(now);
  while (!at_.empty() && now - at_.front() > window_)
    at_.pop_front();
  return at_.size() <= max_restarts_;
}

} // namespace sail
