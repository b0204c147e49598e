// The metering front of a completer: it speaks exactly completer_actor,
// forwards every message to the completer it wraps, and records each
// request's latency and outcome in a request_metrics shared by every front of
// a node (and read by whoever exposes them, e.g. `sail-tinker serve`'s
// /metrics in app/metrics.hpp).
//
//   remote trainer --(completer_actor)--> metering front --> completer --> pool
//
// The front's lifetime follows the completer's (it monitors it and exits with
// its reason). Remote trainers talk to it, so a message that matches no
// handler is dropped unprinted (see actors/service.cpp).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/fwd.hpp>
#include <caf/result.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/timespan.hpp>
#include <caf/typed_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "sail_tinker/messages/interfaces.hpp"

namespace sail {

/// A cumulative histogram with fixed upper bounds (seconds).
struct histogram {
  std::vector<double> bounds;
  /// counts[i]: observations <= bounds[i] that are > bounds[i-1] (not
  /// cumulative); counts.back() holds the ones above every bound.
  std::vector<uint64_t> counts;
  double sum = 0;
  uint64_t count = 0;

  histogram() : histogram(default_latency_bounds()) {}
  explicit histogram(std::vector<double> upper_bounds);
  void observe(double value);
  /// Value at quantile q (0..1) by linear interpolation within a bucket.
  double quantile(double q) const;

  static std::vector<double> default_latency_bounds();
};

/// Request latency and outcome per operation ("sample", "sample_group");
/// thread-safe (the fronts of a node record, a scrape reads).
class request_metrics {
public:
  request_metrics();
  void record(const std::string& op, caf::timespan latency, bool ok);

  struct op_data {
    histogram latency;
    uint64_t ok = 0;
    uint64_t failed = 0;
  };
  std::map<std::string, op_data> snapshot() const;

private:
  mutable std::mutex mtx_;
  std::map<std::string, op_data> ops_;
};

struct metering_state;

using metering_ptr = metering_actor::stateful_pointer<metering_state>;

struct metering_state {
  static inline const char* name = "sail.metering_front";

  explicit metering_state(metering_ptr self) : self(self) {
  }

  metering_ptr self;
  completer_actor inner;
  std::shared_ptr<request_metrics> metrics;

  // -- handlers (one per message of metering_actor) -----------------------------------

  /// Forwarded; its latency and outcome recorded as "sample".
  caf::result<tokens_with_logprobs> sample(sample_request& req);
  /// Forwarded; recorded once (not per member) as "sample_group".
  caf::result<group_result> sample_group(sample_request& req, uint32_t n);
  /// Forwarded (nothing to record: cancel has no answer).
  void cancel(std::string& what);
  /// The completer's counters, unchanged (bounded by 10 s).
  caf::result<completer_stats> stats();
  /// The completer went down: the front exits with its reason.
  void on_down(const caf::down_msg& dm);

private:
  /// Sends xs to the completer with no CAF timeout and answers with its
  /// reply, recording the elapsed time under `op`: the completer answers
  /// every request (its deadline fails a sample typed, and it fails open work
  /// with `cancelled` when it exits), and a request to a completer that is
  /// gone bounces at once.
  template <class T, class... Ts>
  caf::result<T> forward(const char* op, Ts... xs);
};

/// The front's behaviour (only dispatches to metering_state).
metering_actor::behavior_type metering_front(metering_ptr self, completer_actor inner,
                                             std::shared_ptr<request_metrics> metrics);

/// Spawns a metering front around `inner` recording into `metrics`.
metering_actor spawn_metering_front(caf::actor_system& sys, completer_actor inner,
                                    std::shared_ptr<request_metrics> metrics);

} // namespace sail
