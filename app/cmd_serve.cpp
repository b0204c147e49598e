// sail-tinker serve: a completer service node. It starts the runtime and one
// completer for the given options, publishes the completer (behind a
// metering front) through CAF's middleman on --port, and serves Prometheus
// /metrics on --metrics-port, until SIGINT/SIGTERM.
#include <cstdio>
#include <iostream>

#include <caf/actor_system.hpp>
#include <caf/io/middleman.hpp>
#include <caf/send.hpp>

#include "sail_tinker/app/cli.hpp"
#include "sail_tinker/app/commands.hpp"
#include "sail_tinker/app/metrics.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/validation.hpp"

namespace sail::app {

namespace {

std::vector<flag_spec> serve_flags() {
  std::vector<flag_spec> flags{
    {"host", "HOST", "address to bind both ports (default 127.0.0.1)"},
    {"port", "PORT", "port of the published completer, 0 = any free port (default 0)"},
    {"metrics-port", "PORT", "port of GET /metrics, 0 = any free port (default 0)"},
  };
  for (auto& f : completer_flags(true))
    flags.push_back(f);
  return flags;
}

constexpr const char* serve_synopsis
  = "sail-tinker serve [--host 127.0.0.1] [--port P] [--metrics-port P] --model M "
    "--max-tokens N [completer flags]";

constexpr const char* serve_description
  = "Runs a completer service node: the runtime (HTTP worker pool against Sail,\n"
    "SAIL_API_KEY / SAIL_BASE_URL) and one completer for the given options,\n"
    "published through CAF's middleman (typed completer_actor; connect with\n"
    "`sail-tinker rollout --nodes HOST:PORT`), plus Prometheus text-format\n"
    "GET /metrics on its own port. First stdout lines:\n"
    "  listening on caf://HOST:PORT\n"
    "  listening on http://HOST:METRICS_PORT/metrics\n"
    "Stops cleanly on SIGINT or SIGTERM.";

} // namespace

int cmd_serve(const std::vector<std::string>& raw) {
  auto flags = serve_flags();
  auto args = parse_flags(raw, flags);
  if (!args)
    return report_error(args.error());
  if (args->help) {
    std::cout << usage_text(serve_synopsis, serve_description, flags);
    return exit_ok;
  }
  if (!args->positionals.empty())
    return report_error(invalid_argument("arguments", "unexpected argument \""
                                                        + args->positionals.front() + "\""));
  app_node_config cfg;
  if (auto err = parse_caf_config(cfg, cfg.options(), args->caf_args))
    return report_error(err);
  if (auto err = setup_logging(*args, cfg.tune, log_level::info))
    return report_error(err);
  std::string host = args->get("host").value_or("127.0.0.1");
  uint16_t port = 0;
  uint16_t metrics_port = 0;
  if (auto v = args->get("port")) {
    auto p = parse_int("port", *v, 0, 65535);
    if (!p)
      return report_error(p.error());
    port = static_cast<uint16_t>(*p);
  }
  if (auto v = args->get("metrics-port")) {
    auto p = parse_int("metrics-port", *v, 0, 65535);
    if (!p)
      return report_error(p.error());
    metrics_port = static_cast<uint16_t>(*p);
  }
  for (auto flag : {"model", "max-tokens"})
    if (!args->has(flag))
      return report_error(invalid_argument(flag, std::string{"--"} + flag + " is required"));
  auto ccfg = completer_config_from(*args);
  if (!ccfg)
    return report_error(ccfg.error());
  auto opts = make_runtime_options(cfg.tune, args->get("base-url"));
  if (!opts)
    return report_error(opts.error());
  if (auto err = validate(*ccfg, opts->models))
    return report_error(err);
  // Request bound of the front: the window's deadline plus margins (the
  // completer fails typed before that).
  auto timing = opts->pool.timing(ccfg->completion_window);
  auto front_timeout = timing.deadline + 2 * opts->completer.request_margin;

  block_termination_signals();
  int code = exit_ok;
  caf::actor_system sys{cfg};
  {
    auto rt = runtime::start(sys, std::move(*opts));
    if (!rt)
      return report_error(rt.error());
    auto completer = (*rt)->make_completer(*ccfg);
    if (!completer)
      return report_error(completer.error());
    auto metrics = std::make_shared<request_metrics>();
    auto front = spawn_metering_front(sys, *completer, metrics, front_timeout);
    auto published = sys.middleman().publish(front, port, host.c_str());
    if (!published) {
      caf::anon_send_exit(front, caf::exit_reason::user_shutdown);
      return report_error(make_error(errc::transport_error,
                                     "cannot publish the completer on " + host + ":"
                                       + std::to_string(port) + ": "
                                       + caf::to_string(published.error()),
                                     "port"));
    }
    http_server_options hopts;
    hopts.host = host;
    hopts.port = metrics_port;
    metrics_server ms{sys, front, metrics, hopts};
    if (auto err = ms.start()) {
      caf::anon_send_exit(front, caf::exit_reason::user_shutdown);
      return report_error(err);
    }
    auto shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    std::cout << "listening on caf://" << shown << ':' << *published << '\n'
              << "listening on http://" << shown << ':' << ms.port() << "/metrics"
              << std::endl;
    log_info("serve", "completer node running",
             {{"model", ccfg->model},
              {"window", ccfg->completion_window},
              {"base_url", (*rt)->options().sail_base_url},
              {"completer_port", std::to_string(*published)},
              {"metrics_port", std::to_string(ms.port())}});
    auto sig = wait_for_termination_signal();
    log_info("serve", "stopping", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}});
    ms.stop();
    sys.middleman().unpublish(front, *published);
    caf::anon_send_exit(front, caf::exit_reason::user_shutdown);
    (*rt)->shutdown();
    log_info("serve", "stopped");
  }
  return code;
}

} // namespace sail::app
