#include "sail_tinker/actors/worker_pool.hpp"

#include <algorithm>
#include <deque>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include <caf/actor_system.hpp>
#include <caf/exit_reason.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "sail_tinker/actors/http_worker.hpp"
#include "sail_tinker/actors/pool_core.hpp"
#include "sail_tinker/messages/error.hpp"

namespace sail {

pool_observer::~pool_observer() = default;

// -- options ------------------------------------------------------------------------

std::map<std::string, window_timing> pool_options::default_windows() {
  using std::chrono::hours;
  using std::chrono::milliseconds;
  using std::chrono::minutes;
  using std::chrono::seconds;
  // First poll, poll cap, default deadline: ASSUMED from Sail's latency
  // targets (/completion-windows, mid 2026: asap immediate; priority about 1
  // min per turn; standard about 5 min; flex best effort). `balanced`
  // replaced `priority` in Sept 2026 (/rate-limits) and nobody publishes
  // its latency: it takes priority's timing. Other names: default_timing.
  // The webhook safety-net polls (first, then interval): GUESS, a few times
  // each window's latency target, so that a webhook (Sail delivers on
  // completion) nearly always comes first; each at most a quarter of the
  // deadline (window_timing).
  return {
    {"asap", {milliseconds(100), seconds(1), minutes(5), seconds(30), seconds(30)}},
    {"priority", {milliseconds(500), seconds(5), minutes(15), minutes(3), minutes(1)}},
    {"balanced", {milliseconds(500), seconds(5), minutes(15), minutes(3), minutes(1)}},
    {"standard", {seconds(2), seconds(15), hours(1), minutes(15), minutes(5)}},
    {"flex", {seconds(5), seconds(60), hours(24), hours(2), minutes(30)}},
  };
}

const window_timing& pool_options::timing(const std::string& window) const {
  auto i = windows.find(window);
  return i != windows.end() ? i->second : default_timing;
}

namespace {

using clock_type = std::chrono::steady_clock;

/// A job as the pool holds it from submit until its one answer (its
/// placement is pool_core's): the job, shared with the worker running it, the
/// submitter's promise, and the response id once a worker reported it.
struct submitted_job {
  shared_job job;
  caf::typed_response_promise<tokens_with_logprobs> rp;
  std::string response_id;
};

using pool_jobs = pool_core<submitted_job>;

/// A delivery for an id nobody claimed (yet).
struct early_delivery {
  webhook_delivery delivery;
  clock_type::time_point until;
};

pool_limits limits_of(const pool_options& opts) {
  return {std::max<size_t>(1, opts.workers), opts.max_in_flight,
          opts.max_queued,
          opts.max_dispatch_attempts,
          opts.max_restarts,
          opts.restart_window};
}

struct pool_state;

using pool_ptr = pool_impl_actor::stateful_pointer<pool_state>;

struct pool_state {
  static inline const char* name = "sail.worker-pool";

  explicit pool_state(pool_ptr self) : self(self) {
  }

  pool_ptr self;
  http_client* client = nullptr;
  std::shared_ptr<const pool_options> opts;
  /// Retry budget and circuit breaker, shared with the workers.
  std::shared_ptr<retry_guard> guard;
  /// The workers, by slot of `jobs`.
  std::vector<http_worker_actor> workers;
  /// Admission, placement, pause, restart intensity and re-dispatch
  /// (pool_core.hpp): the decisions; this actor does the messaging.
  std::optional<pool_jobs> jobs;
  uint64_t next_job = 0;
  /// Keys view the jobs' own idempotency_key (an entry goes before its job).
  std::unordered_map<std::string_view, uint64_t> by_key;
  std::unordered_map<std::string, std::unordered_set<uint64_t>> by_group;
  pool_stats stats;
  /// Set while shutting down: the pool quits with it once every worker is down.
  std::optional<caf::error> stopping;
  size_t workers_alive = 0;
  /// Completion latency per (model, window), and the poll plans from it.
  std::optional<poll_planner> planner;
  /// Response id -> job id, for jobs whose create was answered.
  std::unordered_map<std::string, uint64_t> by_response;
  /// Response ids of finished samples (bounded, oldest first out).
  std::unordered_set<std::string> recent;
  std::deque<std::string> recent_order;
  /// Deliveries for unknown ids, oldest first.
  std::unordered_map<std::string, early_delivery> early;
  std::deque<std::string> early_order;

  /// Spawns the workers (at least one) and the shared retry guard.
  void start(http_client* c, std::shared_ptr<const pool_options> o) {
    client = c;
    opts = std::move(o);
    jobs.emplace(limits_of(*opts));
    planner.emplace(opts->adaptive);
    guard = std::make_shared<retry_guard>(opts->retry_budget, opts->breaker,
                                          opts->on_breaker_change);
    for (size_t i = 0; i < jobs->slots(); ++i)
      workers.push_back(spawn_worker(i));
  }

  // -- handlers (one per message of pool_impl_actor) ------------------------------------

  caf::result<tokens_with_logprobs> submit(sail_job& job) {
    if (stopping) {
      auto err = stop_error(*stopping);
      count_failure(err);
      return err;
    }
    if (auto why = guard->refuse_new_work(clock_type::now())) {
      ++stats.failed_by_kind[to_string(errc::unavailable)];
      return make_error(errc::unavailable, std::move(*why));
    }
    auto how = jobs->admit();
    if (how == pool_jobs::admission::overloaded) {
      ++stats.failed_by_kind[to_string(errc::overloaded)];
      return make_error(errc::overloaded,
                        "node is at capacity: " + std::to_string(jobs->active())
                          + " samples in flight, " + std::to_string(jobs->queued())
                          + " waiting");
    }
    auto id = ++next_job;
    auto rp = self->make_response_promise<tokens_with_logprobs>();
    auto& e = jobs->add(id, {std::make_shared<const sail_job>(std::move(job)), rp, {}}, how);
    auto& sj = e.payload;
    if (std::string_view key = sj.job->idempotency_key; !key.empty()) {
      by_key.erase(key); // a view into an older job with this key
      by_key.emplace(key, id);
    }
    if (!sj.job->group_id.empty())
      by_group[sj.job->group_id].insert(id);
    if (e.slot >= 0)
      dispatch(id, e);
    return rp;
  }

  completer_stats get_stats() {
    auto s = stats;
    s.in_flight = jobs->in_flight();
    s.guard = guard->stats(clock_type::now());
    // The client's own retries (a pooled connection that died while idle:
    // the call goes once more on a fresh connection, below the retry
    // policy); shared with the resolver, so Tinker calls count too.
    if (auto n = client->stats().stale_retries; n > 0)
      s.retries_by_cause["stale_connection"] = n;
    return s;
  }

  void done(uint64_t id, uint32_t dispatch, tokens_with_logprobs& result,
            const sample_report& report) {
    auto* e = jobs->current(id, dispatch);
    if (e == nullptr)
      return;
    stats.polls += report.polls;
    count_in(stats.polls_per_sample, polls_buckets, report.polls);
    if (report.notice_ms >= 0) {
      auto ms = static_cast<uint64_t>(report.notice_ms);
      count_in(stats.notice_delay, notice_buckets_ms, ms);
      stats.notice_delay_sum_ms += ms;
    }
    if (report.via_webhook)
      ++stats.webhooks["applied"];
    auto& job = *e->payload.job;
    if (report.latency.count() >= 0)
      planner->observe(job.model, job.completion_window, report.latency);
    usage_entry(stats.usage, job.model, job.completion_window).add(result.usage);
    e->payload.rp.deliver(std::move(result));
    ++stats.completed;
    release(id);
    pump();
  }

  void failed(uint64_t id, uint32_t dispatch, caf::error& err) {
    auto* e = jobs->current(id, dispatch);
    if (e == nullptr)
      return;
    count_failure(err);
    e->payload.rp.deliver(std::move(err));
    release(id);
    pump();
  }

  /// A worker's create was answered: the job's deliveries can be routed.
  void created(uint64_t id, uint32_t dispatch, std::string& response_id) {
    auto* e = jobs->current(id, dispatch);
    if (e == nullptr || response_id.empty())
      return;
    e->payload.response_id = response_id;
    by_response[response_id] = id;
    auto i = early.find(response_id);
    if (i == early.end())
      return;
    // Its webhook came before the create's answer (a very fast response).
    auto delivery = std::move(i->second.delivery);
    early.erase(i);
    ++stats.webhooks["early"];
    if (e->slot >= 0)
      self->send(workers[e->slot], atom::webhook_v, id, std::move(delivery));
  }

  void webhook(webhook_delivery& d) {
    auto& counts = stats.webhooks;
    ++counts["received"];
    if (auto i = by_response.find(d.response_id); i != by_response.end()) {
      if (auto* e = jobs->find(i->second); e != nullptr && e->slot >= 0) {
        self->send(workers[e->slot], atom::webhook_v, i->second, std::move(d));
        return;
      }
    }
    if (recent.count(d.response_id) > 0) {
      // Sail retried, or a poll finished the sample first.
      ++counts["duplicate"];
      return;
    }
    ++counts["unknown"];
    hold_early(std::move(d));
  }

  void rejected(const std::string& reason) {
    ++stats.webhooks["rejected_" + reason];
  }

  /// A worker's verdict on a forwarded delivery it did not apply.
  void webhook_verdict(const std::string& verdict) {
    ++stats.webhooks[verdict];
  }

  void cancel(const std::string& what) {
    std::vector<uint64_t> ids;
    if (auto i = by_key.find(what); i != by_key.end())
      ids.push_back(i->second);
    if (auto i = by_group.find(what); i != by_group.end())
      ids.insert(ids.end(), i->second.begin(), i->second.end());
    for (auto id : ids) {
      auto* e = jobs->find(id);
      if (e == nullptr)
        continue;
      if (e->slot >= 0)
        self->send(workers[e->slot], atom::cancel_v, id);
      auto err = make_error(errc::cancelled, "sample cancelled by the caller");
      count_failure(err);
      e->payload.rp.deliver(std::move(err));
      release(id);
    }
    pump();
  }

  /// A 429/529: no new creates for `d`.
  void pause(caf::timespan d) {
    auto out = jobs->pause(clock_type::now(), d);
    if (out.started)
      ++stats.retries_by_cause["pool_pause"];
    if (out.resume_after)
      self->delayed_send(self, *out.resume_after, atom::resume_v);
  }

  void resume() {
    if (jobs->resume(clock_type::now()))
      pump();
  }

  /// A worker retried an HTTP call for `cause`.
  void retried(const std::string& cause) {
    ++stats.retries_by_cause[cause];
  }

  /// Supervision: restart a dead worker and re-dispatch its jobs, or give up.
  void worker_down(const caf::down_msg& dm) {
    auto it = std::find_if(workers.begin(), workers.end(), [&](const http_worker_actor& w) {
      return w.address() == dm.source;
    });
    if (it == workers.end())
      return;
    if (stopping) {
      *it = nullptr;
      if (--workers_alive == 0)
        self->quit(*stopping);
      return;
    }
    if (!jobs->restart_allowed(clock_type::now())) {
      escalate(make_error(errc::inference_error,
                          "worker pool gave up: more than "
                            + std::to_string(opts->max_restarts)
                            + " worker restarts within the restart window"));
      return;
    }
    auto slot = static_cast<size_t>(it - workers.begin());
    *it = spawn_worker(slot);
    ++stats.retries_by_cause["worker_restart"];
    jobs->restart_slot(
      slot,
      [this](uint64_t id, pool_jobs::entry& e) {
        ++stats.retries_by_cause["redispatch"];
        dispatch(id, e);
      },
      [this](uint64_t id, submitted_job&& sj, uint32_t dispatches) {
        auto err = make_error(errc::inference_error, "sample abandoned: its worker died "
                                                       + std::to_string(dispatches) + " times");
        count_failure(err);
        sj.rp.deliver(std::move(err));
        forget(id, sj);
      });
    pump();
  }

  /// What work fails with while the pool stops for `reason`: stopped by its
  /// owner (user_shutdown, normal), `cancelled`; ended for any other reason,
  /// the work failed with this node: `node_down`.
  static caf::error stop_error(const caf::error& reason) {
    if (reason == caf::exit_reason::user_shutdown || reason == caf::exit_reason::normal)
      return make_error(errc::cancelled, "worker pool shutting down");
    return make_error(errc::node_down, "worker pool ended: " + render(reason));
  }

  /// Fails the open work, stops the workers and quits once they are all
  /// down, so that no worker touches the HTTP client after the pool is gone.
  void shutdown(const caf::error& reason) {
    if (stopping)
      return;
    stopping = reason;
    fail_all(stop_error(reason));
    workers_alive = 0;
    for (auto& w : workers)
      if (w) {
        self->send_exit(w, reason);
        ++workers_alive;
      }
    if (workers_alive == 0)
      self->quit(reason);
  }

  // -- jobs -----------------------------------------------------------------------------

  http_worker_actor spawn_worker(size_t slot) {
    auto w = self->spawn<caf::monitored>(http_worker, client, opts,
                                         caf::actor_cast<pool_impl_actor>(self), guard);
    if (opts->observer)
      opts->observer->worker_started(slot, w);
    return w;
  }

  /// Runs after every message: tells the observer (if any) of the change.
  void observe() {
    if (opts->observer)
      opts->observer->changed([this] { return get_stats(); });
  }

  /// Sends job `id`, just placed by `jobs`, to the worker of its slot.
  void dispatch(uint64_t id, pool_jobs::entry& e) {
    auto& job = *e.payload.job;
    // A job expecting its webhook here polls on the webhook timing instead.
    poll_plan plan;
    if (!job.webhook) {
      auto& t = opts->timing(job.completion_window);
      plan = planner->plan(job.model, job.completion_window, t.first_poll, t.max_poll);
    }
    self->send(workers[static_cast<size_t>(e.slot)], atom::submit_v, id, e.dispatch,
               e.payload.job, std::move(plan));
  }

  /// Places and sends the queued jobs there is room for.
  void pump() {
    jobs->pump([this](uint64_t id, pool_jobs::entry& e) { dispatch(id, e); });
  }

  /// Forgets a job whose promise has been delivered.
  void release(uint64_t id) {
    if (auto sj = jobs->release(id))
      forget(id, *sj);
  }

  /// Takes a job that left `jobs` out of the indexes.
  void forget(uint64_t id, submitted_job& sj) {
    if (!sj.response_id.empty()) {
      if (auto r = by_response.find(sj.response_id);
          r != by_response.end() && r->second == id)
        by_response.erase(r);
      // Only a body naming this node's receiver can bring a delivery here
      // (Sail calls the completion_webhook of the body it was sent).
      if (sj.job->webhook)
        remember(std::move(sj.response_id));
    }
    if (auto k = by_key.find(sj.job->idempotency_key);
        k != by_key.end() && k->second == id)
      by_key.erase(k);
    if (auto g = by_group.find(sj.job->group_id); g != by_group.end()) {
      g->second.erase(id);
      if (g->second.empty())
        by_group.erase(g);
    }
  }

  /// Remembers a finished sample's response id (bounded FIFO).
  void remember(std::string response_id) {
    if (opts->webhook_recent == 0 || !recent.insert(response_id).second)
      return;
    recent_order.push_back(std::move(response_id));
    while (recent_order.size() > opts->webhook_recent) {
      recent.erase(recent_order.front());
      recent_order.pop_front();
    }
  }

  /// Holds a delivery for an unknown id (bounded in count and time).
  void hold_early(webhook_delivery d) {
    auto now = clock_type::now();
    auto& order = early_order;
    // Forget what expired or was claimed (claimed ids are gone from `early`).
    while (!order.empty()) {
      auto i = early.find(order.front());
      if (i != early.end() && i->second.until > now
          && early.size() < opts->webhook_early_max)
        break;
      if (i != early.end())
        early.erase(i);
      order.pop_front();
    }
    if (opts->webhook_early_max == 0)
      return;
    auto id = d.response_id;
    auto until = now + opts->webhook_early_hold;
    if (early.insert_or_assign(id, early_delivery{std::move(d), until}).second)
      order.push_back(std::move(id));
  }

  void count_failure(const caf::error& err) {
    auto code = code_of(err);
    ++stats.failed_by_kind[code ? to_string(*code) : "other"];
  }

  void fail_all(const caf::error& err) {
    jobs->clear([&](uint64_t, submitted_job& sj) {
      count_failure(err);
      sj.rp.deliver(err);
    });
    by_key.clear();
    by_group.clear();
    by_response.clear();
    early.clear();
    early_order.clear();
  }

  void escalate(caf::error err) {
    fail_all(err);
    for (auto& w : workers)
      self->send_exit(w, caf::exit_reason::user_shutdown);
    self->quit(std::move(err));
  }
};

pool_impl_actor::behavior_type pool_behavior(pool_ptr self, http_client* client,
                                             std::shared_ptr<const pool_options> opts) {
  self->state.start(client, std::move(opts));
  self->set_down_handler([self](caf::down_msg& dm) {
    self->state.worker_down(dm);
    self->state.observe();
  });
  self->set_exit_handler([self](caf::exit_msg& em) { self->state.shutdown(em.reason); });
  // Every handler that may change the counters ends with observe(): an
  // observer (tests) hears of the change the message made; without one it
  // returns at once.
  return {
    [self](atom::submit, sail_job& job) {
      auto res = self->state.submit(job);
      self->state.observe();
      return res;
    },
    [self](atom::cancel, std::string& what) {
      self->state.cancel(what);
      self->state.observe();
    },
    [self](atom::stats) { return self->state.get_stats(); },
    [self](atom::done, uint64_t id, uint32_t dispatch, tokens_with_logprobs& res,
           sample_report& report) {
      self->state.done(id, dispatch, res, report);
      self->state.observe();
    },
    [self](atom::failed, uint64_t id, uint32_t dispatch, caf::error& err) {
      self->state.failed(id, dispatch, err);
      self->state.observe();
    },
    [self](atom::created, uint64_t id, uint32_t dispatch, std::string& response_id) {
      self->state.created(id, dispatch, response_id);
      self->state.observe();
    },
    [self](atom::webhook, webhook_delivery& d) {
      self->state.webhook(d);
      self->state.observe();
    },
    [self](atom::rejected, std::string& reason) {
      self->state.rejected(reason);
      self->state.observe();
    },
    [self](atom::webhook, std::string& verdict) {
      self->state.webhook_verdict(verdict);
      self->state.observe();
    },
    [self](atom::pause, caf::timespan d) {
      self->state.pause(d);
      self->state.observe();
    },
    [self](atom::resume) {
      self->state.resume();
      self->state.observe();
    },
    [self](atom::retried, std::string& cause) {
      self->state.retried(cause);
      self->state.observe();
    },
  };
}

} // namespace

pool_impl_actor spawn_worker_pool(caf::actor_system& sys, http_client& client,
                             pool_options opts) {
  auto shared = std::make_shared<const pool_options>(std::move(opts));
  return sys.spawn(pool_behavior, &client, std::move(shared));
}

} // namespace sail
