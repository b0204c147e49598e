#include "sail_tinker/app/cli.hpp"

#include <pthread.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <boost/asio/ip/address.hpp>
#include <boost/url/parse.hpp>
#include <caf/config_option_adder.hpp>
#include <caf/config_value.hpp>
#include <caf/sec.hpp>
#include <caf/settings.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/redact.hpp"
#include "sail_tinker/messages/validation.hpp"

namespace sail::app {

// -- flags ---------------------------------------------------------------------

std::optional<std::string> parsed_args::get(const std::string& name) const {
  auto i = values.find(name);
  if (i == values.end() || i->second.empty())
    return std::nullopt;
  return i->second.back();
}

const std::vector<std::string>& parsed_args::all(const std::string& name) const {
  static const std::vector<std::string> none;
  auto i = values.find(name);
  return i == values.end() ? none : i->second;
}

std::vector<flag_spec> common_flags() {
  return {
    {"log-level", "LEVEL", "debug | info | warn | error | off (also [log] level)"},
    {"log-format", "FORMAT", "text (default) | json: JSON lines on stderr (also [log] format)"},
  };
}

namespace {

const flag_spec* find_flag(const std::vector<flag_spec>& specs, std::string_view name) {
  for (auto& s : specs)
    if (s.name == name)
      return &s;
  return nullptr;
}

bool looks_like_number(std::string_view s) {
  if (s.size() < 2 || s[0] != '-')
    return false;
  return std::isdigit(static_cast<unsigned char>(s[1])) || s[1] == '.';
}

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  return std::string{s};
}

} // namespace

caf::expected<parsed_args> parse_flags(const std::vector<std::string>& args,
                                       const std::vector<flag_spec>& own) {
  auto specs = own;
  for (auto& f : common_flags())
    specs.push_back(f);
  parsed_args out;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (a == "--help" || a == "-h") {
      out.help = true;
      continue;
    }
    if (a == "--") {
      for (++i; i < args.size(); ++i)
        out.positionals.push_back(args[i]);
      break;
    }
    if (a.size() > 2 && a.compare(0, 2, "--") == 0) {
      auto eq = a.find('=');
      auto name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
      std::optional<std::string> value;
      if (eq != std::string::npos)
        value = a.substr(eq + 1);
      // CAF options: --group.key=value and --config-file=PATH.
      if (name.find('.') != std::string::npos || name == "config-file") {
        // A bool option of CAF 0.17 is a flag on the command line: it takes
        // no value ("--webhook.enabled"; "=true" means the same here).
        bool next_is_flag = i + 1 < args.size() && args[i + 1].rfind("--", 0) == 0;
        if ((!value && (i + 1 >= args.size() || next_is_flag)) || value == "true") {
          out.caf_args.push_back("--" + name);
          continue;
        }
        if (!value)
          value = args[++i];
        out.caf_args.push_back("--" + name + "=" + *value);
        continue;
      }
      auto spec = find_flag(specs, name);
      if (spec == nullptr)
        return invalid_argument(name, "unknown flag --" + name);
      if (spec->metavar.empty()) {
        if (value)
          return invalid_argument(name, "--" + name + " takes no value");
        out.values[name].push_back("true");
        continue;
      }
      if (!value) {
        if (i + 1 >= args.size())
          return invalid_argument(name, "--" + name + " needs a value (" + spec->metavar + ")");
        value = args[++i];
      }
      out.values[name].push_back(std::move(*value));
      continue;
    }
    if (a.size() > 1 && a[0] == '-' && !looks_like_number(a))
      return invalid_argument(a.substr(1), "unknown flag " + a);
    out.positionals.push_back(a);
  }
  return out;
}

std::string usage_text(std::string_view synopsis, std::string_view description,
                       const std::vector<flag_spec>& own) {
  std::ostringstream out;
  out << "usage: " << synopsis << "\n\n" << description << "\n\nflags:\n";
  auto specs = own;
  for (auto& f : common_flags())
    specs.push_back(f);
  specs.push_back({"help", "", "print this help and exit"});
  for (auto& s : specs) {
    std::string left = "  --" + s.name;
    if (!s.metavar.empty())
      left += " " + s.metavar;
    if (left.size() < 34)
      left.resize(34, ' ');
    else
      left += "\n" + std::string(34, ' ');
    out << left << s.help;
    if (s.repeatable)
      out << " (repeatable)";
    out << '\n';
  }
  out << "\nconfiguration (caf-application.ini in the working directory, "
         "--config-file=PATH, or --group.key=value):\n"
         "  [sail] [pool] [completer] [http] [resolver] [log] tuning groups and\n"
         "  CAF's own [scheduler] [middleman] [openssl]; see docs/operations.md.\n"
         "  [wire] the unpublished Sail wire details (check them: sail-tinker doctor):\n"
         "    stop-field = " + join_choices(wire_options::stop_field_choices()) + "\n"
         "    logprobs = " + join_choices(wire_options::logprobs_choices()) + "\n"
         "    layout = " + join_choices(wire_options::layout_choices()) + "\n"
         "    include-value, lora-key, signed-url-key, adapter-config-key, lora-name-key\n"
         "environment: SAIL_API_KEY; the Sail endpoint from SAIL_BASE_URL, else\n"
         "  SAIL_API_URL, else SAIL_MODE (prod | dev | staging | local; a trailing /v1\n"
         "  is accepted); TINKER_API_KEY, TINKER_BASE_URL, http_proxy, https_proxy,\n"
         "  no_proxy.\n"
         "exit status: 0 ok, 1 error, 2 invalid argument or configuration.\n";
  return out.str();
}

// -- typed values ----------------------------------------------------------------

caf::expected<int64_t> parse_int(std::string_view flag, std::string_view text,
                                 int64_t min, int64_t max) {
  int64_t value = 0;
  auto s = trim(text);
  auto res = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || res.ec != std::errc{} || res.ptr != s.data() + s.size())
    return invalid_argument(std::string{flag}, "--" + std::string{flag}
                                                 + ": expected an integer, got \""
                                                 + redact_secrets(text) + "\"");
  if (value < min || value > max)
    return invalid_argument(std::string{flag},
                            "--" + std::string{flag} + ": must be within "
                              + std::to_string(min) + ".." + std::to_string(max));
  return value;
}

caf::expected<double> parse_double(std::string_view flag, std::string_view text) {
  auto s = trim(text);
  char* end = nullptr;
  errno = 0;
  double value = s.empty() ? 0.0 : std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || errno == ERANGE
      || !std::isfinite(value))
    return invalid_argument(std::string{flag}, "--" + std::string{flag}
                                                 + ": expected a finite number, got \""
                                                 + redact_secrets(text) + "\"");
  return value;
}

caf::expected<std::vector<int64_t>> parse_prompt(std::string_view text) {
  std::vector<int64_t> out;
  if (trim(text).empty())
    return invalid_argument("prompt", "the prompt is empty (expected token ids like 1,2,3)");
  size_t pos = 0;
  while (pos <= text.size()) {
    auto comma = text.find(',', pos);
    auto part = trim(text.substr(pos, comma == std::string_view::npos ? std::string_view::npos
                                                                      : comma - pos));
    int64_t v = 0;
    auto res = std::from_chars(part.data(), part.data() + part.size(), v);
    if (part.empty() || res.ec != std::errc{} || res.ptr != part.data() + part.size())
      return invalid_argument("prompt", "token " + std::to_string(out.size())
                                          + " is not an integer: \"" + redact_secrets(part)
                                          + "\"");
    out.push_back(v);
    if (comma == std::string_view::npos)
      break;
    pos = comma + 1;
  }
  return out;
}

std::vector<flag_spec> completer_flags(const std::optional<completer_defaults>& d) {
  std::vector<flag_spec> flags{
    {"model", "M", "model name (required)"},
    {"max-tokens", "N", "max output tokens (required, > 0)"},
    {"temperature", "T", "sampling temperature, 0..2 (default 1.0)"},
    {"top-p", "P", "nucleus sampling, 0..1 (default 1.0)"},
    {"window", "W", "completion window, e.g. asap | priority | balanced | standard | flex (default priority; others go to the server)"},
    {"lora", "NAME", "Sail-registered LoRA adapter"},
    {"tinker-lora-signed-url", "URL", "signed URL of a Tinker checkpoint archive (needs --adapter-config)"},
    {"adapter-config", "JSON", "adapter config: a JSON object, or a JSON string holding one"},
    {"tinker-lora-name", "S", "label of the Tinker LoRA"},
    {"metadata", "K=V", "extra request metadata", true},
    {"no-logprobs", "", "do not request logprobs"},
    {"timeout", "SECONDS", "per-HTTP-call timeout"},
    {"voyage-id", "ID", "Sail Voyage id (X-Sail-Voyage-Id header)"},
    {"base-url", "URL", "Sail base URL, with or without /v1 (overrides SAIL_BASE_URL, SAIL_API_URL, SAIL_MODE)"},
  };
  if (!d)
    return flags;
  auto flag = [&](std::string_view name) {
    return std::find_if(flags.begin(), flags.end(),
                        [name](const flag_spec& f) { return f.name == name; });
  };
  flag("model")->help = "model name (default " + d->model + ")";
  flag("max-tokens")->help = "max output tokens, > 0 (default " + std::to_string(d->max_tokens)
                             + ")";
  flags.erase(flag("base-url")); // the subcommand's target flags have it
  return flags;
}

caf::expected<completer_config> completer_config_from(const parsed_args& args,
                                                      const completer_defaults& d) {
  completer_config cfg;
  cfg.model = d.model;
  cfg.max_tokens = d.max_tokens;
  if (auto m = args.get("model"))
    cfg.model = *m;
  if (auto v = args.get("max-tokens")) {
    auto n = parse_int("max-tokens", *v, INT64_MIN, INT64_MAX);
    if (!n)
      return std::move(n.error());
    cfg.max_tokens = *n;
  }
  if (auto v = args.get("temperature")) {
    auto x = parse_double("temperature", *v);
    if (!x)
      return std::move(x.error());
    cfg.temperature = *x;
  }
  if (auto v = args.get("top-p")) {
    auto x = parse_double("top-p", *v);
    if (!x)
      return std::move(x.error());
    cfg.top_p = *x;
  }
  if (auto v = args.get("window"))
    cfg.completion_window = *v;
  if (auto v = args.get("lora"))
    cfg.lora = *v;
  if (auto v = args.get("tinker-lora-signed-url"))
    cfg.tinker_lora_signed_url = *v;
  if (auto v = args.get("adapter-config"))
    cfg.adapter_config = *v;
  if (auto v = args.get("tinker-lora-name"))
    cfg.tinker_lora_name = *v;
  for (auto& kv : args.all("metadata")) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      return invalid_argument("metadata", "--metadata: expected KEY=VALUE, got \""
                                            + redact_secrets(kv) + "\"");
    cfg.metadata[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (args.has("no-logprobs"))
    cfg.request_logprobs = false;
  if (auto v = args.get("timeout")) {
    auto x = parse_double("timeout", *v);
    if (!x)
      return std::move(x.error());
    if (*x <= 0 || *x > 86400.0)
      return invalid_argument("timeout", "--timeout: must be within (0, 86400] seconds");
    cfg.timeout = std::chrono::duration_cast<caf::timespan>(
      std::chrono::duration<double>(*x));
  }
  if (auto v = args.get("voyage-id")) {
    if (v->empty())
      return invalid_argument("voyage-id", "--voyage-id: must not be empty");
    cfg.voyage = voyage{*v, std::nullopt, std::nullopt};
  }
  return cfg;
}

// -- CAF configuration -------------------------------------------------------------

namespace {

/// The "argument" of a CAF parser error, e.g. "--pool.workers=abc".
std::string caf_error_argument(const caf::error& err) {
  auto text = caf::to_string(err);
  const std::string marker = "\"argument\" = \"";
  auto pos = text.find(marker);
  if (pos == std::string::npos)
    return {};
  pos += marker.size();
  auto end = text.find('"', pos);
  return text.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
}

} // namespace

caf::error parse_caf_config(caf::actor_system_config& cfg,
                            const caf::config_option_set& opts,
                            const std::vector<std::string>& caf_args) {
  caf::actor_system_config::string_list args{caf_args.begin(), caf_args.end()};
  if (auto err = cfg.parse(std::move(args), nullptr)) {
    auto arg = caf_error_argument(err);
    std::string field = "config";
    if (arg.compare(0, 2, "--") == 0)
      field = arg.substr(2, arg.find('=') == std::string::npos ? std::string::npos
                                                               : arg.find('=') - 2);
    auto what = redact_secrets(caf::to_string(err));
    return invalid_argument(field, "configuration: " + what);
  }
  // Strict check of our groups: CAF 0.17 silently drops unknown keys and
  // ill-typed values of the ini file, so read the file again untyped and
  // check every key of our groups against its option.
  std::string ini = "caf-application.ini";
  bool explicit_ini = false;
  for (auto& a : caf_args)
    if (a.compare(0, 14, "--config-file=") == 0) {
      ini = a.substr(14);
      explicit_ini = true;
    }
  std::vector<const caf::settings*> sources{&cfg.content};
  caf::settings raw;
  if (explicit_ini || std::ifstream{ini}.good()) {
    auto parsed = caf::actor_system_config::parse_config_file(ini.c_str());
    if (!parsed)
      return invalid_argument("config-file", "cannot read configuration " + ini + ": "
                                               + caf::to_string(parsed.error()));
    raw = std::move(*parsed);
    sources.push_back(&raw);
  }
  for (auto* src : sources) {
    for (auto& group : app_option_groups()) {
      auto section = caf::get_if<caf::settings>(src, group);
      if (!section)
        continue;
      for (auto& [key, value] : *section) {
        auto opt = opts.qualified_name_lookup(group, key);
        if (opt == nullptr)
          return invalid_argument(group + "." + key,
                                  "unknown configuration key " + group + "." + key);
        if (auto err = opt->check(value))
          return invalid_argument(group + "." + key,
                                  "invalid value for " + group + "." + key + " (expected "
                                    + std::string(opt->type_name().data(),
                                                  opt->type_name().size())
                                    + ")");
      }
    }
  }
  return caf::none;
}

caf::error check_http_url(std::string_view field, std::string_view url) {
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed || (parsed->scheme() != "http" && parsed->scheme() != "https")
      || parsed->host().empty() || parsed->has_query() || parsed->has_fragment())
    return invalid_argument(std::string{field},
                            "expected an absolute http(s) URL without query, got \""
                              + redact_url(url) + "\"");
  return caf::none;
}

bool is_loopback_host(std::string_view host) {
  if (host.size() == 9
      && std::equal(host.begin(), host.end(), "localhost", [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == b;
         }))
    return true;
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(std::string{host}, ec);
  // address_v6::is_loopback() is true for ::1 only, not for ::ffff:127.x.
  return !ec && addr.is_loopback();
}

caf::error setup_logging(const parsed_args& args, const log_settings& config,
                         log_level default_level) {
  auto level = default_level;
  auto format = log_format::text;
  auto level_text = args.get("log-level");
  std::string level_field = "log-level";
  if (!level_text && !config.level.empty()) {
    level_text = config.level;
    level_field = "log.level";
  }
  if (level_text) {
    auto l = parse_log_level(*level_text);
    if (!l)
      return invalid_argument(level_field, "expected debug, info, warn, error or off");
    level = *l;
  }
  auto format_text = args.get("log-format");
  std::string format_field = "log-format";
  if (!format_text && !config.format.empty()) {
    format_text = config.format;
    format_field = "log.format";
  }
  if (format_text) {
    auto f = parse_log_format(*format_text);
    if (!f)
      return invalid_argument(format_field, "expected text or json");
    format = *f;
  }
  configure_logging(level, format);
  return caf::none;
}

// -- errors --------------------------------------------------------------------------

std::string error_kind(const caf::error& err) {
  if (auto code = code_of(err))
    return to_string(*code);
  if (err == caf::sec::request_timeout)
    return "timeout";
  return "transport_error";
}

int report_error(const caf::error& err) {
  auto kind = error_kind(err);
  std::string text = code_of(err) ? render(err) : kind + ": " + caf::to_string(err);
  auto line = "error: " + redact_secrets(text) + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
  return kind == "invalid_argument" ? exit_usage : exit_failure;
}

// -- signals -------------------------------------------------------------------------

namespace {

sigset_t termination_set(bool with_wakeup) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  if (with_wakeup)
    sigaddset(&set, SIGUSR1);
  return set;
}

} // namespace

void block_termination_signals() {
  auto set = termination_set(true);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int wait_for_termination_signal() {
  auto set = termination_set(false);
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
}

signal_watcher::signal_watcher(std::function<void(int)> on_signal) {
  thread_ = std::thread([fn = std::move(on_signal)] {
    auto set = termination_set(true);
    int count = 0;
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0)
        continue;
      if (sig == SIGUSR1)
        return;
      if (++count > 1) {
        // A second interrupt: the user insists.
        std::fputs("interrupted twice, exiting now\n", stderr);
        std::_Exit(exit_interrupted);
      }
      fn(sig);
    }
  });
}

signal_watcher::~signal_watcher() {
  stop();
}

void signal_watcher::stop() {
  if (stopped_)
    return;
  stopped_ = true;
  pthread_kill(thread_.native_handle(), SIGUSR1);
  thread_.join();
}

} // namespace sail::app
