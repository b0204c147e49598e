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

std::vector<flag_spec> completer_flags() {
  return {
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
}

caf::expected<completer_config> completer_config_from(const parsed_args& args) {
  completer_config cfg;
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

const std::vector<std::string>& app_option_groups() {
  static const std::vector<std::string> groups{"sail",     "pool",    "completer", "http",
                                               "resolver", "cluster", "webhook",   "log"};
  return groups;
}

void add_tuning_options(caf::config_option_set& opts, tuning& t) {
  caf::config_option_adder{opts, "sail"}
    .add(t.io_threads, "io-threads", "threads running the HTTP client's io_context")
    .add(t.model_table_file, "model-table", "JSON file with the model table "
                                            "({\"models\":{...}}); default: built-in")
    .add(t.shutdown_grace, "shutdown-grace", "bound of each shutdown stage");
  caf::config_option_adder{opts, "pool"}
    .add(t.workers, "workers", "HTTP workers")
    .add(t.max_in_flight, "max-in-flight", "samples in flight on this node")
    .add(t.max_queued, "max-queued", "samples waiting for admission (beyond: overloaded)")
    .add(t.max_dispatch_attempts, "max-dispatch-attempts", "dispatches of one job")
    .add(t.max_restarts, "max-restarts", "worker restarts within restart-window before escalation")
    .add(t.restart_window, "restart-window", "window of the restart intensity")
    .add(t.call_timeout, "call-timeout", "per-HTTP-call timeout when the job sets none")
    .add(t.poll_growth, "poll-growth", "poll interval growth factor")
    .add(t.poll_jitter, "poll-jitter", "poll interval jitter (+/- fraction)")
    .add(t.pool_seed, "seed", "seed of the jitter (0: random)")
    .add(t.retry_max_attempts, "retry-max-attempts",
         "cap on the HTTP attempts of one call (create or poll); 0: none, the sample's deadline")
    .add(t.retry_base_delay, "retry-base-delay", "backoff cap of the first retry")
    .add(t.retry_max_delay, "retry-max-delay", "upper bound of the backoff cap")
    .add(t.retry_max_retry_after, "retry-max-retry-after", "cap on an honoured Retry-After")
    .add(t.adaptive_polling, "adaptive-polling",
         "plan polls from the completion latency learned per model and window")
    .add(t.adaptive_polls, "adaptive-polls", "polls across the learned latency distribution")
    .add(t.adaptive_min_samples, "adaptive-min-samples",
         "finished samples of a model and window before its plan is used")
    .add(t.adaptive_max_gap_factor, "adaptive-max-gap-factor",
         "a planned gap may stretch to this multiple of the window's max poll (>= 1)")
    .add(t.webhook_first_poll, "webhook-first-poll",
         "with a webhook expected: first safety-net poll, every window (0: per window)")
    .add(t.webhook_poll, "webhook-poll",
         "with a webhook expected: safety-net poll interval, every window (0: per window)")
    .add(t.retry_budget.ratio, "retry-budget-ratio", "retries allowed per first attempt in the window")
    .add(t.retry_budget.min_per_second, "retry-budget-min-per-second",
         "retries allowed per second of the window whatever the traffic")
    .add(t.retry_budget.window, "retry-budget-window", "sliding window of the retry budget")
    .add(t.breaker_min_failures, "breaker-min-failures",
         "failures within the window that open the circuit breaker (0: no breaker)")
    .add(t.breaker.failure_ratio, "breaker-failure-ratio",
         "...if they are at least this share of the window's attempts")
    .add(t.breaker_consecutive_failures, "breaker-consecutive-failures",
         "failures in a row that open the circuit breaker at once (0: off)")
    .add(t.breaker.window, "breaker-window", "sliding window of the circuit breaker")
    .add(t.breaker.open_delay, "breaker-open-delay", "wait before the first probe (doubles per failed probe)")
    .add(t.breaker.max_open_delay, "breaker-max-open-delay", "longest wait between probes")
    .add(t.breaker.probe_timeout, "breaker-probe-timeout", "a probe without an answer is replaced after this");
  caf::config_option_adder{opts, "webhook"}
    .add(t.webhook_enabled, "enabled", "receive Sail's completion webhooks")
    .add(t.webhook_host, "host", "address the receiver listens on")
    .add(t.webhook_port, "port", "port the receiver listens on (0: any free port)")
    .add(t.webhook_path, "path", "request path of deliveries")
    .add(t.webhook_public_url, "public-url",
         "the URL Sail calls (through NAT or a load balancer); default: the bound address")
    .add(t.webhook_certificate, "certificate", "TLS certificate chain (PEM)")
    .add(t.webhook_key, "key", "TLS private key (PEM)")
    .add(t.webhook_insecure_plaintext, "insecure-plaintext",
         "allow a plaintext listener off loopback (TLS terminated in front of it)")
    .add(t.webhook_body_limit, "body-limit", "largest delivery body in bytes");
  caf::config_option_adder{opts, "completer"}
    .add(t.group_policy, "group-policy", "fail_group | partial (a failed group member)")
    .add(t.max_group_size, "max-group-size", "largest n of sample_group")
    .add(t.request_margin, "request-margin", "added to a sample's deadline for the request to the pool")
    .add(t.resolve_timeout, "resolve-timeout", "timeout of a resolve request");
  caf::config_option_adder{opts, "http"}
    .add(t.connect_timeout, "connect-timeout", "name resolution + TCP connect")
    .add(t.tls_handshake_timeout, "tls-handshake-timeout", "TLS handshake")
    .add(t.write_timeout, "write-timeout", "sending one request")
    .add(t.read_timeout, "read-timeout", "receiving one response")
    .add(t.max_connections_per_origin, "max-connections-per-origin", "keep-alive pool size per origin")
    .add(t.idle_timeout, "idle-timeout", "idle keep-alive connections close after this")
    .add(t.ca_file, "ca-file", "PEM file with extra trusted CAs")
    .add(t.user_agent, "user-agent", "User-Agent header");
  caf::config_option_adder{opts, "resolver"}
    .add(t.resolver_call_timeout, "call-timeout", "timeout of one Tinker REST call")
    .add(t.resolver_refresh_margin, "refresh-margin", "signed URLs: refreshed from 2 margins before expiry, unused in the last margin")
    .add(t.resolver_max_attempts, "max-attempts", "attempts of one Tinker REST call")
    .add(t.still_building_delay, "still-building-delay", "wait after a 503 'still building'");
  caf::config_option_adder{opts, "cluster"}
    .add(t.cluster_connect_timeout, "connect-timeout", "one connect attempt to a service node (TCP, TLS, handshake)")
    .add(t.cluster_queue_timeout, "queue-timeout", "how long a sample waits while no node is ready")
    .add(t.cluster_max_attempts, "max-attempts", "dispatches per sample (first send + re-routes)")
    .add(t.cluster_retry_min, "retry-min", "first reconnect delay (doubled per failure)")
    .add(t.cluster_retry_max, "retry-max", "longest reconnect delay");
  caf::config_option_adder{opts, "log"}
    .add(t.log_level, "level", "debug | info | warn | error | off")
    .add(t.log_format, "format", "text | json");
}

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

caf::expected<runtime_options> make_runtime_options(const tuning& t,
                                                    const std::optional<std::string>& base_url) {
  auto opts = runtime_options::from_env();
  if (base_url) {
    opts.sail_base_url = *base_url;
    opts.sail_base_url_origin = "base-url";
  }
  auto resolved = opts.resolve_sail_base_url();
  if (!resolved)
    return std::move(resolved.error());
  opts.sail_base_url = std::move(*resolved);
  if (t.io_threads == 0 || t.io_threads > 256)
    return invalid_argument("sail.io-threads", "must be within 1..256");
  opts.io_threads = t.io_threads;
  opts.shutdown_grace = t.shutdown_grace;
  if (!t.model_table_file.empty()) {
    std::ifstream in{t.model_table_file};
    if (!in)
      return invalid_argument("sail.model-table", "cannot read " + t.model_table_file);
    std::stringstream buf;
    buf << in.rdbuf();
    auto table = model_table::from_json(buf.str());
    if (!table)
      return std::move(table.error());
    opts.models = std::move(*table);
  }
  auto& p = opts.pool;
  if (t.workers == 0 || t.workers > 1024)
    return invalid_argument("pool.workers", "must be within 1..1024");
  if (t.max_in_flight == 0)
    return invalid_argument("pool.max-in-flight", "must be > 0");
  if (t.poll_growth < 1.0 || !std::isfinite(t.poll_growth))
    return invalid_argument("pool.poll-growth", "must be >= 1");
  if (t.poll_jitter < 0.0 || t.poll_jitter >= 1.0)
    return invalid_argument("pool.poll-jitter", "must be within [0, 1)");
  if (t.retry_max_attempts > UINT32_MAX)
    return invalid_argument("pool.retry-max-attempts", "must be within 0..4294967295");
  if (t.breaker_min_failures > UINT32_MAX)
    return invalid_argument("pool.breaker-min-failures", "must be within 0..4294967295");
  if (t.breaker_consecutive_failures > UINT32_MAX)
    return invalid_argument("pool.breaker-consecutive-failures",
                            "must be within 0..4294967295");
  if (auto err = t.retry_budget.validate("pool.retry-budget-"))
    return err;
  auto breaker = t.breaker;
  breaker.min_failures = static_cast<uint32_t>(t.breaker_min_failures);
  breaker.consecutive_failures = static_cast<uint32_t>(t.breaker_consecutive_failures);
  if (auto err = breaker.validate("pool.breaker-"))
    return err;
  p.workers = t.workers;
  p.max_in_flight = t.max_in_flight;
  p.max_queued = t.max_queued;
  p.max_dispatch_attempts = static_cast<uint32_t>(std::max<size_t>(1, t.max_dispatch_attempts));
  p.max_restarts = static_cast<uint32_t>(t.max_restarts);
  p.restart_window = t.restart_window;
  p.call_timeout = t.call_timeout;
  p.poll_growth = t.poll_growth;
  p.poll_jitter = t.poll_jitter;
  p.seed = t.pool_seed;
  p.retry.max_attempts = static_cast<uint32_t>(t.retry_max_attempts);
  p.retry.base_delay = t.retry_base_delay;
  p.retry.max_delay = t.retry_max_delay;
  p.retry.max_retry_after = t.retry_max_retry_after;
  if (t.adaptive_polls == 0 || t.adaptive_polls > 1000)
    return invalid_argument("pool.adaptive-polls", "must be within 1..1000");
  p.adaptive.enabled = t.adaptive_polling;
  p.adaptive.polls = static_cast<uint32_t>(t.adaptive_polls);
  p.adaptive.min_samples = static_cast<uint32_t>(std::min<size_t>(t.adaptive_min_samples, UINT32_MAX));
  if (!(t.adaptive_max_gap_factor >= 1.0 && t.adaptive_max_gap_factor <= 100.0))
    return invalid_argument("pool.adaptive-max-gap-factor", "must be within 1..100");
  p.adaptive.max_gap_factor = t.adaptive_max_gap_factor;
  if (t.webhook_first_poll.count() < 0 || t.webhook_poll.count() < 0)
    return invalid_argument("pool.webhook-poll", "must not be negative");
  auto webhook_timing = [&t](window_timing& w) {
    if (t.webhook_first_poll.count() > 0)
      w.webhook_first_poll = t.webhook_first_poll;
    if (t.webhook_poll.count() > 0)
      w.webhook_poll = t.webhook_poll;
  };
  webhook_timing(p.default_timing);
  for (auto& [name, w] : p.windows)
    webhook_timing(w);
  auto& wh = opts.webhook;
  wh.enabled = t.webhook_enabled;
  wh.host = t.webhook_host;
  if (t.webhook_port > 65535)
    return invalid_argument("webhook.port", "must be within 0..65535");
  wh.port = static_cast<uint16_t>(t.webhook_port);
  wh.path = t.webhook_path;
  wh.public_url = t.webhook_public_url;
  wh.tls_certificate_file = t.webhook_certificate;
  wh.tls_key_file = t.webhook_key;
  wh.allow_plaintext = t.webhook_insecure_plaintext;
  if (t.webhook_body_limit == 0)
    return invalid_argument("webhook.body-limit", "must be > 0");
  wh.body_limit = t.webhook_body_limit;
  p.retry_budget = t.retry_budget;
  p.breaker = breaker;
  p.on_breaker_change = [](breaker_state state, const std::string& detail) {
    auto msg = std::string{"circuit breaker "} + to_string(state);
    if (state == breaker_state::closed)
      log_info("pool", msg, {{"detail", detail}});
    else
      log_warn("pool", msg, {{"detail", detail}});
  };
  auto& c = opts.completer;
  if (t.group_policy == "fail_group" || t.group_policy.empty())
    c.group_policy = group_failure_policy::fail_group;
  else if (t.group_policy == "partial")
    c.group_policy = group_failure_policy::partial;
  else
    return invalid_argument("completer.group-policy", "expected fail_group or partial");
  if (t.max_group_size == 0 || t.max_group_size > UINT32_MAX)
    return invalid_argument("completer.max-group-size", "must be within 1..4294967295");
  c.max_group_size = static_cast<uint32_t>(t.max_group_size);
  c.request_margin = t.request_margin;
  c.resolve_timeout = t.resolve_timeout;
  auto& h = opts.http;
  h.timeouts.connect = t.connect_timeout;
  h.timeouts.tls_handshake = t.tls_handshake_timeout;
  h.timeouts.write = t.write_timeout;
  h.timeouts.read = t.read_timeout;
  if (t.max_connections_per_origin == 0)
    return invalid_argument("http.max-connections-per-origin", "must be > 0");
  h.max_connections_per_origin = static_cast<uint32_t>(t.max_connections_per_origin);
  h.idle_timeout = t.idle_timeout;
  h.tls.ca_file = t.ca_file;
  h.user_agent = t.user_agent;
  auto& r = opts.resolver;
  r.call_timeout = t.resolver_call_timeout;
  r.refresh_margin = t.resolver_refresh_margin;
  r.retry.max_attempts = static_cast<uint32_t>(std::max<size_t>(1, t.resolver_max_attempts));
  r.retry.still_building_delay = t.still_building_delay;
  return opts;
}

caf::error setup_logging(const parsed_args& args, const tuning& t,
                         log_level default_level) {
  auto level = default_level;
  auto format = log_format::text;
  auto level_text = args.get("log-level");
  std::string level_field = "log-level";
  if (!level_text && !t.log_level.empty()) {
    level_text = t.log_level;
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
  if (!format_text && !t.log_format.empty()) {
    format_text = t.log_format;
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
