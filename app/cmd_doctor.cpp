// sail-tinker doctor: checks the unpublished wire details ([wire]) against
// the configured Sail endpoint and prints the settings that work there
// (net/wire_doctor.hpp; docs/operations.md, "Checking the wire details").
#include <iostream>

#include "sail_tinker/app/cli.hpp"
#include "sail_tinker/app/commands.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/wire_doctor.hpp"

namespace sail::app {

namespace {

/// Exit code of a doctor run without --yes: nothing was sent or checked.
constexpr int exit_nothing_sent = 3;

constexpr const char* doctor_synopsis
  = "sail-tinker doctor [--yes] [--model M] [--window W] [--base-url URL] "
    "[--tinker-path tinker://RUN/KIND/NAME --adapter-config JSON] [--json] "
    "[--wire.key=value ...]";

constexpr const char* doctor_description
  = "Checks the wire details Sail has not published ([wire]: the stop field, the\n"
    "logprobs switch, the response layout, the LoRA metadata keys) against the\n"
    "configured endpoint and key with a few tiny samples (a few prompt tokens, at\n"
    "most 8 output tokens each, temperature 0). Reports per assumption: held,\n"
    "refused (status and body), ignored, or carried elsewhere, and prints the\n"
    "[wire] settings that work, ready to paste into caf-application.ini.\n"
    "Without --yes it states the worst-case tokens and sends nothing.\n"
    "exit status of doctor: 0 the configured settings hold, 1 they do not (or a\n"
    "sample failed), 2 invalid argument or configuration, 3 nothing sent (no --yes).";

/// The command line of `sail-tinker doctor`.
command_spec doctor_command() {
  return {doctor_synopsis,
          doctor_description,
          {
            {"yes", "", "send the samples (without it: state the worst case, send nothing)"},
            {"model", "M", "model of the samples (default moonshotai/Kimi-K2.6)"},
            {"window", "W", "completion window of the samples (default priority)"},
            {"prompt", "IDS", "prompt token ids, 1..16 of them (default 1,2,3)"},
            {"max-tokens", "N", "output tokens per sample, 1..8 (default 8)"},
            {"timeout", "SECONDS", "bound of one sample (default 900)"},
            {"base-url", "URL", "Sail base URL (default: SAIL_BASE_URL, SAIL_API_URL, SAIL_MODE)"},
            {"tinker-path", "PATH", "also check the Tinker TTL and archive-URL calls and one LoRA "
                                    "sample through the signed URL (TINKER_API_KEY)"},
            {"adapter-config", "JSON", "adapter config of the LoRA sample (with --tinker-path)"},
            {"ttl-seconds", "N", "TTL set on the checkpoint (with --tinker-path; default 3600)"},
            {"json", "", "print the report as one JSON object"},
          },
          0, log_level::warn};
}

/// `sail-tinker doctor` with its arguments parsed.
int run_doctor(const parsed_args& args, app_config& cfg) {
  auto opts = make_runtime_options(cfg.app, args.get("base-url"));
  if (!opts)
    return report_error(opts.error());
  doctor_options d;
  d.base_url = opts->sail_base_url;
  d.api_key = opts->sail_api_key;
  d.http = opts->http;
  d.wire = opts->wire;
  d.tinker_base_url = opts->tinker_base_url;
  d.tinker_api_key = opts->tinker_api_key;
  d.spend = args.has("yes");
  if (auto v = args.get("model"))
    d.model = *v;
  if (auto v = args.get("window"))
    d.completion_window = *v;
  if (auto v = args.get("prompt")) {
    auto prompt = parse_prompt(*v);
    if (!prompt)
      return report_error(prompt.error());
    d.prompt = std::move(*prompt);
  }
  if (auto v = args.get("max-tokens")) {
    auto n = parse_int("max-tokens", *v, 1, 8);
    if (!n)
      return report_error(n.error());
    d.max_tokens = *n;
  }
  if (auto v = args.get("timeout")) {
    auto n = parse_double("timeout", *v);
    if (!n)
      return report_error(n.error());
    if (*n <= 0)
      return report_error(invalid_argument("timeout", "--timeout must be > 0"));
    d.sample_timeout = std::chrono::duration_cast<caf::timespan>(
      std::chrono::duration<double>(*n));
  }
  if (auto v = args.get("tinker-path"))
    d.tinker_path = *v;
  if (auto v = args.get("adapter-config"))
    d.adapter_config = *v;
  if (auto v = args.get("ttl-seconds")) {
    auto n = parse_int("ttl-seconds", *v, 1, INT64_MAX);
    if (!n)
      return report_error(n.error());
    d.ttl_seconds = *n;
  }
  auto report = run_doctor(d);
  if (!report)
    return report_error(report.error());
  if (args.has("json"))
    std::cout << report->to_json() << std::endl;
  else
    std::cout << report->to_text() << std::flush;
  if (!report->sent)
    return exit_nothing_sent;
  return report->holds ? exit_ok : exit_failure;
}

} // namespace

int cmd_doctor(const std::vector<std::string>& raw) {
  return run_command<app_config>(raw, doctor_command(), run_doctor);
}

} // namespace sail::app
