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
#include "sail_tinker/actors/worker_pool_testing.hpp"
#include "sail_tinker/messages/error.hpp"

namespace sail {

// -- options ------------------------------------------------------------------------

std::map<std::string, window_timing> pool_options::default_windows() {
  using std::chrono::hours;
  using std::chrono::milliseconds;
  using std::chrono::minutes;
  using std::chrono::seconds;
  // First poll, poll cap, default deadline: ASSUMED from Sail's latency
  // targets (/completion-windows, mid 2026: asap immediate; priority about 1
  // min per turn; standard about 5 min; flex best effort). `balanced`
  // replaced `priority` in Sept 2026 (sail-facts.md) and nobody publishes
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

struct pool_job {
  shared_job job;
  caf::typed_response_promise<tokens_with_logprobs> rp;
  uint32_t attempt = 0;
  /// Worker slot holding the job; -1 while queued.
  int slot = -1;
  /// Set once a worker reported the create's answer.
  std::string response_id;
};

/// A delivery for an id nobody claimed (yet).
struct early_delivery {
  webhook_delivery delivery;
  clock_type::time_point until;
};

struct worker_slot {
  http_worker_actor hdl;
  size_t in_flight = 0;
};

struct pool_state;

using pool_ptr = pool_testing_actor::stateful_pointer<pool_state>;

struct pool_state {
  static inline const char* name = "sail.worker-pool";

  explicit pool_state(pool_ptr self) : self(self) {
  }

  pool_ptr self;
  http_client* client = nullptr;
  std::shared_ptr<const pool_options> opts;
  /// Retry budget and circuit breaker, shared with the workers.
  std::shared_ptr<retry_guard> guard;
  std::vector<worker_slot> workers;
  std::unordered_map<uint64_t, pool_job> jobs;
  uint64_t next_job = 0;
  std::deque<uint64_t> queue;  ///< may hold ids of cancelled jobs: skipped
  size_t queued = 0;           ///< live jobs in `queue`
  size_t active = 0;           ///< dispatched jobs
  /// Keys view the jobs' own idempotency_key (an entry goes before its job).
  std::unordered_map<std::string_view, uint64_t> by_key;
  std::unordered_map<std::string, std::unordered_set<uint64_t>> by_group;
  clock_type::time_point paused_until;
  bool paused = false;
  std::deque<clock_type::time_point> restarts;
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

  // -- handlers (one per message of pool_actor) ---------------------------------------

  /// Spawns the workers (at least one) and the shared retry guard.
  void start(http_client* c, std::shared_ptr<const pool_options> o) {
    client = c;
    opts = std::move(o);
    planner.emplace(opts->adaptive);
    guard = std::make_shared<retry_guard>(opts->retry_budget, opts->breaker,
                                          opts->on_breaker_change);
    auto n = std::max<size_t>(1, opts->workers);
    for (size_t i = 0; i < n; ++i)
      workers.push_back({spawn_worker(), 0});
  }

  completer_stats get_stats() {
    auto s = stats;
    s.in_flight = active + queued;
    s.guard = guard->stats(clock_type::now());
    // The client's own retries (a pooled connection that died while idle:
    // the call goes once more on a fresh connection, below the retry
    // policy); shared with the resolver, so Tinker calls count too.
    if (auto n = client->stats().stale_retries; n > 0)
      s.retries_by_cause["stale_connection"] = n;
    return s;
  }

  /// A worker's verdict on a forwarded delivery it did not apply.
  void webhook_verdict(const std::string& verdict) {
    ++stats.webhooks[verdict];
  }

  /// A worker retried an HTTP call for `cause`.
  void retried(const std::string& cause) {
    ++stats.retries_by_cause[cause];
  }

  /// Test hook (pool_testing_actor): the worker in `slot` ends as if its
  /// handler had thrown (CAF ends such an actor with sec::runtime_error).
  void crash(uint32_t slot) {
    if (slot < workers.size())
      self->send_exit(workers[slot].hdl,
                      caf::make_error(caf::sec::runtime_error,
                                      std::string{"crash injected by test hook"}));
  }

  caf::result<tokens_with_logprobs> submit(sail_job& job) {
    auto& opts = *this->opts;
    if (auto why = guard->refuse_new_work(clock_type::now())) {
      ++stats.failed_by_kind[to_string(errc::unavailable)];
      return make_error(errc::unavailable, std::move(*why));
    }
    bool can_run = !paused && active < opts.max_in_flight;
    if (!can_run && queued >= opts.max_queued) {
      ++stats.failed_by_kind[to_string(errc::overloaded)];
      return make_error(errc::overloaded,
                        "node is at capacity: " + std::to_string(active)
                          + " samples in flight, " + std::to_string(queued)
                          + " waiting");
    }
    auto id = ++next_job;
    auto rp = self->make_response_promise<tokens_with_logprobs>();
    auto& pj = jobs[id];
    pj.job = std::make_shared<const sail_job>(std::move(job));
    pj.rp = rp;
    if (std::string_view key = pj.job->idempotency_key; !key.empty()) {
      by_key.erase(key); // a view into an older job with this key
      by_key.emplace(key, id);
    }
    if (!pj.job->group_id.empty())
      by_group[pj.job->group_id].insert(id);
    if (can_run) {
      ++active;
      dispatch(id, pj);
    } else {
      queue.push_back(id);
      ++queued;
    }
    return rp;
  }

  void done(uint64_t id, uint32_t attempt, tokens_with_logprobs& result,
            const sample_report& report) {
    auto* pj = current(id, attempt);
    if (pj == nullptr)
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
    if (report.latency.count() >= 0)
      planner->observe(pj->job->model, pj->job->completion_window, report.latency);
    pj->rp.deliver(std::move(result));
    ++stats.completed;
    release(id);
    pump();
  }

  /// A worker's create was answered: the job's deliveries can be routed.
  void created(uint64_t id, uint32_t attempt, std::string& response_id) {
    auto* pj = current(id, attempt);
    if (pj == nullptr || response_id.empty())
      return;
    pj->response_id = response_id;
    by_response[response_id] = id;
    auto e = early.find(response_id);
    if (e == early.end())
      return;
    // Its webhook came before the create's answer (a very fast response).
    auto delivery = std::move(e->second.delivery);
    early.erase(e);
    ++stats.webhooks["early"];
    if (pj->slot >= 0)
      self->send(workers[pj->slot].hdl, atom::webhook_v, id, std::move(delivery));
  }

  void webhook(webhook_delivery& d) {
    auto& counts = stats.webhooks;
    ++counts["received"];
    if (auto i = by_response.find(d.response_id); i != by_response.end()) {
      auto j = jobs.find(i->second);
      if (j != jobs.end() && j->second.slot >= 0) {
        self->send(workers[j->second.slot].hdl, atom::webhook_v, i->second,
                   std::move(d));
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

  void failed(uint64_t id, uint32_t attempt, caf::error& err) {
    auto* pj = current(id, attempt);
    if (pj == nullptr)
      return;
    count_failure(err);
    pj->rp.deliver(std::move(err));
    release(id);
    pump();
  }

  void cancel(const std::string& what) {
    std::vector<uint64_t> ids;
    if (auto i = by_key.find(what); i != by_key.end())
      ids.push_back(i->second);
    if (auto i = by_group.find(what); i != by_group.end())
      ids.insert(ids.end(), i->second.begin(), i->second.end());
    for (auto id : ids) {
      auto i = jobs.find(id);
      if (i == jobs.end())
        continue;
      if (i->second.slot >= 0)
        self->send(workers[i->second.slot].hdl, atom::cancel_v, id);
      auto err = make_error(errc::cancelled, "sample cancelled by the caller");
      count_failure(err);
      i->second.rp.deliver(std::move(err));
      release(id);
    }
    pump();
  }

  void pause(caf::timespan d) {
    if (d.count() <= 0)
      d = std::chrono::seconds(1);
    auto until = clock_type::now() + d;
    if (paused && until <= paused_until)
      return;
    paused_until = until;
    if (!paused) {
      paused = true;
      ++stats.retries_by_cause["pool_pause"];
    }
    self->delayed_send(self, d, atom::resume_v);
  }

  void resume() {
    if (!paused || clock_type::now() < paused_until)
      return;
    paused = false;
    pump();
  }

  void worker_down(const caf::down_msg& dm) {
    auto& ws = workers;
    auto it = std::find_if(ws.begin(), ws.end(), [&](const worker_slot& w) {
      return w.hdl.address() == dm.source;
    });
    if (it == ws.end())
      return;
    if (stopping) {
      it->hdl = nullptr;
      if (--workers_alive == 0)
        self->quit(*stopping);
      return;
    }
    auto slot = static_cast<int>(it - ws.begin());
    auto now = clock_type::now();
    restarts.push_back(now);
    while (!restarts.empty()
           && now - restarts.front() > opts->restart_window)
      restarts.pop_front();
    if (restarts.size() > opts->max_restarts) {
      escalate(make_error(errc::inference_error,
                          "worker pool gave up: more than "
                            + std::to_string(opts->max_restarts)
                            + " worker restarts within the restart window"));
      return;
    }
    it->hdl = spawn_worker();
    it->in_flight = 0;
    ++stats.retries_by_cause["worker_restart"];
    // Collect first: re-dispatching mutates the job map (pitfall 18).
    std::vector<uint64_t> orphaned;
    for (auto& [id, pj] : jobs)
      if (pj.slot == slot)
        orphaned.push_back(id);
    for (auto id : orphaned) {
      auto& pj = jobs[id];
      pj.slot = -1;
      if (pj.attempt >= opts->max_dispatch_attempts) {
        auto err = make_error(errc::inference_error,
                              "sample abandoned: its worker died "
                                + std::to_string(pj.attempt) + " times");
        count_failure(err);
        pj.rp.deliver(std::move(err));
        release(id);
        continue;
      }
      ++stats.retries_by_cause["redispatch"];
      dispatch(id, pj);
    }
    pump();
  }

  /// Fails the open work, stops the workers and quits once they are all
  /// down, so that no worker touches the HTTP client after the pool is gone.
  void shutdown(const caf::error& reason) {
    if (stopping)
      return;
    stopping = reason;
    fail_all(make_error(errc::cancelled, "worker pool shutting down"));
    workers_alive = 0;
    for (auto& w : workers)
      if (w.hdl) {
        self->send_exit(w.hdl, reason);
        ++workers_alive;
      }
    if (workers_alive == 0)
      self->quit(reason);
  }

  http_worker_actor spawn_worker() {
    return self->spawn<caf::monitored>(http_worker, client, opts,
                                        caf::actor_cast<pool_actor>(self), guard);
  }

  pool_job* current(uint64_t id, uint32_t attempt) {
    auto i = jobs.find(id);
    if (i == jobs.end() || i->second.attempt != attempt)
      return nullptr; // finished, cancelled, or a stale reply from an earlier attempt
    return &i->second;
  }

  void dispatch(uint64_t id, pool_job& pj) {
    auto& ws = workers;
    auto best = std::min_element(ws.begin(), ws.end(),
                                 [](const worker_slot& a, const worker_slot& b) {
                                   return a.in_flight < b.in_flight;
                                 });
    ++best->in_flight;
    pj.slot = static_cast<int>(best - ws.begin());
    ++pj.attempt;
    // A job expecting its webhook here polls on the webhook timing instead.
    poll_plan plan;
    if (!pj.job->webhook) {
      auto& t = opts->timing(pj.job->completion_window);
      plan = planner->plan(pj.job->model, pj.job->completion_window, t.first_poll,
                           t.max_poll);
    }
    self->send(best->hdl, atom::submit_v, id, pj.attempt, pj.job, std::move(plan));
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

  // Forgets a job whose promise has been delivered.
  void release(uint64_t id) {
    auto i = jobs.find(id);
    if (i == jobs.end())
      return;
    auto& pj = i->second;
    if (pj.slot >= 0) {
      --workers[pj.slot].in_flight;
      --active;
    } else {
      --queued; // still in `queue`; pump() skips it
    }
    if (!pj.response_id.empty()) {
      if (auto r = by_response.find(pj.response_id);
          r != by_response.end() && r->second == id)
        by_response.erase(r);
      remember(std::move(pj.response_id));
    }
    if (auto k = by_key.find(pj.job->idempotency_key);
        k != by_key.end() && k->second == id)
      by_key.erase(k);
    if (auto g = by_group.find(pj.job->group_id); g != by_group.end()) {
      g->second.erase(id);
      if (g->second.empty())
        by_group.erase(g);
    }
    jobs.erase(i);
  }

  void pump() {
    while (!paused && active < opts->max_in_flight
           && !queue.empty()) {
      auto id = queue.front();
      queue.pop_front();
      auto i = jobs.find(id);
      if (i == jobs.end() || i->second.slot >= 0)
        continue;
      --queued;
      ++active;
      dispatch(id, i->second);
    }
  }

  void count_failure(const caf::error& err) {
    auto code = code_of(err);
    ++stats.failed_by_kind[code ? to_string(*code) : "other"];
  }

  void fail_all(const caf::error& err) {
    for (auto& [id, pj] : jobs) {
      count_failure(err);
      pj.rp.deliver(err);
    }
    jobs.clear();
    queue.clear();
    by_key.clear();
    by_group.clear();
    by_response.clear();
    early.clear();
    early_order.clear();
    queued = 0;
    active = 0;
  }

  void escalate(caf::error err) {
    fail_all(err);
    for (auto& w : workers)
      self->send_exit(w.hdl, caf::exit_reason::user_shutdown);
    self->quit(std::move(err));
  }
};


pool_testing_actor::behavior_type pool_behavior(pool_ptr self, http_client* client,
                                                std::shared_ptr<const pool_options> opts) {
  self->state.start(client, std::move(opts));
  self->set_down_handler([self](caf::down_msg& dm) { self->state.worker_down(dm); });
  self->set_exit_handler([self](caf::exit_msg& em) { self->state.shutdown(em.reason); });
  return {
    [self](atom::submit, sail_job& job) { return self->state.submit(job); },
    [self](atom::cancel, std::string& what) { self->state.cancel(what); },
    [self](atom::stats) { return self->state.get_stats(); },
    [self](atom::done, uint64_t id, uint32_t attempt, tokens_with_logprobs& res,
           sample_report& report) { self->state.done(id, attempt, res, report); },
    [self](atom::created, uint64_t id, uint32_t attempt, std::string& response_id) {
      self->state.created(id, attempt, response_id);
    },
    [self](atom::webhook, webhook_delivery& d) { self->state.webhook(d); },
    [self](atom::rejected, std::string& reason) { self->state.rejected(reason); },
    [self](atom::webhook, std::string& verdict) { self->state.webhook_verdict(verdict); },
    [self](atom::failed, uint64_t id, uint32_t attempt, caf::error& err) {
      self->state.failed(id, attempt, err);
    },
    [self](atom::pause, caf::timespan d) { self->state.pause(d); },
    [self](atom::resume) { self->state.resume(); },
    [self](atom::retried, std::string& cause) { self->state.retried(cause); },
    [self](atom::crash, uint32_t slot) { self->state.crash(slot); },
  };
}

} // namespace

pool_actor spawn_worker_pool(caf::actor_system& sys, http_client& client,
                             pool_options opts) {
  auto shared = std::make_shared<const pool_options>(std::move(opts));
  // Spawned with its test hooks; handed out as the pool_actor only.
  pool_actor pool = sys.spawn(pool_behavior, &client, std::move(shared));
  return pool;
}

} // namespace sail
