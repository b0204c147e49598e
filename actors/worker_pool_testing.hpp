// Test hooks of the worker pool, outside every published interface, so no
// peer can crash a worker. The pool is spawned with them, but spawn_worker_pool and the
// runtime hand it out as pool_impl_actor, and no interface a node publishes or
// hands out (completer_service_actor, completer_actor) carries them; only
// tests widen a handle to pool_testing_actor (tests/support/pool_testing.hpp).
//
// Not installed: CMakeLists.txt excludes *_testing.hpp from the headers.
#pragma once

#include <cstdint>
#include <functional>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "sail_tinker/actors/worker_pool.hpp"

namespace sail {

/// A condition on the pool's counters (local only).
struct pool_condition {
  std::function<bool(const completer_stats&)> holds;
};

} // namespace sail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sail::pool_condition)

namespace sail {

/// The pool with its test hooks.
using pool_testing_actor = pool_impl_actor::extend<
  // the worker in this slot ends as if its handler had thrown
  caf::reacts_to<atom::crash, uint32_t>,
  // the counters once the condition holds for them: at once, or after the
  // message that makes it hold (the pool checks after every message), so a
  // test waits for a change of the pool without polling it
  caf::replies_to<atom::stats, pool_condition>::with<completer_stats>>;

} // namespace sail
