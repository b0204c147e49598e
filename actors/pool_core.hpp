// The worker pool's decisions as a plain state machine: no actors, no HTTP,
// no clock of its own (the caller passes `now`). The pool actor
// (worker_pool.cpp) drives it and does the messaging; tests/test_pool_core.cpp
// drives it directly.
//
// Why a class rather than CAF 0.17's test coordinator (caf/test/dsl.hpp):
// the pool's workers do HTTP on Asio threads, which the coordinator does not
// control, and the decisions themselves are bookkeeping.
// As a class they are tested one call at a time with a made-up clock, no
// actor system, no sockets, nothing timed.
//
// - Admission: a job runs at once while fewer than max_in_flight run and the
//   pool is not paused; else it waits in a FIFO queue of at most max_queued;
//   beyond that it is refused (the pool answers `overloaded`).
// - Placement: the worker slot running the fewest jobs (the first such).
// - Pause (a 429/529): nothing is placed until the pause ends; admitted work
//   waits in the queue meanwhile.
// - Worker loss: counted against the restart intensity (more than
//   max_restarts within restart_window: give up); else the worker restarts,
//   its slot starts over empty and each of its jobs is placed again (its
//   next dispatch), unless it has had max_dispatch_attempts dispatches: then
//   it is abandoned.
// - Dispatches: every placement is a new dispatch number; a worker's report
//   counts only for the job's current dispatch (an earlier one is stale).
#pragma once

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include <caf/timespan.hpp>

namespace sail {

/// The bounds a pool decides by (the pool actor takes them from pool_options).
struct pool_limits {
  /// Worker slots (at least one is used).
  size_t slots;
  size_t max_in_flight;
  size_t max_queued;
  uint32_t max_dispatch_attempts;
  uint32_t max_restarts;
  caf::timespan restart_window;
};

/// Restart intensity, as Erlang/OTP supervisors bound it: more than
/// max_restarts restarts within any restart_window means give up.
class restart_intensity {
public:
  using clock_type = std::chrono::steady_clock;

  restart_intensity(uint32_t max_restarts, caf::timespan window);

  /// Counts a restart at `now`; false when that makes more than max_restarts
  /// within the window.
  bool allow(clock_type::time_point now);

private:
  uint32_t max_restarts_;
  caf::timespan window_;
  std::deque<clock_type::time_point> at_;
};

/// The decisions of a pool whose jobs each carry a `Payload` (what the caller
/// needs to answer and route them; the core never looks inside).
template <class Payload>
class pool_core {
public:
  using clock_type = std::chrono::steady_clock;

  /// One job the pool holds, from admission until release.
  struct entry {
    Payload payload;
    /// Dispatches so far, which also numbers the current one (0: never
    /// dispatched yet).
    uint32_t dispatch = 0;
    /// The worker slot running it; -1 while it waits in the queue.
    int32_t slot = -1;
  };

  enum class admission {
    run,        ///< placed at once
    wait,       ///< queued
    overloaded, ///< refused
  };

  /// What a pause did.
  struct pause_outcome {
    /// The pool was not paused before.
    bool started = false;
    /// Call resume() after this long; none when a pause already armed lasts
    /// at least as long.
    std::optional<caf::timespan> resume_after;
  };

  explicit pool_core(const pool_limits& limits)
    : limits_(limits),
      load_(std::max<size_t>(1, limits.slots), 0),
      restarts_(limits.max_restarts, limits.restart_window) {
  }

  // -- admission and placement ----------------------------------------------------------

  /// What a job arriving now gets.
  admission admit() const {
    if (can_run())
      return admission::run;
    return queued_ < limits_.max_queued ? admission::wait : admission::overloaded;
  }

  /// Adds job `id` (new) as admitted by admit(): `run` places it at once (its
  /// entry names slot and dispatch: send it), `wait` queues it.
  entry& add(uint64_t id, Payload payload, admission how) {
    assert(how != admission::overloaded);
    auto [i, added] = entries_.emplace(id, entry{std::move(payload)});
    assert(added);
    (void) added;
    auto& e = i->second;
    if (how == admission::run) {
      ++active_;
      place(e);
    } else {
      queue_.push_back(id);
      ++queued_;
    }
    return e;
  }

  /// Places queued jobs, oldest first, while there is room;
  /// `dispatch(id, entry&)` for each (it must not add or release jobs).
  template <class Dispatch>
  void pump(Dispatch&& dispatch) {
    while (can_run() && !queue_.empty()) {
      auto id = queue_.front();
      queue_.pop_front();
      auto i = entries_.find(id);
      if (i == entries_.end() || i->second.slot >= 0)
        continue; // released while it waited
      --queued_;
      ++active_;
      place(i->second);
      dispatch(id, i->second);
    }
  }

  /// Forgets job `id` (answered, failed or cancelled) and frees its place;
  /// returns its payload, none if the job is unknown.
  std::optional<Payload> release(uint64_t id) {
    auto i = entries_.find(id);
    if (i == entries_.end())
      return std::nullopt;
    auto& e = i->second;
    if (e.slot >= 0) {
      --load_[static_cast<size_t>(e.slot)];
      --active_;
    } else {
      --queued_; // its id stays in the queue; pump() skips it
    }
    std::optional<Payload> result{std::move(e.payload)};
    entries_.erase(i);
    return result;
  }

  /// Takes every job out (shutdown, giving up): `each(id, Payload&)` for each.
  template <class F>
  void clear(F&& each) {
    for (auto& [id, e] : entries_)
      each(id, e.payload);
    entries_.clear();
    queue_.clear();
    std::fill(load_.begin(), load_.end(), size_t{0});
    queued_ = 0;
    active_ = 0;
  }

  // -- lookups --------------------------------------------------------------------------

  entry* find(uint64_t id) {
    auto i = entries_.find(id);
    return i != entries_.end() ? &i->second : nullptr;
  }

  /// Job `id` if `dispatch` is its current dispatch; null for a job that
  /// ended and for a stale report of an earlier dispatch.
  entry* current(uint64_t id, uint32_t dispatch) {
    auto* e = find(id);
    return e != nullptr && e->dispatch == dispatch ? e : nullptr;
  }

  // -- pause ----------------------------------------------------------------------------

  /// A 429/529 at `now`: no placements before now + d (d <= 0 counts as 1 s).
  pause_outcome pause(clock_type::time_point now, caf::timespan d) {
    if (d.count() <= 0)
      d = std::chrono::seconds(1);
    auto until = now + d;
    pause_outcome out;
    if (paused_ && until <= paused_until_)
      return out;
    paused_until_ = until;
    out.started = !paused_;
    paused_ = true;
    out.resume_after = d;
    return out;
  }

  /// A resume timer fired at `now`: true if the pause is over (then pump()).
  bool resume(clock_type::time_point now) {
    if (!paused_ || now < paused_until_)
      return false;
    paused_ = false;
    return true;
  }

  // -- supervision ----------------------------------------------------------------------

  /// A worker died at `now`: false when that makes more than max_restarts
  /// within restart_window (give up: the caller fails everything; nothing
  /// changed here), else restart it, then restart_slot().
  bool restart_allowed(clock_type::time_point now) {
    return restarts_.allow(now);
  }

  /// The worker in `slot` was replaced: the slot starts over empty and each
  /// of its jobs is placed again, `redispatch(id, entry&)` (its next
  /// dispatch), or, after max_dispatch_attempts dispatches, taken out:
  /// `abandon(id, Payload&&, dispatches)`. Then pump().
  template <class Redispatch, class Abandon>
  void restart_slot(size_t slot, Redispatch&& redispatch, Abandon&& abandon) {
    load_[slot] = 0;
    // Collect first: abandoning erases from entries_ being iterated.
    std::vector<uint64_t> orphaned;
    for (auto& [id, e] : entries_)
      if (e.slot == static_cast<int32_t>(slot))
        orphaned.push_back(id);
    for (auto id : orphaned) {
      auto i = entries_.find(id);
      auto& e = i->second;
      e.slot = -1;
      if (e.dispatch >= limits_.max_dispatch_attempts) {
        auto dispatches = e.dispatch;
        auto payload = std::move(e.payload);
        entries_.erase(i);
        --active_; // it counted as running, not as waiting
        abandon(id, std::move(payload), dispatches);
        continue;
      }
      place(e);
      redispatch(id, e);
    }
  }

  // -- state ----------------------------------------------------------------------------

  size_t active() const {
    return active_;
  }

  size_t queued() const {
    return queued_;
  }

  /// Admitted and not yet released: running plus waiting.
  size_t in_flight() const {
    return active_ + queued_;
  }

  bool paused() const {
    return paused_;
  }

  size_t slots() const {
    return load_.size();
  }

  /// Jobs running in `slot`.
  size_t load(size_t slot) const {
    return load_[slot];
  }

private:
  bool can_run() const {
    return !paused_ && active_ < limits_.max_in_flight;
  }

  /// Puts `e` on the least loaded slot as its next dispatch.
  void place(entry& e) {
    auto best = std::min_element(load_.begin(), load_.end());
    ++*best;
    e.slot = static_cast<int32_t>(best - load_.begin());
    ++e.dispatch;
  }

  pool_limits limits_;
  std::unordered_map<uint64_t, entry> entries_;
  /// Ids in arrival order; may hold ids released while they waited.
  std::deque<uint64_t> queue_;
  size_t queued_ = 0;
  size_t active_ = 0;
  /// Jobs running per slot.
  std::vector<size_t> load_;
  bool paused_ = false;
  clock_type::time_point paused_until_;
  restart_intensity restarts_;
};

} // namespace sail
