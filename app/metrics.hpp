// Observability of a service node: a metering front for a completer (it
// records request latency and outcome, and forwards everything to the
// completer it wraps), a Prometheus text-format renderer, and the /metrics
// HTTP server.
//
//   remote trainer --(completer_actor)--> metering front --> completer --> pool
//   GET /metrics --> one-shot scrape actor --(stats)--> front --> completer
//                    + the front's latency histograms -> text format 0.0.4
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/timespan.hpp>
#include <caf/typed_actor.hpp>

#include "sail_tinker/messages/interfaces.hpp"
#include "sail_tinker/net/http_server.hpp"

namespace sail::app {

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
/// thread-safe.
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

/// Renders the text exposition format (version 0.0.4).
std::string render_prometheus(const completer_stats& stats,
                              const std::map<std::string, request_metrics::op_data>& ops);

/// Spawns the metering front around `inner`. Forwarded requests carry no CAF
/// timeout: the completer answers every request (its deadline fails a sample
/// typed, and it fails open work with `cancelled` when it exits), and a
/// request to a completer that is gone bounces at once.
completer_actor spawn_metering_front(caf::actor_system& sys, completer_actor inner,
                                     std::shared_ptr<request_metrics> metrics);

/// Whatever answers the counters of a node: a completer, or a service front
/// (all completers of the node, i.e. its worker pool).
using stats_actor = caf::typed_actor<caf::replies_to<atom::stats>::with<completer_stats>>;

/// GET /metrics (and GET /healthz) on its own port.
class metrics_server {
public:
  metrics_server(caf::actor_system& sys, stats_actor source,
                 std::shared_ptr<request_metrics> metrics, http_server_options opts);
  ~metrics_server();

  caf::error start();
  uint16_t port() const noexcept;
  void stop();

private:
  std::unique_ptr<http_server> server_;
};

} // namespace sail::app
