// The worker pool's test hooks (actors/worker_pool_testing.hpp) for a
// runtime's pool.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include <caf/actor_cast.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/actors/worker_pool_testing.hpp"

namespace sail::test {

/// The pool of `rt` with its test hooks (the runtime hands it out without).
inline pool_testing_actor testing_pool(runtime& rt) {
  return caf::actor_cast<pool_testing_actor>(rt.pool());
}

/// Makes the worker in `slot` of the pool of `rt` end as if it had thrown.
inline void crash_worker(runtime& rt, uint32_t slot) {
  caf::anon_send(testing_pool(rt), atom::crash_v, slot);
}

/// Waits until `pred` holds for the counters of the pool of `rt`: the pool
/// answers when a message it handled made it hold (no polling); false if it
/// did not within `bound`.
inline bool wait_for_pool(runtime& rt, std::function<bool(const completer_stats&)> pred,
                          caf::timespan bound = std::chrono::seconds(60)) {
  caf::scoped_actor self{rt.system()};
  bool held = false;
  self->request(testing_pool(rt), bound, atom::stats_v, pool_condition{std::move(pred)})
    .receive([&](completer_stats&) { held = true; }, [&](caf::error&) { held = false; });
  return held;
}

} // namespace sail::test
