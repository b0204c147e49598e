// One bounded stop for every owner of actors (runtime, cluster, service node,
// the Python binding): exit, wait for the down messages under ONE deadline,
// kill what is left.
#pragma once

#include <cstddef>
#include <type_traits>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/timespan.hpp>

namespace sail {

/// Sends every actor of `actors` an exit (user_shutdown) and waits for their
/// down messages until `grace` has passed since the call: one deadline for
/// the whole set, measured from the start and not re-armed by a down message.
/// Actors still alive then get an exit with reason `kill`. Null handles are
/// skipped. Returns how many were killed. Blocks: call it from a non-actor
/// thread.
size_t stop_bounded(caf::actor_system& sys, const std::vector<caf::actor>& actors,
                    caf::timespan grace);

/// The same for typed handles.
template <class Handle>
size_t stop_bounded(caf::actor_system& sys, const std::vector<Handle>& actors,
                    caf::timespan grace) {
  std::vector<caf::actor> xs;
  xs.reserve(actors.size());
  for (auto& a : actors)
    if (a)
      xs.push_back(caf::actor_cast<caf::actor>(a));
  return stop_bounded(sys, xs, grace);
}

/// The same for one actor (typed or not); true if it had to be killed.
template <class Handle>
bool stop_bounded(caf::actor_system& sys, const Handle& actor, caf::timespan grace) {
  if (!actor)
    return false;
  return stop_bounded(sys, std::vector<caf::actor>{caf::actor_cast<caf::actor>(actor)}, grace)
         > 0;
}

} // namespace sail
