// The driver actor of a rollout run: the bridge between a run loop running on
// its own (non-CAF) thread and a completer. The loop sends it one message per
// sample (a ticket it chooses + the request); the driver sends the request to
// the completer, is the observer of accepted creates (sample_request::observer)
// and hands both the response ids and the outcomes back through a locked
// queue the loop waits on (all blocking file I/O stays off CAF's scheduler).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <caf/typed_actor.hpp>

#include "sail_tinker/messages/interfaces.hpp"
#include "sail_tinker/messages/types.hpp"

namespace sail {

/// What the driver reports about one sample.
struct run_event {
  uint64_t ticket = 0;
  /// True: Sail accepted the create under `response_id`. False: `outcome`.
  bool accepted = false;
  std::string response_id;
  caf::expected<tokens_with_logprobs> outcome{tokens_with_logprobs{}};
};

/// The locked hand-over between the driver actor and the run loop.
class run_event_queue {
public:
  using clock_type = std::chrono::steady_clock;

  void push(run_event ev);

  /// Wakes a wait() without an event.
  void wake();

  /// Moves the queued events into `out`; waits for one (or a wake) until
  /// `until` if there is none.
  void wait(std::vector<run_event>& out, clock_type::time_point until);

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<run_event> items_;
  bool woken_ = false;
};

/// Spawns a driver sending to `target` and reporting into `events`.
run_driver_actor spawn_run_driver(caf::actor_system& sys, completer_actor target,
                                  std::shared_ptr<run_event_queue> events);

} // namespace sail
