// One HTTP worker of the pool (see worker_pool.hpp). Runs many jobs
// concurrently: create, poll (webhook safety net, the pool's plan, or the
// configured timing), decode polls and webhook deliveries alike; reports to
// its supervisor.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>

#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "sail_tinker/actors/worker_pool.hpp"

namespace sail {

struct worker_job {
  uint64_t id = 0;
  uint32_t attempt = 0;
  shared_job job;                ///< the pool's copy (immutable)
  std::string response_id;       ///< empty until the create succeeded
  /// Attached to an earlier create (sail_job::response_id) and no poll has
  /// succeeded yet: a 404 means Sail forgot the id, so create (same key).
  bool attached = false;
  call_attempts call;            ///< the current HTTP call (create, a poll)
  uint64_t probe = 0;            ///< the attempt in flight is the breaker's probe
  bool held = false;             ///< waiting for the circuit breaker
  uint64_t tag = 0;              ///< tag of the current HTTP call or timer
  caf::timespan poll_interval{0};
  uint32_t polls = 0;
  /// The pool's plan (empty: configured timing) and its next entry.
  poll_plan plan;
  size_t plan_next = 0;
  /// Whole-sample limit, for the webhook safety-net timing.
  caf::timespan limit{0};
  /// When the create was answered, and the last answer that was still pending.
  std::optional<std::chrono::steady_clock::time_point> accepted_at;
  std::chrono::steady_clock::time_point last_pending_at;
  std::chrono::steady_clock::time_point deadline;
  /// This job's entry in http_worker_state::deadlines.
  std::multimap<std::chrono::steady_clock::time_point, uint64_t>::iterator deadline_pos;
  /// This job's delayed step in http_worker_state::steps (steps.end(): none).
  std::multimap<std::chrono::steady_clock::time_point, uint64_t>::iterator step_pos;
  const window_timing* timing = nullptr;
};

struct http_worker_state {
  static inline const char* name = "sail.http-worker";
  http_client* client = nullptr;
  std::shared_ptr<const pool_options> opts;
  pool_actor pool;
  std::unordered_map<uint64_t, worker_job> jobs;
  /// Deadlines of all jobs, earliest first. One timer per worker, armed for
  /// the earliest (CAF 0.17 cannot cancel a delayed message, so a timer per
  /// job would linger in the clock until its deadline).
  std::multimap<std::chrono::steady_clock::time_point, uint64_t> deadlines;
  std::optional<std::chrono::steady_clock::time_point> timer_at;
  /// Delayed steps (next poll, backoff) of all jobs, earliest first, under one
  /// timer per worker likewise: a CAF 0.17 delayed message per step costs
  /// about 230 bytes in the clock and mailbox for as long as it waits, and a
  /// superseded one cannot be taken back.
  std::multimap<std::chrono::steady_clock::time_point, uint64_t> steps;
  std::optional<std::chrono::steady_clock::time_point> step_timer_at;
  uint64_t next_tag = 0;
  std::unique_ptr<retry_policy> retry;
  /// The pool's retry budget and circuit breaker (shared by its workers).
  std::shared_ptr<retry_guard> guard;
  std::mt19937_64 rng;
};

using http_worker_ptr = http_worker_actor::stateful_pointer<http_worker_state>;

http_worker_actor::behavior_type
http_worker(http_worker_ptr self, http_client* client,
            std::shared_ptr<const pool_options> opts, pool_actor pool,
            std::shared_ptr<retry_guard> guard);

} // namespace sail
