// sail-tinker serve: a completer service node. It starts the runtime (the
// HTTP worker pool against Sail) and publishes the service front through
// CAF's middleman on --port (caf::openssl when openssl.* keys are set):
// trainers obtain a completer for their configuration from it (validated
// here; equal configurations share one completer, each behind a metering
// front), then sample through it. Prometheus /metrics on --metrics-port.
// Runs until SIGINT/SIGTERM.
//
// Exposure: a --host that is not loopback needs complete mutual
// TLS (openssl.certificate, .key, .cafile/.capath), else serve exits 2 naming
// those keys -- unless --insecure-plaintext is given, which is warned about
// at every start. /metrics binds the same --host without such a rule: it
// answers GET/HEAD /metrics and /healthz only, with counters, latency
// histograms and the version (no configuration, key, prompt or control);
// see docs/operations.md.
#include <cstdio>
#include <iostream>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/settings.hpp>

#include "sail_tinker/actors/metering.hpp"
#include "sail_tinker/actors/service.hpp"
#include "sail_tinker/app/cli.hpp"
#include "sail_tinker/app/commands.hpp"
#include "sail_tinker/app/metrics.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/redact.hpp"

namespace sail::app {

namespace {

constexpr const char* serve_synopsis
  = "sail-tinker serve [--host 127.0.0.1] [--port P] [--metrics-port P] [--base-url URL] "
    "[--openssl.certificate=F --openssl.key=F --openssl.cafile=F | --insecure-plaintext] "
    "[--middleman.*=...]";

constexpr const char* serve_description
  = "Runs a completer service node: the runtime (HTTP worker pool against Sail,\n"
    "SAIL_API_KEY / SAIL_BASE_URL) and the service front, published through CAF's\n"
    "middleman. Trainers (`sail-tinker rollout --nodes`, sail::cluster) obtain a\n"
    "completer for their configuration from it; the node validates it, and equal\n"
    "configurations share one completer. With --openssl.certificate/key/cafile\n"
    "the link is mutual TLS (peers without a certificate of that CA are refused).\n"
    "A --host other than loopback (127.0.0.0/8, ::1, localhost) requires all three\n"
    "(anyone reaching a plaintext node can obtain a completer and spend its Sail\n"
    "key); --insecure-plaintext overrides that on trusted networks, with a warning.\n"
    "Set middleman.heartbeat-interval / connection-timeout on both sides to detect\n"
    "frozen peers. Prometheus text-format GET /metrics on its own port. With\n"
    "--webhook.enabled the node receives Sail's completion webhooks\n"
    "([webhook] host, port, public-url, certificate, key; docs/cluster.md).\n"
    "First stdout lines:\n"
    "  listening on caf://HOST:PORT\n"
    "  listening on http://HOST:METRICS_PORT/metrics\n"
    "  webhook receiver on port PORT, Sail calls URL     (with webhooks)\n"
    "Stops cleanly on SIGINT or SIGTERM (open samples are answered `cancelled`;\n"
    "a cluster re-routes them to other nodes).";

/// The command line of `sail-tinker serve`.
command_spec serve_command() {
  return {serve_synopsis,
          serve_description,
          {
            {"host", "HOST", "address to bind both ports (default 127.0.0.1; 0.0.0.0 for all: "
                             "off loopback the node needs mutual TLS or --insecure-plaintext)"},
            {"port", "PORT", "port of the published service, 0 = any free port (default 0)"},
            {"metrics-port", "PORT", "port of GET /metrics, 0 = any free port (default 0)"},
            {"base-url", "URL", "Sail base URL (overrides SAIL_BASE_URL)"},
            {"insecure-plaintext", "",
             "allow a plaintext node on a non-loopback --host (trusted networks only; "
             "warned at every start)"},
          },
          0, log_level::info};
}

caf::expected<uint16_t> port_flag(const parsed_args& args, const std::string& name) {
  if (auto v = args.get(name)) {
    auto p = parse_int(name, *v, 0, 65535);
    if (!p)
      return std::move(p.error());
    return static_cast<uint16_t>(*p);
  }
  return uint16_t{0};
}

/// Which of the keys of mutual TLS (docs/cluster.md) the configuration sets.
struct tls_keys {
  bool certificate = false;
  bool key = false;
  bool ca = false;  ///< openssl.cafile or openssl.capath

  bool any() const noexcept {
    return certificate || key || ca;
  }

  bool complete() const noexcept {
    return certificate && key && ca;
  }
};

tls_keys configured_tls_keys(const caf::actor_system_config& cfg) {
  auto set = [&cfg](const std::string& member, const char* key) {
    return !member.empty() || !caf::get_or(cfg, key, std::string{}).empty();
  };
  tls_keys k;
  k.certificate = set(cfg.openssl_certificate, "openssl.certificate");
  k.key = set(cfg.openssl_key, "openssl.key");
  k.ca = set(cfg.openssl_cafile, "openssl.cafile") || set(cfg.openssl_capath, "openssl.capath");
  return k;
}

/// The rule for binding off loopback: a node whose --host is not
/// loopback needs complete mutual TLS, unless --insecure-plaintext is given.
/// CAF's BASP trusts its peers: whoever reaches a plaintext node can obtain a
/// completer and spend the node's Sail key. A partial openssl.* set is refused
/// off loopback whatever the flag says (it would be neither plaintext nor
/// working TLS). Loopback binds are unchanged.
caf::error check_exposure(const std::string& host, const tls_keys& tls, bool insecure) {
  if (is_loopback_host(host))
    return caf::none;
  const std::string tls_flags
    = "--openssl.certificate=FILE --openssl.key=FILE --openssl.cafile=FILE "
      "(or openssl.capath; the same keys in caf-application.ini, see docs/cluster.md)";
  if (tls.any() && !tls.complete()) {
    std::string missing;
    auto add = [&missing](const char* key) {
      missing += missing.empty() ? "" : ", ";
      missing += key;
    };
    if (!tls.certificate)
      add("openssl.certificate");
    if (!tls.key)
      add("openssl.key");
    if (!tls.ca)
      add("openssl.cafile or openssl.capath");
    return invalid_argument("openssl", "incomplete mutual TLS configuration for --host "
                                         + host + " (missing " + missing + "): a node "
                                         "off loopback needs " + tls_flags);
  }
  if (!tls.any() && !insecure)
    return invalid_argument(
      "host", "refusing to serve plaintext on the non-loopback address '" + host
                + "': anyone who reaches the port could obtain a completer and spend "
                  "this node's Sail key. Configure mutual TLS with " + tls_flags
                + ", bind loopback (--host 127.0.0.1), or pass --insecure-plaintext "
                  "on a trusted network");
  return caf::none;
}

/// `sail-tinker serve` with its arguments parsed.
int run_serve(const parsed_args& args, app_node_config& cfg) {
  std::string host = args.get("host").value_or("127.0.0.1");
  auto port = port_flag(args, "port");
  if (!port)
    return report_error(port.error());
  auto metrics_port = port_flag(args, "metrics-port");
  if (!metrics_port)
    return report_error(metrics_port.error());
  auto tls = configured_tls_keys(cfg);
  bool insecure = args.has("insecure-plaintext");
  if (auto err = check_exposure(host, tls, insecure))
    return report_error(err);
  auto opts = make_runtime_options(cfg.app, args.get("base-url"));
  if (!opts)
    return report_error(opts.error());

  block_termination_signals();
  caf::actor_system sys{cfg};
  auto rt = runtime::start(sys, std::move(*opts));
  if (!rt)
    return report_error(rt.error());
  auto metrics = std::make_shared<request_metrics>();
  service_options so;
  so.host = host;
  so.port = *port;
  so.shutdown_grace = cfg.app.runtime.shutdown_grace;
  so.decorate = [metrics](caf::actor_system& s, completer_actor c) {
    return spawn_metering_front(s, std::move(c), metrics);
  };
  auto node = service_node::start(**rt, std::move(so));
  if (!node) {
    (*rt)->shutdown();
    return report_error(node.error());
  }
  http_server_options hopts;
  hopts.host = host;
  hopts.port = *metrics_port;
  metrics_server ms{sys, (*node)->handle(), metrics, hopts};
  if (auto err = ms.start()) {
    (*node)->shutdown();
    (*rt)->shutdown();
    return report_error(err);
  }
  if (insecure && !tls.any() && !is_loopback_host(host))
    log_warn("serve", "INSECURE: plaintext CAF node on a non-loopback address "
                      "(--insecure-plaintext); any peer that reaches the port can "
                      "obtain a completer and spend this node's Sail key",
             {{"host", host}, {"port", std::to_string((*node)->port())}});
  else if (insecure && tls.complete())
    log_warn("serve", "--insecure-plaintext has no effect: mutual TLS is configured");
  auto shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  std::cout << "listening on caf://" << shown << ':' << (*node)->port() << '\n'
            << "listening on http://" << shown << ':' << ms.port() << "/metrics" << std::endl;
  if (auto hook = (*rt)->webhook(); !hook.empty())
    std::cout << "webhook receiver on port " << (*rt)->webhook_port() << ", Sail calls "
              << redact_url(hook.url) << std::endl;
  log_info("serve", "service node running",
           {{"base_url", (*rt)->options().sail_base_url},
            {"port", std::to_string((*node)->port())},
            {"tls", (*node)->tls() ? "true" : "false"},
            {"metrics_port", std::to_string(ms.port())}});
  auto sig = wait_for_termination_signal();
  log_info("serve", "stopping", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}});
  // No new links, then the front, then the completers (they answer open
  // samples `cancelled`) and the pool; the links close with the system.
  ms.stop();
  (*node)->shutdown();
  (*rt)->shutdown();
  log_info("serve", "stopped");
  return exit_ok;
}

} // namespace

int cmd_serve(const std::vector<std::string>& raw) {
  return run_command<app_node_config>(raw, serve_command(), run_serve);
}

} // namespace sail::app
