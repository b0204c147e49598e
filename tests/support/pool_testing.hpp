// The worker pool's test hooks (actors/worker_pool_testing.hpp) for a
// runtime's pool.
#pragma once

#include <cstdint>

#include <caf/actor_cast.hpp>
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

} // namespace sail::test
