// Test hooks of the worker pool, outside every published interface (issue 11
// item 5). The pool is spawned with them, but spawn_worker_pool and the
// runtime hand it out as pool_actor, and no interface a node publishes or
// hands out (completer_service_actor, completer_actor) carries them; only
// tests widen a handle to pool_testing_actor (tests/support/pool_testing.hpp).
//
// Not installed: CMakeLists.txt excludes *_testing.hpp from the headers.
#pragma once

#include <cstdint>

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "sail_tinker/actors/worker_pool.hpp"

namespace sail {

/// The pool with its test hooks.
using pool_testing_actor = pool_actor::extend<
  // the worker in this slot ends as if its handler had thrown
  caf::reacts_to<atom::crash, uint32_t>>;

} // namespace sail
