// sail-tinker sample: one sample through the actor stack; one JSON object on
// stdout.
#include <charconv>
#include <cstdio>
#include <iostream>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <caf/actor_system.hpp>

#include "sail_tinker/app/cli.hpp"
#include "sail_tinker/app/commands.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/validation.hpp"

namespace sail::app {

namespace {

std::vector<flag_spec> sample_flags() {
  auto flags = completer_flags();
  flags.insert(flags.begin() + 2,
               flag_spec{"prompt", "IDS", "prompt token ids, e.g. 1,2,3 (required)"});
  flags.insert(flags.begin() + 3, flag_spec{"stop-token", "ID", "stop token id (repeatable; sent as a list)", true});
  flags.insert(flags.begin() + 4, flag_spec{"stop", "TEXT", "stop string (once: sent as a string; repeated: a list)", true});
  return flags;
}

constexpr const char* sample_synopsis
  = "sail-tinker sample --model M --max-tokens N --prompt 1,2,3 [--stop-token ID]... "
    "[--stop TEXT]... [--temperature T] [--top-p P] [--window W] [--lora NAME | "
    "--tinker-lora-signed-url URL --adapter-config JSON] [--tinker-lora-name S] "
    "[--metadata k=v]... [--no-logprobs] [--timeout SECONDS] [--voyage-id ID] "
    "[--base-url URL]";

constexpr const char* sample_description
  = "Sends one raw-token sample to Sail (SAIL_API_KEY, SAIL_BASE_URL) and prints\n"
    "exactly one JSON object on stdout:\n"
    "  {\"tokens\":[...],\"maybe_logprobs\":[...] or null,\"stop_reason\":\"...\"}\n"
    "Invalid arguments are refused before anything is sent (exit 2).";

std::string to_json(const tokens_with_logprobs& out) {
  // Written by hand so that doubles use the shortest round-trip form.
  std::string json = "{\"tokens\":[";
  for (size_t i = 0; i < out.tokens.size(); ++i) {
    if (i > 0)
      json += ',';
    json += std::to_string(out.tokens[i]);
  }
  json += "],\"maybe_logprobs\":";
  if (out.maybe_logprobs) {
    json += '[';
    char buf[64];
    for (size_t i = 0; i < out.maybe_logprobs->size(); ++i) {
      if (i > 0)
        json += ',';
      auto res = std::to_chars(buf, buf + sizeof(buf), (*out.maybe_logprobs)[i]);
      json.append(buf, res.ptr);
    }
    json += ']';
  } else {
    json += "null";
  }
  json += ",\"stop_reason\":";
  json += boost::json::serialize(boost::json::string{out.stop_reason});
  json += '}';
  return json;
}

caf::error require(const parsed_args& args, const char* flag) {
  if (!args.has(flag))
    return invalid_argument(flag, std::string{"--"} + flag + " is required");
  return caf::none;
}

/// The command line of `sail-tinker sample`.
command_spec sample_command() {
  return {sample_synopsis, sample_description, sample_flags(), 0, log_level::warn};
}

/// `sail-tinker sample` with its arguments parsed.
int run_sample(const parsed_args& args, app_config& cfg) {
  for (auto flag : {"model", "max-tokens", "prompt"})
    if (auto err = require(args, flag))
      return report_error(err);
  // Everything is checked before anything is sent.
  auto ccfg = completer_config_from(args);
  if (!ccfg)
    return report_error(ccfg.error());
  sample_request req;
  auto prompt = parse_prompt(*args.get("prompt"));
  if (!prompt)
    return report_error(prompt.error());
  req.prompt = model_input{std::move(*prompt)};
  std::vector<int64_t> stop_ids;
  for (auto& s : args.all("stop-token")) {
    auto id = parse_int("stop-token", s, INT64_MIN, INT64_MAX);
    if (!id)
      return report_error(id.error());
    stop_ids.push_back(*id);
  }
  auto& stop_texts = args.all("stop");
  if (!stop_ids.empty() && !stop_texts.empty())
    return report_error(invalid_argument("stop", "--stop-token and --stop cannot be mixed "
                                                 "(token ids and strings never mix)"));
  if (!stop_ids.empty())
    req.stop = stop_condition::tokens(stop_ids);
  else if (stop_texts.size() == 1)
    req.stop = stop_condition::text(stop_texts.front()); // sent as a string
  else if (!stop_texts.empty())
    req.stop = stop_condition::texts(stop_texts);
  auto opts = make_runtime_options(cfg.app, args.get("base-url"));
  if (!opts)
    return report_error(opts.error());
  if (auto err = validate(*ccfg, opts->models))
    return report_error(err);
  if (ccfg->adapter_config) {
    auto norm = normalize_adapter_config(*ccfg->adapter_config);
    if (!norm)
      return report_error(norm.error());
  }
  if (auto err = validate(req))
    return report_error(err);
  int code = exit_ok;
  {
    caf::actor_system sys{cfg};
    auto rt = runtime::start(sys, std::move(*opts));
    if (!rt)
      return report_error(rt.error());
    log_debug("sample", "runtime started", {{"base_url", (*rt)->options().sail_base_url}});
    auto tc = (*rt)->make_token_completer(*ccfg);
    if (!tc) {
      code = report_error(tc.error());
    } else {
      auto res = tc->sample(std::move(req)).get();
      if (res) {
        std::cout << to_json(*res) << std::endl;
      } else {
        code = report_error(res.error());
      }
    }
    (*rt)->shutdown();
  }
  return code;
}

} // namespace

int cmd_sample(const std::vector<std::string>& raw) {
  return run_command<app_config>(raw, sample_command(), run_sample);
}

} // namespace sail::app
