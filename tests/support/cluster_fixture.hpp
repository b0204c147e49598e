// Several actor systems in one test process talking over real loopback
// sockets: service nodes (each with its own runtime against one shared
// emulator) and a trainer system with a cluster. Plus a TCP relay that can
// cut a link abruptly (like SIGKILL of the node) or freeze it (like SIGSTOP).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "sail_tinker/actors/cluster.hpp"
#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/actors/service.hpp"
#include "sail_tinker/actors/system_config.hpp"
#include "sail_tinker/emulator/emulator.hpp"

namespace sail::test {

/// TLS material for one system (empty strings: not set).
struct tls_files {
  std::string cert;
  std::string key;
  std::string cafile;
};

/// node_config with fast failure detection for tests (heartbeat 200 ms,
/// connection timeout 1 s), optional TLS files and app identifier.
void configure_test_node(node_config& cfg, const tls_files& tls = {},
                         std::optional<std::string> app_id = std::nullopt);

/// A service node: actor system, runtime against the emulator, published
/// front on 127.0.0.1.
class test_node {
public:
  struct settings {
    tls_files tls;
    std::optional<std::string> app_id;
    transport_security security = transport_security::automatic;
    /// Worker pool size of the node's runtime.
    size_t workers = 4;
    /// Last changes to the node's runtime options (e.g. its webhook).
    std::function<void(runtime_options&)> tweak;
  };

  test_node(emulator::server& emu, settings s);
  explicit test_node(emulator::server& emu) : test_node(emu, settings{}) {}
  ~test_node();

  uint16_t port() const;
  caf::actor_system& system() { return *sys_; }
  runtime& rt() { return *rt_; }
  service_node& service() { return *svc_; }

  /// The node's counters (its worker pool).
  completer_stats stats();

  /// Graceful stop: unpublish, stop the front, stop the runtime (open
  /// samples are answered `cancelled`), destroy the actor system.
  void stop();

private:
  node_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::unique_ptr<runtime> rt_;
  std::unique_ptr<service_node> svc_;
};

/// A trainer system with a cluster over `nodes`.
class test_trainer {
public:
  test_trainer(std::vector<node_address> nodes, completer_config cfg,
               const std::function<void(cluster_options&)>& tweak = {},
               const tls_files& tls = {},
               std::optional<std::string> app_id = std::nullopt);
  ~test_trainer();

  cluster& cl() { return *cl_; }
  caf::actor_system& system() { return *sys_; }

  /// Shuts the cluster down and destroys the actor system.
  void stop();

private:
  node_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::unique_ptr<cluster> cl_;
};

/// The emulator's toy model with `max_tokens` output tokens.
completer_config toy_config(int64_t max_tokens = 8);

/// A small prompt that differs with `i` (the same `i`, the same prompt).
sample_request numbered_prompt(int64_t i);

/// Test emulator options with two threads and `queued` latency on the
/// priority window (how long each sample stays in flight).
emulator::options emulator_with_queue(std::chrono::milliseconds queued);

/// Total POST arrivals in the emulator's statistics (first sends and
/// replays of every Idempotency-Key).
size_t post_arrivals(const emulator::stats& st);

/// Waits (bounded by 60 s, woken by the emulator's counter updates) until
/// the emulator has recorded at least `n` POST arrivals.
bool wait_for_post_arrivals(const emulator::server& emu, size_t n);

/// Cluster options for tests: short connect/retry/queue timeouts.
cluster_options test_cluster_options(std::vector<node_address> nodes, completer_config cfg);

/// A TCP forwarder 127.0.0.1:port() -> 127.0.0.1:target.
class tcp_relay {
public:
  explicit tcp_relay(uint16_t target);
  ~tcp_relay();
  tcp_relay(const tcp_relay&) = delete;
  tcp_relay& operator=(const tcp_relay&) = delete;

  uint16_t port() const;

  /// Closes every connection with RST and the listening socket: peers see
  /// the link drop at once, reconnects are refused (a killed process).
  void cut();

  /// Stops forwarding in both directions and serves no new connection, but
  /// keeps every socket open (a stopped process).
  void freeze();

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace sail::test
