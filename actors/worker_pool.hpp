// The supervised pool of HTTP workers.
//
//   completer --(submit, sail_job)--> supervisor --(job)--> worker x N
//                                         ^  (done/failed/pause/retried)  |
//                                         +-------------------------------+
//
// The supervisor owns every response promise, admission control (a bounded
// number of samples in flight plus a bounded wait queue; beyond that an
// immediate `overloaded`), the pool-wide pause after a 429/529, cancellation,
// and supervision: it monitors the workers, restarts a dead one (bounded
// restart intensity, then it escalates) and re-dispatches that worker's
// in-flight jobs, with their Idempotency-Keys, to live workers, so Sail replays
// rather than re-runs. An attempt cap stops poison jobs; results from an
// earlier attempt are ignored.
//
// The pool's retry_guard (net/retry_guard.hpp), shared with its workers,
// bounds the retry load: every attempt asks it first (retry budget, circuit
// breaker); while the breaker is open new work is refused with `unavailable`
// and work in flight waits, with its deadline, for the breaker to close.
//
// Workers run many jobs each: create the background response, poll it with
// an adaptive interval, decode it. HTTP completions come back as messages
// through weak handles (http_bridge.hpp).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/fwd.hpp>
#include <caf/timespan.hpp>
#include <caf/typed_actor.hpp>

#include "sail_tinker/actors/http_bridge.hpp"
#include "sail_tinker/messages/interfaces.hpp"
#include "sail_tinker/net/retry_guard.hpp"
#include "sail_tinker/net/retry_policy.hpp"

namespace sail {

/// Polling and deadlines of one completion window.
struct window_timing {
  /// Delay before the first poll after a pending create.
  caf::timespan first_poll = std::chrono::milliseconds(500);
  /// Upper bound of the poll interval (grows by poll_growth per poll).
  caf::timespan max_poll = std::chrono::seconds(5);
  /// Default deadline of a whole sample (sail_job::deadline overrides).
  caf::timespan deadline = std::chrono::minutes(15);
};

struct pool_options {
  /// Sail base URL (no trailing slash) and API key. The key never leaves the
  /// pool: jobs carry no Authorization header.
  std::string base_url;
  std::string api_key;
  size_t workers = 4;
  /// Admission control: samples in flight on this node, and waiting behind.
  size_t max_in_flight = 256;
  size_t max_queued = 1024;
  /// Dispatches of one job (first + re-dispatches after worker deaths).
  uint32_t max_dispatch_attempts = 3;
  /// Restart intensity: more than max_restarts within restart_window -> the
  /// pool fails all of its work and quits (escalation).
  uint32_t max_restarts = 20;
  caf::timespan restart_window = std::chrono::seconds(10);
  /// Per-HTTP-call timeout when the job sets none.
  caf::timespan call_timeout = std::chrono::seconds(30);
  /// Poll interval growth factor and jitter (+/- fraction).
  double poll_growth = 1.5;
  double poll_jitter = 0.2;
  /// Timing per completion window; unknown windows use `default_timing`.
  std::map<std::string, window_timing> windows = default_windows();
  window_timing default_timing;
  /// HTTP retries of one call (create or poll), bounded by the sample's
  /// deadline (retry.max_attempts 0: no other cap).
  retry_options retry;
  /// Bound on the pool's retries: at most retry_budget.ratio retries per
  /// first attempt in a sliding window, plus a floor.
  retry_budget_options retry_budget;
  /// Sustained failure of Sail: probe instead of hammering, refuse new work.
  circuit_breaker_options breaker;
  /// Called on every change of the breaker's state (from any thread; keep it
  /// short), e.g. to log it.
  retry_guard::listener on_breaker_change;
  /// Seed for jitter (0: random).
  uint64_t seed = 0;

  static std::map<std::string, window_timing> default_windows();

  /// Timing of `window`.
  const window_timing& timing(const std::string& window) const;
};

/// Pool counters (superset of completer_stats' fields).
using pool_stats = completer_stats;

/// A job as the pool stores it and hands it to a worker: one immutable copy
/// shared by both (the pool keeps it for re-dispatch after a worker death, so
/// every dispatch sends the byte-identical body under the same key). Local
/// only: it never crosses a node boundary.
using shared_job = std::shared_ptr<const sail_job>;

} // namespace sail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sail::shared_job)

namespace sail {

// -- private interfaces ------------------------------------------------------------

/// What workers report to the supervisor, plus the pool's timers and test hooks.
using pool_actor = worker_pool_actor::extend<
  // job id, dispatch attempt, result, number of polls
  caf::reacts_to<atom::done, uint64_t, uint32_t, tokens_with_logprobs, uint32_t>,
  caf::reacts_to<atom::failed, uint64_t, uint32_t, caf::error>,
  // a 429/529: pause new creates for this long
  caf::reacts_to<atom::pause, caf::timespan>,
  caf::reacts_to<atom::resume>,
  // an HTTP retry happened, with this cause
  caf::reacts_to<atom::retried, std::string>,
  // test hook: the worker in this slot throws
  caf::reacts_to<atom::crash, uint32_t>>;

using http_worker_actor = caf::typed_actor<
  // job id, dispatch attempt, the job (shared with the pool)
  caf::reacts_to<atom::submit, uint64_t, uint32_t, shared_job>,
  caf::reacts_to<atom::cancel, uint64_t>,
  caf::reacts_to<atom::http_done, http_completion>,
  // next HTTP step of a job (job id, step tag)
  caf::reacts_to<atom::step, uint64_t, uint64_t>,
  // timer: run the delayed steps that are due
  caf::reacts_to<atom::step>,
  // timer: fail the jobs whose deadline passed
  caf::reacts_to<atom::deadline>,
  // test hook: throw from the handler
  caf::reacts_to<atom::crash>>;

/// Spawns the supervisor and its workers. `client` must outlive the pool.
pool_actor spawn_worker_pool(caf::actor_system& sys, http_client& client,
                             pool_options opts);

} // namespace sail
