#include "sail_tinker/actors/service.hpp"

#include <map>
#include <unordered_map>

#include <caf/binary_serializer.hpp>
#include <caf/config_value.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/openssl/publish.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/settings.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "sail_tinker/actors/bounded_stop.hpp"
#include "sail_tinker/actors/bridge.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/type_ids.hpp"

namespace sail {

namespace {

/// The configuration's content as a byte string: equal contents give equal
/// keys (every field is serialized, maps in key order).
caf::expected<std::string> canonical_key(caf::actor_system& sys,
                                         const completer_config& cfg) {
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  if (auto err = sink(const_cast<completer_config&>(cfg)))
    return invalid_argument("temperature", "configuration is not serializable "
                                           "(non-finite temperature or top_p)");
  return std::string{buf.begin(), buf.end()};
}

struct service_state;

using service_ptr = service_actor::stateful_pointer<service_state>;

struct service_state {
  static inline const char* name = "sail.service";

  explicit service_state(service_ptr self) : self(self) {
  }

  service_ptr self;
  runtime* rt = nullptr;
  completer_decorator decorate;
  /// Canonical configuration (its binary serialization) -> completer.
  std::map<std::string, completer_actor> by_config;
  std::unordered_map<caf::actor_addr, std::string> key_of;

  // -- handlers (one per message of service_actor) --------------------------------------

  /// The completer for `cfg` (one per distinct content) and the node's
  /// webhook, which the cluster pins to the samples it sends here.
  caf::result<completer_actor, webhook_endpoint> obtain(completer_config& cfg) {
    auto key = canonical_key(self->system(), cfg);
    if (!key)
      return std::move(key.error());
    auto hook = rt->webhook();
    if (auto i = by_config.find(*key); i != by_config.end())
      return {i->second, std::move(hook)};
    // Validated here, on the node (with the node's model table).
    auto c = rt->make_completer(std::move(cfg));
    if (!c)
      return std::move(c.error());
    if (decorate) {
      auto wrapped = decorate(self->system(), *c);
      if (!wrapped)
        return make_error(errc::not_configured, "completer decorator returned no actor");
      *c = std::move(wrapped);
    }
    self->monitor(*c);
    key_of.emplace(c->address(), *key);
    by_config.emplace(std::move(*key), *c);
    return {*c, std::move(hook)};
  }

  /// The node's counters: the worker pool's. A pool that ended (nothing
  /// restarts it: docs/architecture.md, "Supervision") is named as such, so
  /// /metrics' 503 says why rather than CAF's "request receiver down".
  caf::result<completer_stats> stats() {
    auto rp = self->make_response_promise<completer_stats>();
    self->request(rt->pool(), std::chrono::seconds(10), atom::stats_v)
      .then([rp](completer_stats& s) mutable { rp.deliver(std::move(s)); },
            [rp](caf::error& err) mutable {
              if (err == caf::sec::request_receiver_down)
                err = make_error(errc::node_down, "the worker pool of this node ended");
              rp.deliver(std::move(err));
            });
    return rp;
  }

  /// A completer handed out went down: the next obtain makes a new one.
  void on_down(caf::down_msg& dm) {
    auto i = key_of.find(dm.source);
    if (i == key_of.end())
      return;
    by_config.erase(i->second);
    key_of.erase(i);
  }
};

service_actor::behavior_type service_behavior(service_ptr self, runtime* rt,
                                              completer_decorator decorate) {
  self->state.rt = rt;
  self->state.decorate = std::move(decorate);
  // A peer's message that matches no handler is dropped unprinted: CAF's
  // default handler stringifies it, and CAF 0.17.6's to_string(caf::duration)
  // reads out of bounds for a unit beyond nanoseconds -- one such message
  // crashed the node (found by fuzz/caf_message_fuzz).
  self->set_default_handler(caf::drop);
  self->set_down_handler([self](caf::down_msg& dm) { self->state.on_down(dm); });
  return {
    [self](atom::obtain, completer_config& cfg) { return self->state.obtain(cfg); },
    [self](atom::stats) { return self->state.stats(); },
  };
}

std::string config_string(const caf::actor_system_config& cfg, const char* key) {
  return caf::get_or(cfg, key, std::string{});
}

} // namespace

bool tls_configured(const caf::actor_system_config& cfg) {
  return !cfg.openssl_certificate.empty() || !cfg.openssl_key.empty()
         || !cfg.openssl_cafile.empty() || !cfg.openssl_capath.empty()
         || !config_string(cfg, "openssl.certificate").empty()
         || !config_string(cfg, "openssl.key").empty()
         || !config_string(cfg, "openssl.cafile").empty()
         || !config_string(cfg, "openssl.capath").empty();
}

caf::expected<bool> resolve_tls(caf::actor_system& sys, transport_security mode) {
  bool tls = mode == transport_security::tls
             || (mode == transport_security::automatic && tls_configured(sys.config()));
  if (!sys.has_middleman())
    return make_error(errc::not_configured,
                      "the io middleman is not loaded (use sail::node_config)");
  if (tls && !sys.has_openssl_manager())
    return make_error(errc::not_configured,
                      "TLS requested but the OpenSSL module is not loaded "
                      "(use sail::node_config)",
                      "openssl");
  return tls;
}

service_actor spawn_service(caf::actor_system& sys, runtime& rt,
                            completer_decorator decorate) {
  return sys.spawn(service_behavior, &rt, std::move(decorate));
}

caf::expected<uint16_t> publish_service(caf::actor_system& sys,
                                        const service_actor& svc,
                                        const service_options& opts) {
  auto tls = resolve_tls(sys, opts.security);
  if (!tls)
    return std::move(tls.error());
  auto* host = opts.host.empty() ? nullptr : opts.host.c_str();
  if (*tls)
    return caf::openssl::publish(svc, opts.port, host, opts.reuse_address);
  return sys.middleman().publish(svc, opts.port, host, opts.reuse_address);
}

// -- service_node ---------------------------------------------------------------------

service_node::service_node(caf::actor_system& sys, service_options opts)
  : sys_(sys), opts_(std::move(opts)) {
}

caf::expected<std::unique_ptr<service_node>> service_node::start(runtime& rt,
                                                                 service_options opts) {
  auto& sys = rt.system();
  auto tls = resolve_tls(sys, opts.security);
  if (!tls)
    return std::move(tls.error());
  std::unique_ptr<service_node> node{new service_node(sys, std::move(opts))};
  node->front_ = spawn_service(sys, rt, node->opts_.decorate);
  node->tls_ = *tls;
  auto o = node->opts_;
  o.security = *tls ? transport_security::tls : transport_security::plain;
  auto port = publish_service(sys, node->front_, o);
  if (!port) {
    node->shutdown();
    return make_error(errc::transport_error,
                      "cannot publish the service on " + o.host + ":"
                        + std::to_string(o.port) + ": " + render(port.error()),
                      "port");
  }
  node->port_ = *port;
  return node;
}

service_node::~service_node() {
  shutdown();
}

caf::expected<completer_stats> service_node::stats(caf::timespan timeout) {
  return blocking_request<completer_stats>(sys_, front_, timeout, atom::stats_v);
}

void service_node::shutdown() {
  if (stopped_)
    return;
  stopped_ = true;
  if (!front_)
    return;
  if (port_ != 0) {
    caf::scoped_actor self{sys_};
    // Published actors live in the one BASP broker, whichever manager
    // published them: the plain middleman actor unpublishes both.
    self->request(sys_.middleman().actor_handle(), opts_.shutdown_grace,
                  caf::unpublish_atom_v, front_.address(), port_)
      .receive([] {}, [](caf::error&) {});
  }
  stop_bounded(sys_, front_, opts_.shutdown_grace);
  front_ = nullptr;
}

} // namespace sail
