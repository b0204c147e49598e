// Shared parts of the sail-tinker subcommands: the flag parser (a
// subcommand's own flags are parsed here; `--group.key=value` arguments and
// caf-application.ini go to CAF's actor_system_config::parse), the CAF
// configuration class holding app_options (app/options.hpp: the option
// groups, bound to the options structs), error printing with the exit-code
// rules, and signal handling.
#pragma once

#include <csignal>
#include <iostream>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <caf/actor_system_config.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/actors/system_config.hpp"
#include "sail_tinker/app/log.hpp"
#include "sail_tinker/app/options.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/types.hpp"

namespace sail::app {

/// Exit codes of every subcommand.
inline constexpr int exit_ok = 0;
inline constexpr int exit_failure = 1;
inline constexpr int exit_usage = 2;
inline constexpr int exit_interrupted = 130;

inline constexpr const char* version = "0.1.0";

// -- flags ---------------------------------------------------------------------

struct flag_spec {
  std::string name;     ///< without the leading "--"
  std::string metavar;  ///< empty: a switch without value
  std::string help;
  bool repeatable = false;
};

/// The result of parsing a subcommand's arguments.
struct parsed_args {
  std::map<std::string, std::vector<std::string>> values;
  std::vector<std::string> positionals;
  /// `--group.key=value` and `--config-file=...` arguments, for CAF.
  std::vector<std::string> caf_args;
  bool help = false;

  bool has(const std::string& name) const { return values.count(name) > 0; }
  /// Last value of a flag (flags given twice: the last one wins).
  std::optional<std::string> get(const std::string& name) const;
  const std::vector<std::string>& all(const std::string& name) const;
};

/// Flags every subcommand accepts (--log-level, --log-format, --help).
std::vector<flag_spec> common_flags();

/// Parses `args` against `specs` (plus common_flags()). Unknown flags, missing
/// values and repeated non-repeatable flags -> invalid_argument naming the flag.
caf::expected<parsed_args> parse_flags(const std::vector<std::string>& args,
                                       const std::vector<flag_spec>& specs);

/// Usage text: synopsis, description, the flags, and the config groups.
std::string usage_text(std::string_view synopsis, std::string_view description,
                       const std::vector<flag_spec>& specs);

// -- typed values ----------------------------------------------------------------

caf::expected<int64_t> parse_int(std::string_view flag, std::string_view text,
                                 int64_t min, int64_t max);
caf::expected<double> parse_double(std::string_view flag, std::string_view text);
/// "1,2,3" -> token ids (field "prompt").
caf::expected<std::vector<int64_t>> parse_prompt(std::string_view text);

/// What a subcommand samples with when --model or --max-tokens is not given.
/// Empty model and 0 tokens: none (the flag is required, as by sample).
struct completer_defaults {
  std::string model;
  int64_t max_tokens = 0;
};

/// The flags that make up a completer_config: the one table of them, their
/// names, values and help. Without defaults (sample) --model and --max-tokens
/// are required and --base-url is Sail's; with defaults (rollout) their help
/// names the defaults and --base-url is left to the subcommand's own target
/// flags.
std::vector<flag_spec> completer_flags(const std::optional<completer_defaults>& d = {});

/// Builds a completer_config from completer_flags(), starting from `d`;
/// checks only the CLI-level syntax (numbers, k=v); the completer's rules
/// are checked by sail::validate.
caf::expected<completer_config> completer_config_from(const parsed_args& args,
                                                      const completer_defaults& d = {});

// -- CAF configuration -------------------------------------------------------------

template <class Base>
struct basic_app_config : Base {
  /// What caf-application.ini and --group.key=value set (app/options.hpp).
  app_options app;
  basic_app_config() {
    add_app_options(this->custom_options_, app);
  }
  const caf::config_option_set& options() const {
    return this->custom_options_;
  }
};

/// Without the io middleman (sample, resolve, emulate).
using app_config = basic_app_config<system_config>;
/// With the io middleman and OpenSSL (serve, rollout --nodes).
using app_node_config = basic_app_config<node_config>;

/// Parses CAF arguments + caf-application.ini into `cfg`, then checks the
/// application's groups strictly (unknown keys and ill-typed values in the
/// ini file are errors, CAF 0.17 silently ignores them). invalid_argument.
caf::error parse_caf_config(caf::actor_system_config& cfg,
                            const caf::config_option_set& opts,
                            const std::vector<std::string>& caf_args);

/// Checks an absolute http(s) base URL (invalid_argument naming `field`).
caf::error check_http_url(std::string_view field, std::string_view url);

/// True if a listener bound to `host` is reachable from this machine only:
/// "localhost" (any case), an IPv4 address in 127.0.0.0/8, or ::1. Anything
/// else is not: 0.0.0.0, ::, "" (all interfaces), an IPv4-mapped IPv6
/// address (::ffff:127.0.0.1), other names (never resolved here).
bool is_loopback_host(std::string_view host);

/// Applies --log-level / --log-format (flags win over [log] config). Returns
/// invalid_argument for bad values.
caf::error setup_logging(const parsed_args& args, const log_settings& config,
                         log_level default_level);

// -- the common start of every subcommand -------------------------------------------

/// What a subcommand declares about its command line.
struct command_spec {
  std::string_view synopsis;
  std::string_view description;
  std::vector<flag_spec> flags;
  /// How many positional arguments it takes at most.
  size_t max_positionals = 0;
  log_level default_log_level = log_level::info;
};

/// Parses the flags, answers --help, refuses extra positional arguments,
/// parses the CAF configuration into `cfg` and sets up logging. Returns the
/// parsed arguments, or nullopt when the command ends here with `exit_code`
/// (help printed: exit_ok; an error reported: its exit code).
template <class Config>
std::optional<parsed_args> begin_command(const std::vector<std::string>& raw,
                                         const command_spec& spec, Config& cfg,
                                         int& exit_code);

// -- errors and exit codes -------------------------------------------------------

/// "kind" of an error: the sail errc name, "timeout" for CAF request
/// timeouts, "transport_error" for other CAF errors.
std::string error_kind(const caf::error& err);

/// Prints "error: <kind>: ..." (secrets redacted) on stderr and returns the
/// exit code: 2 for invalid_argument, 1 otherwise.
int report_error(const caf::error& err);

// -- signals -------------------------------------------------------------------------

template <class Config>
std::optional<parsed_args> begin_command(const std::vector<std::string>& raw,
                                         const command_spec& spec, Config& cfg,
                                         int& exit_code) {
  auto fail = [&](const caf::error& err) -> std::optional<parsed_args> {
    exit_code = report_error(err);
    return std::nullopt;
  };
  auto args = parse_flags(raw, spec.flags);
  if (!args)
    return fail(args.error());
  if (args->help) {
    std::cout << usage_text(spec.synopsis, spec.description, spec.flags);
    exit_code = exit_ok;
    return std::nullopt;
  }
  if (args->positionals.size() > spec.max_positionals)
    return fail(invalid_argument("arguments", "unexpected argument \""
                                                + args->positionals[spec.max_positionals]
                                                + "\""));
  if (auto err = parse_caf_config(cfg, cfg.options(), args->caf_args))
    return fail(err);
  if (auto err = setup_logging(*args, cfg.app.log, spec.default_log_level))
    return fail(err);
  return std::move(*args);
}

/// Every subcommand: begin_command, then `body(args, cfg)` with the parsed
/// arguments and the configuration, whose result is the exit code.
template <class Config, class Body>
int run_command(const std::vector<std::string>& raw, const command_spec& spec, Body&& body) {
  Config cfg;
  int exit_code = exit_ok;
  auto args = begin_command(raw, spec, cfg, exit_code);
  if (!args)
    return exit_code;
  return body(*args, cfg);
}

/// Blocks SIGINT, SIGTERM (and SIGUSR1 for internal wake-ups) in the calling
/// thread; call before any thread is started so every thread inherits it.
void block_termination_signals();

/// Blocks until SIGINT or SIGTERM arrives; returns the signal number.
int wait_for_termination_signal();

/// A thread that waits for SIGINT/SIGTERM and runs `on_signal` (on that
/// thread, never in a signal handler). stop() ends it without a signal.
class signal_watcher {
public:
  explicit signal_watcher(std::function<void(int)> on_signal);
  ~signal_watcher();
  void stop();

private:
  std::thread thread_;
  bool stopped_ = false;
};

} // namespace sail::app
