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
#include <string_view>
#include <unordered_map>

#include <boost/beast/http/verb.hpp>
#include <boost/json/fwd.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "sail_tinker/actors/worker_pool.hpp"

namespace sail {

/// One job as a worker runs it: its current HTTP call, polls, timers and
/// deadline (the job itself is the pool's shared copy).
struct running_job {
  uint64_t id = 0;
  /// The pool's dispatch of this job that the worker runs (its reports
  /// carry it; the pool counts only its current one).
  uint32_t dispatch = 0;
  shared_job job;                ///< the pool's copy (immutable)
  std::string response_id;       ///< empty until the create succeeded
  /// Attached to an earlier create (sail_job::response_id) and no poll has
  /// succeeded yet: a 404 means Sail forgot the id, so create (same key).
  bool attached = false;
  call_attempts call;            ///< the current HTTP call (create, a poll)
  uint64_t probe = 0;            ///< the attempt in flight is the breaker's probe
  bool held = false;             ///< waiting for the circuit breaker
  /// Bumped by every HTTP request, delayed step and applied webhook: a
  /// completion or step carrying an older one is stale.
  uint64_t generation = 0;
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

struct response_state;
struct http_worker_state;

using http_worker_ptr = http_worker_actor::stateful_pointer<http_worker_state>;

struct http_worker_state {
  static inline const char* name = "sail.http-worker";

  explicit http_worker_state(http_worker_ptr self) : self(self) {
  }

  http_worker_ptr self;
  http_client* client = nullptr;
  std::shared_ptr<const pool_options> opts;
  pool_impl_actor pool;
  std::unordered_map<uint64_t, running_job> jobs;
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
  uint64_t next_generation = 0;
  std::unique_ptr<retry_policy> retry;
  /// The pool's retry budget and circuit breaker (shared by its workers).
  std::shared_ptr<retry_guard> guard;
  std::mt19937_64 rng;

  // -- handlers (one per message of http_worker_actor) --------------------------------

  void submit(uint64_t id, uint32_t dispatch, shared_job job, poll_plan plan);
  void cancel(uint64_t id);
  void on_deadline();
  void on_step_timer();
  void on_step(uint64_t id, uint64_t generation);
  void on_http(http_completion& c);
  /// A webhook delivery for job `id`: decoded exactly like a poll's answer.
  void on_webhook(uint64_t id, webhook_delivery& d);

  // -- jobs -----------------------------------------------------------------------------

  void arm_deadline_timer();
  void arm_step_timer();
  // Forgets a job (its result has been reported, or it was cancelled).
  void drop(running_job& j);
  // Runs the job's next step after `delay`; at once without the clock.
  void step_after(running_job& j, caf::timespan delay);
  // Sends the job's next attempt once the pool's retry guard lets it go:
  // while the breaker is open or the retry budget is spent, the job waits
  // (its deadline timer still runs) and asks again.
  void next_attempt(running_job& j);
  void schedule_poll(running_job& j);
  /// The delay to the plan's next poll that is at least first_poll away;
  /// none once the plan is used up.
  std::optional<caf::timespan> next_planned(running_job& j);
  http_request base_request(running_job& j, boost::beast::http::verb verb, std::string url);
  void send_create(running_job& j);
  void send_poll(running_job& j);
  void start(running_job& j, http_request req);
  // Reports the sample of a terminal response, `doc` being `body` parsed.
  void finish(running_job& j, const boost::json::value& doc, std::string_view body,
              const response_state& state, bool via_webhook);
  void fail(running_job& j, caf::error err);
};

http_worker_actor::behavior_type
http_worker(http_worker_ptr self, http_client* client,
            std::shared_ptr<const pool_options> opts, pool_impl_actor pool,
            std::shared_ptr<retry_guard> guard);

} // namespace sail
