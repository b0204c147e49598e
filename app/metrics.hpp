// Observability of a `sail-tinker serve` node: a Prometheus text-format
// renderer and the /metrics HTTP server. The latency histograms come from
// the metering fronts (actors/metering.hpp) that serve puts around each
// completer it hands out.
//
//   GET /metrics --> one-shot scrape actor --(stats)--> service front --> pool
//                    + the fronts' request_metrics -> text format 0.0.4
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/typed_actor.hpp>

#include "sail_tinker/actors/metering.hpp"
#include "sail_tinker/messages/interfaces.hpp"
#include "sail_tinker/net/http_server.hpp"

namespace sail::app {

/// Renders the text exposition format (version 0.0.4).
std::string render_prometheus(const completer_stats& stats,
                              const std::map<std::string, request_metrics::op_data>& ops);

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
