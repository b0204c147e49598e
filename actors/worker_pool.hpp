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
// rather than re-runs. A dispatch cap stops poison jobs; results from an
// earlier dispatch are ignored. Nothing supervises the pool itself: when it
// ends, its completers fail their samples with `node_down`
// (docs/architecture.md, "Supervision").
//
// Tests watch the pool through pool_options::observer (null in production):
// the workers it spawns and every change of its counters.
//
// The pool's retry_guard (net/retry_guard.hpp), shared with its workers,
// bounds the retry load: every attempt asks it first (retry budget, circuit
// breaker); while the breaker is open new work is refused with `unavailable`
// and work in flight waits, with its deadline, for the breaker to close.
//
// Workers run many jobs each: create the background response, poll it (see
// "Polling" below), decode it. HTTP completions come back as messages
// through weak handles (async_http.hpp).
//
// Polling (docs/operations.md, "Polling"): a job whose body names this node's
// webhook receiver is polled rarely (window_timing's webhook_* values: the
// safety net for a lost webhook); any other job polls on the plan the pool's
// poll_planner made from the latencies of (model, window) it finished, or on
// the window's configured timing while it knows too little.
//
// Webhooks: the runtime's receiver hands every authenticated delivery to the
// pool, which knows each job's response id (workers report it as soon as the
// create is answered) and forwards the delivery to the worker holding the job;
// the worker decodes it exactly like a poll's answer. A delivery for a sample
// that already finished is a duplicate; one for an id the pool never saw is
// unknown (held for webhook_early_hold in case its create's answer is still
// on the way). Every outcome is counted (completer_stats::webhooks).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/fwd.hpp>
#include <caf/timespan.hpp>
#include <caf/typed_actor.hpp>

#include "sail_tinker/actors/async_http.hpp"
#include "sail_tinker/messages/interfaces.hpp"
#include "sail_tinker/net/poll_planner.hpp"
#include "sail_tinker/net/retry_guard.hpp"
#include "sail_tinker/net/retry_policy.hpp"
#include "sail_tinker/net/webhook_receiver.hpp"
#include "sail_tinker/net/wire_options.hpp"

namespace sail {

/// Polling and deadlines of one completion window.
struct window_timing {
  /// Delay before the first poll after a pending create.
  caf::timespan first_poll = std::chrono::milliseconds(500);
  /// Upper bound of the poll interval (grows by poll_growth per poll).
  caf::timespan max_poll = std::chrono::seconds(5);
  /// Default deadline of a whole sample (sail_job::deadline overrides).
  caf::timespan deadline = std::chrono::minutes(15);
  /// With this node's webhook in the body, polls are the safety net for a
  /// lost webhook: the first after webhook_first_poll, then one every
  /// webhook_poll; each at most a quarter of the sample's deadline, so at
  /// least three polls fit before it.
  caf::timespan webhook_first_poll = std::chrono::minutes(3);
  caf::timespan webhook_poll = std::chrono::minutes(1);

  /// invalid_argument naming the option (`prefix` + "deadline", ...) if out
  /// of range.
  caf::error validate(const std::string& prefix) const;
};

/// Watches a pool from outside (tests/support/pool_testing.hpp has one);
/// pool_options::observer, null in production. Called on the pool's thread,
/// inside its handlers: keep it short and never block on the pool.
class pool_observer {
public:
  virtual ~pool_observer();
  /// The pool spawned `worker` into `slot`: at start, and on every restart.
  virtual void worker_started(size_t slot, const http_worker_actor& worker) = 0;
  /// The pool handled a message; `counters` computes its counters now (as
  /// the pool's stats message answers them).
  virtual void changed(const std::function<completer_stats()>& counters) = 0;
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
  /// Adaptive polling (when the job expects no webhook here).
  adaptive_poll_options adaptive;
  /// Response ids of finished samples remembered to recognise duplicate
  /// deliveries (oldest forgotten first).
  size_t webhook_recent = 65536;
  /// Deliveries for ids not (yet) known, held in case the create's answer is
  /// still on the way: at most this many, for at most this long.
  size_t webhook_early_max = 4096;
  caf::timespan webhook_early_hold = std::chrono::seconds(60);
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
  /// The unpublished wire details the responses are decoded with (the
  /// runtime copies runtime_options::wire here; only `layout` matters).
  wire_options wire;
  /// Sees the pool's workers and counters (tests); null: nobody.
  std::shared_ptr<pool_observer> observer;

  static std::map<std::string, window_timing> default_windows();

  /// Timing of `window`.
  const window_timing& timing(const std::string& window) const;

  /// invalid_argument naming the option as caf-application.ini spells it
  /// (`prefix` + "max-in-flight", "retry-max-attempts", "breaker-window",
  /// "windows.<name>.deadline", ...) if out of range; checks the nested
  /// options too.
  caf::error validate(const std::string& prefix = "pool.") const;
};

/// Pool counters (superset of completer_stats' fields).
using pool_stats = completer_stats;

/// What a worker reports with a finished sample (local only).
struct sample_report {
  /// GETs sent for it.
  uint32_t polls = 0;
  /// Completion latency as seen from the create's acceptance (the midpoint
  /// between the last pending answer and the terminal one; the arrival of
  /// the webhook when one finished it); negative: unknown.
  caf::timespan latency{-1};
  /// The response's completed_at to the result in hand, ms; negative:
  /// the response had no completed_at.
  int64_t notice_ms = -1;
  /// A webhook delivery finished it.
  bool via_webhook = false;
};

} // namespace sail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sail::shared_job)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sail::sample_report)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sail::poll_plan)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sail::webhook_delivery)

namespace sail {

/// Spawns the supervisor and its workers. `client` must outlive the pool.
pool_impl_actor spawn_worker_pool(caf::actor_system& sys, http_client& client,
                             pool_options opts);

} // namespace sail
