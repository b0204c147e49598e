// Watching a runtime's worker pool from a test: a pool_observer
// (actors/worker_pool.hpp) that test_runtime_options installs, so a test
// can crash one of the pool's workers and wait for a change of the pool's
// counters without polling. Production pools have no observer.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

#include <caf/scoped_actor.hpp>

#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/actors/worker_pool.hpp"

namespace sail::test {

class pool_probe : public pool_observer {
public:
  void worker_started(size_t slot, const http_worker_actor& worker) override {
    std::lock_guard<std::mutex> guard{mtx_};
    if (workers_.size() <= slot)
      workers_.resize(slot + 1);
    workers_[slot] = worker;
  }

  void changed(const std::function<completer_stats()>& counters) override {
    std::lock_guard<std::mutex> guard{mtx_};
    if (waiters_.empty())
      return;
    auto s = counters();
    for (auto& w : waiters_)
      if (!w.held && w.pred(s))
        w.held = true;
    cv_.notify_all();
  }

  /// The worker the pool spawned last into `slot` (null if none).
  http_worker_actor worker(size_t slot) {
    std::lock_guard<std::mutex> guard{mtx_};
    return slot < workers_.size() ? workers_[slot] : http_worker_actor{};
  }

  /// Waits until `pred` holds for the counters of `pool`: checked once
  /// through the pool's stats message, then after every message the pool
  /// handles; false if it did not within `bound`.
  bool wait(caf::actor_system& sys, const pool_actor& pool,
            std::function<bool(const completer_stats&)> pred, caf::timespan bound) {
    auto deadline = std::chrono::steady_clock::now() + bound;
    std::list<waiter>::iterator me;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      me = waiters_.insert(waiters_.end(), waiter{std::move(pred), false});
    }
    // Registered first, so a change after this answer is seen by changed().
    caf::scoped_actor self{sys};
    self->request(pool, bound, atom::stats_v)
      .receive(
        [&](completer_stats& s) {
          std::lock_guard<std::mutex> guard{mtx_};
          if (me->pred(s))
            me->held = true;
        },
        [](caf::error&) {});
    std::unique_lock<std::mutex> lock{mtx_};
    cv_.wait_until(lock, deadline, [&] { return me->held; });
    bool held = me->held;
    waiters_.erase(me);
    return held;
  }

private:
  struct waiter {
    std::function<bool(const completer_stats&)> pred;
    bool held;
  };

  std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<http_worker_actor> workers_;
  std::list<waiter> waiters_;
};

/// The probe test_runtime_options installed in `rt`'s pool.
inline pool_probe& probe_of(runtime& rt) {
  auto p = std::dynamic_pointer_cast<pool_probe>(rt.options().pool.observer);
  if (!p)
    throw std::logic_error("the runtime's pool has no pool_probe (test_runtime_options)");
  return *p;
}

/// Makes the worker in `slot` of the pool of `rt` end as if its handler had
/// thrown (CAF ends such an actor with sec::runtime_error).
inline void crash_worker(runtime& rt, uint32_t slot) {
  auto w = probe_of(rt).worker(slot);
  if (!w)
    throw std::logic_error("no worker in that slot");
  caf::scoped_actor self{rt.system()};
  self->send_exit(w, caf::make_error(caf::sec::runtime_error,
                                     std::string{"crash injected by the test"}));
}

/// Waits until `pred` holds for the counters of the pool of `rt`: the probe
/// hears of every message the pool handled (no polling); false if it did not
/// within `bound`.
inline bool wait_for_pool(runtime& rt, std::function<bool(const completer_stats&)> pred,
                          caf::timespan bound = std::chrono::seconds(60)) {
  return probe_of(rt).wait(rt.system(), rt.pool(), std::move(pred), bound);
}

} // namespace sail::test
