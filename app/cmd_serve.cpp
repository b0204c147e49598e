// sail-tinker serve: a completer service node. It starts the runtime (the
// HTTP worker pool against Sail) and publishes the service front through
// CAF's middleman on --port (caf::openssl when openssl.* keys are set):
// trainers obtain a completer for their configuration from it (validated
// here; equal configurations share one completer, each behind a metering
// front), then sample through it. Prometheus /metrics on --metrics-port.
// Runs until SIGINT/SIGTERM.
#include <cstdio>
#include <iostream>

#include <caf/actor_system.hpp>

#include "sail_tinker/actors/service.hpp"
#include "sail_tinker/app/cli.hpp"
#include "sail_tinker/app/commands.hpp"
#include "sail_tinker/app/metrics.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/redact.hpp"

namespace sail::app {

namespace {

std::vector<flag_spec> serve_flags() {
  return {
    {"host", "HOST", "address to bind both ports (default 127.0.0.1; 0.0.0.0 for all)"},
    {"port", "PORT", "port of the published service, 0 = any free port (default 0)"},
    {"metrics-port", "PORT", "port of GET /metrics, 0 = any free port (default 0)"},
    {"base-url", "URL", "Sail base URL (overrides SAIL_BASE_URL)"},
  };
}

constexpr const char* serve_synopsis
  = "sail-tinker serve [--host 127.0.0.1] [--port P] [--metrics-port P] [--base-url URL] "
    "[--openssl.certificate=F --openssl.key=F --openssl.cafile=F] [--middleman.*=...]";

constexpr const char* serve_description
  = "Runs a completer service node: the runtime (HTTP worker pool against Sail,\n"
    "SAIL_API_KEY / SAIL_BASE_URL) and the service front, published through CAF's\n"
    "middleman. Trainers (`sail-tinker rollout --nodes`, sail::cluster) obtain a\n"
    "completer for their configuration from it; the node validates it, and equal\n"
    "configurations share one completer. With --openssl.certificate/key/cafile\n"
    "the link is mutual TLS (peers without a certificate of that CA are refused).\n"
    "Set middleman.heartbeat-interval / connection-timeout on both sides to detect\n"
    "frozen peers. Prometheus text-format GET /metrics on its own port. With\n"
    "--webhook.enabled=true the node receives Sail's completion webhooks\n"
    "([webhook] host, port, public-url, certificate, key; docs/cluster.md).\n"
    "First stdout lines:\n"
    "  listening on caf://HOST:PORT\n"
    "  listening on http://HOST:METRICS_PORT/metrics\n"
    "  webhook receiver on port PORT, Sail calls URL     (with webhooks)\n"
    "Stops cleanly on SIGINT or SIGTERM (open samples are answered `cancelled`;\n"
    "a cluster re-routes them to other nodes).";

caf::expected<uint16_t> port_flag(const parsed_args& args, const std::string& name) {
  if (auto v = args.get(name)) {
    auto p = parse_int(name, *v, 0, 65535);
    if (!p)
      return std::move(p.error());
    return static_cast<uint16_t>(*p);
  }
  return uint16_t{0};
}

} // namespace

int cmd_serve(const std::vector<std::string>& raw) {
  const command_spec spec{serve_synopsis, serve_description, serve_flags(), 0, log_level::info};
  app_node_config cfg;
  int early_exit = exit_ok;
  auto args = begin_command(raw, spec, cfg, early_exit);
  if (!args)
    return early_exit;
  std::string host = args->get("host").value_or("127.0.0.1");
  auto port = port_flag(*args, "port");
  if (!port)
    return report_error(port.error());
  auto metrics_port = port_flag(*args, "metrics-port");
  if (!metrics_port)
    return report_error(metrics_port.error());
  auto opts = make_runtime_options(cfg.tune, args->get("base-url"));
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
  so.shutdown_grace = cfg.tune.shutdown_grace;
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

} // namespace sail::app
