// sail-tinker resolve: a Tinker checkpoint's signed archive URL (stdout) and
// its expiry (stderr). Needs TINKER_API_KEY only (no Sail key).
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "sail_tinker/actors/resolver.hpp"
#include "sail_tinker/app/cli.hpp"
#include "sail_tinker/app/commands.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/http_client.hpp"
#include "sail_tinker/net/http_date.hpp"
#include "sail_tinker/net/tinker_codec.hpp"

namespace sail::app {

namespace {

constexpr const char* resolve_synopsis
  = "sail-tinker resolve TINKER_PATH [--ttl-seconds N] [--base-url URL]";

constexpr const char* resolve_description
  = "Resolves tinker://<run>/<kind>/<name> to its signed archive URL through the\n"
    "Tinker REST API (TINKER_API_KEY, TINKER_BASE_URL). Prints the URL on stdout\n"
    "and \"expires: <ISO-8601>\" on stderr.";

/// The command line of `sail-tinker resolve`.
command_spec resolve_command() {
  return {resolve_synopsis,
          resolve_description,
          {
            {"ttl-seconds", "N", "set the checkpoint's TTL first (seconds, > 0)"},
            {"base-url", "URL", "Tinker base URL (overrides TINKER_BASE_URL)"},
          },
          1, log_level::warn};
}

std::string env(const char* name) {
  auto* v = std::getenv(name);
  return v == nullptr ? std::string{} : std::string{v};
}

/// `sail-tinker resolve` with its arguments parsed.
int run_resolve(const parsed_args& args, app_config& cfg) {
  if (args.positionals.empty())
    return report_error(invalid_argument("tinker_path", "TINKER_PATH is required"));
  auto path = parse_tinker_path(args.positionals.front());
  if (!path)
    return report_error(path.error());
  resolve_request req{*path, std::nullopt};
  if (auto v = args.get("ttl-seconds")) {
    auto ttl = parse_int("ttl-seconds", *v, 1, INT64_MAX);
    if (!ttl)
      return report_error(ttl.error());
    req.ttl_seconds = *ttl;
  }
  std::string base;
  if (auto v = args.get("base-url")) {
    if (auto err = check_http_url("base-url", *v))
      return report_error(err);
    base = tinker_base_url(*v);
  } else {
    auto checked = checked_tinker_base_url(env("TINKER_BASE_URL"));
    if (!checked)
      return report_error(checked.error());
    base = std::move(*checked);
  }
  auto key = env("TINKER_API_KEY");
  if (auto err = check_tinker_api_key(key))
    return report_error(err);
  auto opts = make_runtime_options(cfg.app, std::nullopt);
  if (!opts)
    return report_error(opts.error());
  auto ropts = opts->resolver;
  ropts.base_url = base;
  ropts.api_key = key;
  int code = exit_ok;
  caf::actor_system sys{cfg};
  boost::asio::io_context io;
  auto client = http_client::make(io, opts->http);
  if (!client)
    return report_error(client.error());
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work;
  work.emplace(io.get_executor());
  std::thread io_thread{[&io] { io.run(); }};
  if (auto resolver = spawn_resolver(sys, *client, ropts); !resolver) {
    code = report_error(resolver.error());
  } else {
    caf::scoped_actor self{sys};
    // Bounded: every REST call has its own timeout and a retry cap; the
    // request timeout is a backstop above that.
    auto bound = ropts.call_timeout * 2 * (ropts.retry.max_attempts + 1)
                 + ropts.retry.still_building_delay * ropts.retry.max_attempts;
    self->request(*resolver, bound, atom::resolve_v, req)
      .receive(
        [&](signed_url& url) {
          std::cout << url.url << std::endl;
          auto tp = std::chrono::time_point_cast<std::chrono::system_clock::duration>(
            url.expires);
          std::cerr << "expires: " << format_iso8601(tp) << std::endl;
        },
        [&](caf::error& err) { code = report_error(err); });
    self->send_exit(*resolver, caf::exit_reason::user_shutdown);
    self->wait_for(*resolver);
  }
  client->close_idle();
  work.reset();
  io.stop();
  io_thread.join();
  return code;
}

} // namespace

int cmd_resolve(const std::vector<std::string>& raw) {
  return run_command<app_config>(raw, resolve_command(), run_resolve);
}

} // namespace sail::app
