// sail-tinker emulate: runs the Sail + Tinker emulator until SIGINT/SIGTERM.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "sail_tinker/app/cli.hpp"
#include "sail_tinker/app/commands.hpp"
#include "sail_tinker/app/emulator_flags.hpp"
#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/messages/error.hpp"

namespace sail::app {

namespace {

std::vector<flag_spec> emulate_flags() {
  std::vector<flag_spec> flags{
    {"host", "HOST", "address to bind (default 127.0.0.1)"},
    {"port", "PORT", "port to bind, 0 = any free port (default 0)"},
    {"api-key", "KEY", "Sail API key the emulator accepts (default sk_emulator_key)"},
    {"tinker-api-key", "KEY", "Tinker API key the emulator accepts (default tml-emulator-key)"},
    {"seed", "N", "seed of the toy model (default 42)"},
    {"threads", "N", "threads of the emulator (default 2)"},
    {"archive-mode", "MODE", "Tinker archive answer: redirect (302, default) | json (200)"},
    {"still-building", "N", "archive calls per checkpoint answered 503 \"still building\" first"},
    {"known-lora", "NAME", "a LoRA name the emulator knows (besides emulator-lora)", true},
    {"default-max-output-tokens", "N", "output length without max_output_tokens (default 16)"},
    {"status-vocabulary", "V",
     "status words of unfinished responses: guides (queued/in_progress, default) | openapi "
     "(pending/running)"},
    {"model-windows", "MODEL=W1,W2",
     "windows MODEL supports; any other explicit window is a 400 (repeatable; models not "
     "listed support every window)",
     true},
    {"request-log", "N", "keep the last N requests in the request log (GET /_emulator/requests; "
                         "default 0 = off)"},
    {"archive-url-ttl-ms", "MS", "lifetime of the signed archive URLs handed out (default 900000)"},
    {"webhook-timeout-ms", "MS", "timeout of one webhook delivery attempt (default 30000)"},
    {"webhook-ca-file", "PEM", "CA certificate https:// webhook receivers are verified against "
                               "(default: the system's CAs)"},
    {"completed-at", "", "terminal responses carry completed_at (epoch seconds, ms fraction; "
                         "not in Sail's OpenAPI document)"},
    {"wire-variant", emulator::wire_variant_list("|"),
     "depart from the guessed wire details as one [wire] alternative expects (docs/operations.md, "
     "\"Checking the wire details\")",
     true},
  };
  for (auto& f : emulator_fault_latency_flags(""))
    flags.push_back(f);
  return flags;
}

constexpr const char* emulate_synopsis
  = "sail-tinker emulate [--host 127.0.0.1] [--port 0] [--api-key KEY] "
    "[fault and latency flags]";

constexpr const char* emulate_description
  = "Runs the in-process emulator of Sail's raw-token Responses API and Tinker's\n"
    "checkpoint REST calls. The first stdout line is exactly\n"
    "  listening on http://HOST:PORT\n"
    "Stops cleanly on SIGINT or SIGTERM. Latency flags apply to every completion\n"
    "window (asap, priority, balanced, standard, flex). Statistics: GET /_emulator/stats;\n"
    "request log: GET /_emulator/requests. A request's metadata key emulator_outcome =\n"
    "completed | incomplete | failed | cancelled chooses how its response ends.";

/// The command line of `sail-tinker emulate`.
command_spec emulate_command() {
  return {emulate_synopsis, emulate_description, emulate_flags(), 0, log_level::info};
}

/// `sail-tinker emulate` with its arguments parsed (its configuration sets the log only).
int run_emulate(const parsed_args& args, app_config&) {
  emulator::options opts;
  if (auto v = args.get("host"))
    opts.host = *v;
  if (auto v = args.get("port")) {
    auto port = parse_int("port", *v, 0, 65535);
    if (!port)
      return report_error(port.error());
    opts.port = static_cast<uint16_t>(*port);
  }
  if (auto v = args.get("api-key")) {
    if (v->empty())
      return report_error(invalid_argument("api-key", "--api-key must not be empty"));
    opts.sail_api_key = *v;
  }
  if (auto v = args.get("tinker-api-key")) {
    if (v->empty())
      return report_error(invalid_argument("tinker-api-key", "--tinker-api-key must not be empty"));
    opts.tinker_api_key = *v;
  }
  if (auto v = args.get("seed")) {
    auto seed = parse_int("seed", *v, 0, INT64_MAX);
    if (!seed)
      return report_error(seed.error());
    opts.seed = static_cast<uint64_t>(*seed);
  }
  if (auto v = args.get("threads")) {
    auto n = parse_int("threads", *v, 1, 256);
    if (!n)
      return report_error(n.error());
    opts.threads = static_cast<size_t>(*n);
  }
  if (auto v = args.get("archive-mode")) {
    if (*v == "redirect")
      opts.archive = emulator::archive_mode::redirect;
    else if (*v == "json")
      opts.archive = emulator::archive_mode::json;
    else
      return report_error(invalid_argument("archive-mode", "--archive-mode: expected redirect or json"));
  }
  if (auto v = args.get("still-building")) {
    auto n = parse_int("still-building", *v, 0, 1'000'000);
    if (!n)
      return report_error(n.error());
    opts.still_building_calls = static_cast<int>(*n);
  }
  for (auto& name : args.all("known-lora"))
    opts.known_loras.insert(name);
  if (auto v = args.get("default-max-output-tokens")) {
    auto n = parse_int("default-max-output-tokens", *v, 1, 1'000'000);
    if (!n)
      return report_error(n.error());
    opts.default_max_output_tokens = *n;
  }
  if (auto v = args.get("status-vocabulary")) {
    if (*v == "guides")
      opts.vocabulary = emulator::status_vocabulary::guides;
    else if (*v == "openapi")
      opts.vocabulary = emulator::status_vocabulary::openapi;
    else
      return report_error(invalid_argument("status-vocabulary",
                                           "--status-vocabulary: expected guides or openapi"));
  }
  for (auto& spec : args.all("model-windows")) {
    auto eq = spec.find('=');
    if (eq == std::string::npos || eq == 0)
      return report_error(invalid_argument("model-windows",
                                           "--model-windows: expected MODEL=W1,W2, got \"" + spec
                                             + "\""));
    auto& ws = opts.model_windows[spec.substr(0, eq)];
    size_t pos = eq + 1;
    for (;;) {
      auto comma = spec.find(',', pos);
      auto w = spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      auto& known = emulator::known_windows();
      if (std::find(known.begin(), known.end(), w) == known.end())
        return report_error(invalid_argument("model-windows",
                                             "--model-windows: unknown window \"" + w + "\""));
      ws.insert(w);
      if (comma == std::string::npos)
        break;
      pos = comma + 1;
    }
  }
  if (auto v = args.get("request-log")) {
    auto n = parse_int("request-log", *v, 0, 10'000'000);
    if (!n)
      return report_error(n.error());
    opts.request_log_capacity = static_cast<size_t>(*n);
  }
  if (auto v = args.get("archive-url-ttl-ms")) {
    auto n = parse_int("archive-url-ttl-ms", *v, 1, 365LL * 24 * 3600 * 1000);
    if (!n)
      return report_error(n.error());
    opts.archive_url_ttl = std::chrono::milliseconds(*n);
  }
  if (auto v = args.get("webhook-ca-file"))
    opts.webhook_ca_file = *v;
  if (args.has("completed-at"))
    opts.emit_completed_at = true;
  if (auto v = args.get("webhook-timeout-ms")) {
    auto n = parse_int("webhook-timeout-ms", *v, 1, 3'600'000);
    if (!n)
      return report_error(n.error());
    opts.webhook_timeout = std::chrono::milliseconds(*n);
  }
  for (auto& name : args.all("wire-variant")) {
    auto v = emulator::parse_wire_variant(name);
    if (!v)
      return report_error(invalid_argument("wire-variant", "--wire-variant: expected "
                                                             + emulator::wire_variant_list("|")
                                                             + ", got \"" + name + "\""));
    opts.wire_variants.insert(*v);
  }
  if (auto err = apply_emulator_flags(args, "", opts))
    return report_error(err);
  // Signals are taken synchronously by this thread (sigwait); block them
  // before the emulator starts its threads so they inherit the mask.
  block_termination_signals();
  auto server = emulator::server::make(opts);
  if (!server)
    return report_error(server.error());
  std::string host = opts.host.find(':') != std::string::npos ? "[" + opts.host + "]" : opts.host;
  std::cout << "listening on http://" << host << ':' << (*server)->port() << std::endl;
  log_info("emulate", "emulator running", {{"base_url", (*server)->base_url()}});
  auto sig = wait_for_termination_signal();
  log_info("emulate", "stopping", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}});
  (*server)->stop();
  auto st = (*server)->snapshot();
  log_info("emulate", "stopped",
           {{"inference_runs", std::to_string(st.inference_runs_total)},
            {"max_runs_per_key", std::to_string(st.max_runs_per_key)}});
  return exit_ok;
}

} // namespace

int cmd_emulate(const std::vector<std::string>& raw) {
  return run_command<app_config>(raw, emulate_command(), run_emulate);
}

} // namespace sail::app
