#include "sail_tinker/actors/bounded_stop.hpp"

#include <chrono>
#include <unordered_set>

#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>

namespace sail {

size_t stop_bounded(caf::actor_system& sys, const std::vector<caf::actor>& actors,
                    caf::timespan grace) {
  using clock = std::chrono::steady_clock;
  auto deadline = clock::now() + grace;
  caf::scoped_actor self{sys};
  std::unordered_set<caf::actor_addr> alive;
  for (auto& a : actors) {
    if (!a || !alive.insert(a.address()).second)
      continue;
    self->monitor(a);
    self->send_exit(a, caf::exit_reason::user_shutdown);
  }
  while (!alive.empty()) {
    auto left = std::chrono::duration_cast<caf::timespan>(deadline - clock::now());
    if (left <= caf::timespan{0})
      break;
    bool timed_out = false;
    // Other messages (none expected) are skipped; down messages of actors
    // not in the set (none: the scoped actor is fresh) are ignored.
    self->receive([&](caf::down_msg& dm) { alive.erase(dm.source); },
                  caf::after(left) >> [&] { timed_out = true; });
    if (timed_out)
      break;
  }
  for (auto& a : actors)
    if (a && alive.count(a.address()) > 0)
      self->send_exit(a, caf::exit_reason::kill);
  return alive.size();
}

} // namespace sail
