// The published front of a service node: trainers on other machines obtain a
// completer for their configuration from it, then talk to that completer
// directly (sample, sample_group, cancel, stats) over the CAF link.
//
//   sail::node_config cfg;                       // io middleman + openssl
//   caf::actor_system sys{cfg};
//   auto rt = sail::runtime::start(sys, sail::runtime_options::from_env());
//   sail::service_options so;  so.port = 4242;
//   auto node = sail::service_node::start(**rt, so);   // publishes
//   ... (*node)->port() ...
//   (*node)->shutdown();                          // unpublish, stop the front
//   (*rt)->shutdown();                            // then the completers
//
// The link is TLS (caf::openssl, mutual authentication) when the system's
// configuration sets any of openssl.certificate / key / cafile / capath, and
// plain BASP otherwise (security = automatic); see docs/cluster.md.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/messages/interfaces.hpp"

namespace sail {

/// Whether node links use caf::openssl.
enum class transport_security : uint8_t {
  /// TLS if the configuration names any certificate, key or CA (then CAF's
  /// OpenSSL module requires mutual authentication), else plain.
  automatic,
  /// Plain BASP over TCP (trusted networks and tests only).
  plain,
  /// caf::openssl; without certificates the link is encrypted but anonymous.
  tls,
};

/// True if any of openssl.certificate, openssl.key, openssl.cafile or
/// openssl.capath is set in `cfg`.
bool tls_configured(const caf::actor_system_config& cfg);

/// Resolves `mode` for `sys`: true for TLS. not_configured if TLS is wanted
/// but the OpenSSL module is not loaded (use node_config).
caf::expected<bool> resolve_tls(caf::actor_system& sys, transport_security mode);

/// Wraps each completer the front creates before it is handed out (e.g. a
/// metering front of the CLI). Must return a handle with the same interface;
/// called once per distinct configuration, inside the front actor.
using completer_decorator = std::function<completer_actor(caf::actor_system&, completer_actor)>;

/// Spawns the front for a runtime: obtain validates the configuration on this
/// node (runtime::make_completer) and hands out one completer per distinct
/// configuration content (equal configurations share a completer). `rt` must
/// outlive the actor: stop the front before the runtime (service_node does).
service_actor spawn_service(caf::actor_system& sys, runtime& rt,
                            completer_decorator decorate = nullptr);

struct service_options {
  /// Interface to listen on ("0.0.0.0" for all, "127.0.0.1" for loopback).
  std::string host = "0.0.0.0";
  /// 0: any free port (see service_node::port()).
  uint16_t port = 0;
  transport_security security = transport_security::automatic;
  /// SO_REUSEADDR on the listening socket.
  bool reuse_address = true;
  /// Bound of each shutdown step.
  caf::timespan shutdown_grace = std::chrono::seconds(5);
  /// Optional wrapper of every completer handed out (see spawn_service).
  completer_decorator decorate;
};

/// Publishes `svc` (plain or caf::openssl, see transport_security); the
/// bound port or the middleman's error.
caf::expected<uint16_t> publish_service(caf::actor_system& sys,
                                        const service_actor& svc,
                                        const service_options& opts);

/// A published service front with ordered, bounded shutdown.
class service_node {
public:
  /// Spawns the front for `rt` and publishes it. The system of `rt` must have
  /// the io middleman loaded (node_config).
  static caf::expected<std::unique_ptr<service_node>> start(runtime& rt,
                                                            service_options opts);

  ~service_node();
  service_node(const service_node&) = delete;
  service_node& operator=(const service_node&) = delete;

  /// The bound port.
  uint16_t port() const noexcept {
    return port_;
  }

  /// True if published with caf::openssl.
  bool tls() const noexcept {
    return tls_;
  }

  service_actor handle() const {
    return front_;
  }

  /// The node's counters (blocking, bounded; never call it from an actor).
  caf::expected<completer_stats> stats(caf::timespan timeout = std::chrono::seconds(10));

  /// Unpublishes (no new connections), then stops the front. Existing links
  /// and completers stay until the runtime / actor system goes down.
  /// Idempotent; call from a non-actor thread.
  void shutdown();

private:
  service_node(caf::actor_system& sys, service_options opts);

  caf::actor_system& sys_;
  service_options opts_;
  service_actor front_;
  uint16_t port_ = 0;
  bool tls_ = false;
  bool stopped_ = false;
};

} // namespace sail
