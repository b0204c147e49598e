#include "convert.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string_view>
#include <type_traits>
#include <vector>
#include <set>

#include "delivery.hpp"
#include "sail_tinker/messages/validation.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/tinker_codec.hpp"

namespace sail::py {

namespace {

[[noreturn]] void bad_value(const std::string& field, const std::string& message) {
  raise_error(invalid_argument(field, message));
}

[[noreturn]] void bad_type(const std::string& field, const std::string& expected,
                           pyb::handle got) {
  throw pyb::type_error(field + " must be " + expected + ", not "
                        + std::string{Py_TYPE(got.ptr())->tp_name});
}

pyb::object item(const pyb::dict& d, const char* key) {
  auto k = pyb::str(key);
  if (!d.contains(k))
    return pyb::none();
  return d[k];
}

std::optional<std::string> opt_str(const pyb::dict& d, const char* key,
                                   const std::string& field) {
  auto v = item(d, key);
  if (v.is_none())
    return std::nullopt;
  if (!pyb::isinstance<pyb::str>(v))
    bad_type(field, "a str", v);
  return v.cast<std::string>();
}

std::optional<std::string> opt_str(const pyb::dict& d, const char* key) {
  return opt_str(d, key, key);
}

/// An int that is not a bool (True is an int in Python; never a count here).
bool is_int(pyb::handle v) {
  return !PyBool_Check(v.ptr()) && PyIndex_Check(v.ptr()) && !PyFloat_Check(v.ptr());
}

int64_t as_int64(pyb::handle v, const std::string& field) {
  if (!is_int(v))
    bad_type(field, "an int", v);
  int overflow = 0;
  auto idx = pyb::reinterpret_steal<pyb::object>(PyNumber_Index(v.ptr()));
  if (!idx)
    throw pyb::error_already_set();
  auto x = PyLong_AsLongLongAndOverflow(idx.ptr(), &overflow);
  if (overflow != 0)
    bad_value(field, field + " is out of range");
  return static_cast<int64_t>(x);
}

std::optional<int64_t> opt_int(const pyb::dict& d, const char* key, const std::string& field) {
  auto v = item(d, key);
  if (v.is_none())
    return std::nullopt;
  return as_int64(v, field);
}

double as_double(pyb::handle v, const std::string& field) {
  if (PyBool_Check(v.ptr()) || !(PyFloat_Check(v.ptr()) || PyLong_Check(v.ptr())))
    bad_type(field, "a number", v);
  auto x = PyFloat_AsDouble(v.ptr());
  if (x == -1.0 && PyErr_Occurred())
    throw pyb::error_already_set();
  return x;
}

std::optional<double> opt_double(const pyb::dict& d, const char* key, const std::string& field) {
  auto v = item(d, key);
  if (v.is_none())
    return std::nullopt;
  return as_double(v, field);
}

/// A duration of an options struct: any finite number of seconds >= 0 here;
/// its range is the struct's validate()'s business.
std::optional<caf::timespan> opt_seconds(const pyb::dict& d, const char* key,
                                         const std::string& field) {
  auto v = item(d, key);
  if (v.is_none())
    return std::nullopt;
  return to_timespan(v, field, true);
}

// take(d, key, prefix, field): d[key], if present, into a field of an
// options struct, converted to the field's type; the field's range is its
// struct's validate()'s business.

void take(const pyb::dict& d, const char* key, const std::string& prefix, caf::timespan& field) {
  if (auto x = opt_seconds(d, key, prefix + key))
    field = *x;
}

void take(const pyb::dict& d, const char* key, const std::string& prefix, double& field) {
  if (auto x = opt_double(d, key, prefix + key))
    field = *x;
}

void take(const pyb::dict& d, const char* key, const std::string& prefix, bool& field) {
  auto v = item(d, key);
  if (v.is_none())
    return;
  if (!PyBool_Check(v.ptr()))
    bad_type(prefix + key, "a bool", v);
  field = v.cast<bool>();
}

void take(const pyb::dict& d, const char* key, const std::string& prefix, std::string& field) {
  if (auto x = opt_str(d, key, prefix + key))
    field = *x;
}

/// Counts: an int within the field type's range (as CAF's configuration
/// checks it).
template <class T>
std::enable_if_t<std::is_integral_v<T>>
take(const pyb::dict& d, const char* key, const std::string& prefix, T& field) {
  auto x = opt_int(d, key, prefix + key);
  if (!x)
    return;
  if (*x < 0 || static_cast<uint64_t>(*x) > std::numeric_limits<T>::max())
    bad_value(prefix + key,
              "must be within 0.." + std::to_string(std::numeric_limits<T>::max()));
  field = static_cast<T>(*x);
}

/// Refuses keys outside `known` (a typo must not be silently ignored).
void check_keys(const pyb::dict& d, const std::set<std::string>& known,
                const std::string& prefix) {
  for (auto kv : d) {
    if (!pyb::isinstance<pyb::str>(kv.first))
      bad_type(prefix + " keys", "str", kv.first);
    auto k = kv.first.cast<std::string>();
    if (known.count(k) == 0)
      bad_value(prefix + k, "unknown option '" + k + "'");
  }
}

pyb::dict opt_dict(const pyb::dict& d, const char* key, const std::string& field) {
  auto v = item(d, key);
  if (v.is_none())
    return pyb::dict{};
  if (!pyb::isinstance<pyb::dict>(v))
    bad_type(field, "a dict", v);
  return v.cast<pyb::dict>();
}

// The dicts below only map keys onto the fields of the options structs; the
// defaults and range checks are the structs' own (validate()), whose errors
// name the options as caf-application.ini spells them ("pool.retry-max-attempts").

/// How the binding spells the configuration's names: the first entry whose
/// `from` starts the name replaces it with `to`; the rest of the key takes
/// underscores for dashes ("pool.retry-max-attempts" -> "runtime_options.retry.max_attempts").
struct option_rename {
  std::string_view from;
  std::string to;
};

/// Raises err (typed invalid_argument) under the binding's name of its
/// option, if there is an error.
void raise_if(const caf::error& err, const std::vector<option_rename>& names) {
  if (!err)
    return;
  auto* info = info_of(err);
  if (info == nullptr)
    raise_error(err);
  for (auto& n : names) {
    if (info->field.compare(0, n.from.size(), n.from) != 0)
      continue;
    auto rest = info->field.substr(n.from.size());
    auto last = rest.rfind('.');
    std::replace(rest.begin() + static_cast<std::ptrdiff_t>(last == std::string::npos ? 0 : last),
                 rest.end(), '-', '_');
    raise_error(invalid_argument(n.to + rest, info->message));
  }
  raise_error(err);
}

void apply_timing(window_timing& t, const pyb::dict& d, const std::string& prefix) {
  check_keys(d, {"first_poll", "max_poll", "deadline", "webhook_first_poll", "webhook_poll"},
             prefix);
  take(d, "first_poll", prefix, t.first_poll);
  take(d, "max_poll", prefix, t.max_poll);
  take(d, "deadline", prefix, t.deadline);
  take(d, "webhook_first_poll", prefix, t.webhook_first_poll);
  take(d, "webhook_poll", prefix, t.webhook_poll);
}

void apply_retry(retry_options& r, const pyb::dict& d, const std::string& prefix) {
  check_keys(d, {"max_attempts", "base_delay", "max_delay", "max_retry_after",
                 "still_building_delay"},
             prefix);
  // max_attempts 0: no cap (retries end at the sample's deadline).
  take(d, "max_attempts", prefix, r.max_attempts);
  take(d, "base_delay", prefix, r.base_delay);
  take(d, "max_delay", prefix, r.max_delay);
  take(d, "max_retry_after", prefix, r.max_retry_after);
  take(d, "still_building_delay", prefix, r.still_building_delay);
}

void apply_retry_budget(retry_budget_options& b, const pyb::dict& d, const std::string& prefix) {
  check_keys(d, {"ratio", "min_per_second", "window"}, prefix);
  take(d, "ratio", prefix, b.ratio);
  take(d, "min_per_second", prefix, b.min_per_second);
  take(d, "window", prefix, b.window);
}

void apply_breaker(circuit_breaker_options& b, const pyb::dict& d, const std::string& prefix) {
  check_keys(d,
             {"min_failures", "failure_ratio", "consecutive_failures", "window", "open_delay",
              "max_open_delay", "probe_timeout"},
             prefix);
  take(d, "min_failures", prefix, b.min_failures);
  take(d, "consecutive_failures", prefix, b.consecutive_failures);
  take(d, "failure_ratio", prefix, b.failure_ratio);
  take(d, "window", prefix, b.window);
  take(d, "open_delay", prefix, b.open_delay);
  take(d, "max_open_delay", prefix, b.max_open_delay);
  take(d, "probe_timeout", prefix, b.probe_timeout);
}

/// The CLI's [pool] adaptive-* options (app/options.cpp), without the prefix.
void apply_adaptive(adaptive_poll_options& a, const pyb::dict& d, const std::string& prefix) {
  check_keys(d, {"enabled", "polls", "min_samples", "max_gap_factor"}, prefix);
  take(d, "enabled", prefix, a.enabled);
  take(d, "polls", prefix, a.polls);
  take(d, "min_samples", prefix, a.min_samples);
  take(d, "max_gap_factor", prefix, a.max_gap_factor);
}

/// The CLI's [webhook] options (app/options.cpp); the token comes from
/// SAIL_TINKER_WEBHOOK_TOKEN or is made at start, as for `serve`.
void apply_webhook(webhook_options& w, const pyb::dict& d, const std::string& prefix) {
  check_keys(d,
             {"enabled", "host", "port", "path", "public_url", "certificate", "key",
              "insecure_plaintext", "body_limit"},
             prefix);
  take(d, "enabled", prefix, w.enabled);
  take(d, "host", prefix, w.host);
  take(d, "port", prefix, w.port);
  take(d, "path", prefix, w.path);
  take(d, "public_url", prefix, w.public_url);
  take(d, "certificate", prefix, w.tls_certificate_file);
  take(d, "key", prefix, w.tls_key_file);
  take(d, "insecure_plaintext", prefix, w.allow_plaintext);
  take(d, "body_limit", prefix, w.body_limit);
}

/// The CLI's [wire] options (app/options.cpp; net/wire_options.hpp).
void apply_wire(wire_options& w, const pyb::dict& d, const std::string& prefix) {
  check_keys(d,
             {"stop_field", "logprobs", "include_value", "layout", "lora_key", "signed_url_key",
              "adapter_config_key", "lora_name_key"},
             prefix);
  take(d, "stop_field", prefix, w.stop_field);
  take(d, "logprobs", prefix, w.logprobs);
  take(d, "include_value", prefix, w.include_value);
  take(d, "layout", prefix, w.layout);
  take(d, "lora_key", prefix, w.lora_key);
  take(d, "signed_url_key", prefix, w.signed_url_key);
  take(d, "adapter_config_key", prefix, w.adapter_config_key);
  take(d, "lora_name_key", prefix, w.lora_name_key);
}

void append_key(std::string& out, const std::string& field) {
  out += std::to_string(field.size());
  out += ':';
  out += field;
}

} // namespace

// -- scalars ------------------------------------------------------------------------------

caf::timespan to_timespan(pyb::handle seconds, const std::string& field, bool allow_zero) {
  auto s = as_double(seconds, field);
  if (!std::isfinite(s) || s < 0 || (!allow_zero && s == 0))
    bad_value(field, field + (allow_zero ? " must be a finite number of seconds >= 0"
                                         : " must be a finite number of seconds > 0"));
  // Beyond a century is a mistake, and would overflow nanoseconds.
  if (s > 3.2e9)
    bad_value(field, field + " is too large");
  return std::chrono::duration_cast<caf::timespan>(std::chrono::duration<double>(s));
}

// -- sample input -------------------------------------------------------------------------

model_input to_prompt(pyb::handle tokens) {
  if (pyb::isinstance<pyb::str>(tokens) || pyb::isinstance<pyb::bytes>(tokens)
      || !PySequence_Check(tokens.ptr()))
    bad_type("model_input", "a list of int token ids or an object with to_ints()", tokens);
  auto seq = pyb::reinterpret_steal<pyb::object>(
    PySequence_Fast(tokens.ptr(), "model_input must be a sequence of ints"));
  if (!seq)
    throw pyb::error_already_set();
  auto n = PySequence_Fast_GET_SIZE(seq.ptr());
  auto** items = PySequence_Fast_ITEMS(seq.ptr());
  model_input out;
  out.tokens.resize(static_cast<size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* x = items[i];
    if (PyLong_CheckExact(x)) {
      int overflow = 0;
      auto v = PyLong_AsLongLongAndOverflow(x, &overflow);
      // Out of int64 range: keep it out of 0..2^31-1 so validation names it.
      out.tokens[static_cast<size_t>(i)] = overflow != 0 ? -1 : static_cast<int64_t>(v);
      continue;
    }
    if (!is_int(x))
      throw pyb::type_error("prompt token at index " + std::to_string(i)
                            + " must be an int, not " + Py_TYPE(x)->tp_name);
    int overflow = 0;
    auto idx = pyb::reinterpret_steal<pyb::object>(PyNumber_Index(x));
    if (!idx)
      throw pyb::error_already_set();
    auto v = PyLong_AsLongLongAndOverflow(idx.ptr(), &overflow);
    out.tokens[static_cast<size_t>(i)] = overflow != 0 ? -1 : static_cast<int64_t>(v);
  }
  return out;
}

stop_condition to_stop(pyb::handle stop) {
  if (stop.is_none())
    return stop_condition::none();
  if (pyb::isinstance<pyb::str>(stop))
    return stop_condition::text(stop.cast<std::string>());
  if (is_int(stop))
    return stop_condition::token(as_int64(stop, "stop"));
  if (!pyb::isinstance<pyb::list>(stop) && !pyb::isinstance<pyb::tuple>(stop))
    bad_type("stop", "None, an int, a str, or a list of ints or of strs", stop);
  std::vector<int64_t> ids;
  std::vector<std::string> texts;
  for (auto x : stop) {
    if (pyb::isinstance<pyb::str>(x))
      texts.push_back(x.cast<std::string>());
    else if (is_int(x))
      ids.push_back(as_int64(x, "stop"));
    else
      bad_type("stop items", "ints or strs", x);
  }
  if (!ids.empty() && !texts.empty())
    bad_value("stop", "stop mixes token ids and strings");
  return texts.empty() ? stop_condition::tokens(std::move(ids))
                       : stop_condition::texts(std::move(texts));
}

// -- configuration ------------------------------------------------------------------------

completer_config to_config(const pyb::dict& d) {
  completer_config c;
  c.model = opt_str(d, "model").value_or("");
  auto max_tokens = opt_int(d, "max_tokens", "max_tokens");
  if (!max_tokens)
    throw pyb::type_error("max_tokens must be an int, not None");
  c.max_tokens = *max_tokens;
  c.temperature = opt_double(d, "temperature", "temperature").value_or(1.0);
  c.top_p = opt_double(d, "top_p", "top_p").value_or(1.0);
  c.completion_window = opt_str(d, "completion_window").value_or("priority");
  c.lora = opt_str(d, "lora");
  c.tinker_lora_signed_url = opt_str(d, "tinker_lora_signed_url");
  c.adapter_config = opt_str(d, "adapter_config");
  c.tinker_lora_name = opt_str(d, "tinker_lora_name");
  c.tinker_checkpoint = opt_str(d, "tinker_checkpoint");
  c.tinker_ttl_seconds = opt_int(d, "tinker_ttl_seconds", "tinker_ttl_seconds");
  auto md = item(d, "metadata");
  if (!md.is_none()) {
    if (!pyb::isinstance<pyb::dict>(md))
      bad_type("metadata", "a dict of str to str", md);
    for (auto kv : md.cast<pyb::dict>()) {
      if (!pyb::isinstance<pyb::str>(kv.first) || !pyb::isinstance<pyb::str>(kv.second))
        throw pyb::type_error("metadata must map str to str");
      c.metadata.emplace(kv.first.cast<std::string>(), kv.second.cast<std::string>());
    }
  }
  auto timeout = item(d, "timeout");
  if (!timeout.is_none())
    c.timeout = to_timespan(timeout, "timeout");
  auto voy = item(d, "voyage");
  if (!voy.is_none()) {
    auto vd = voy.cast<pyb::dict>();
    sail::voyage v;
    v.id = opt_str(vd, "id", "voyage.id").value_or("");
    v.span_id = opt_str(vd, "span_id", "voyage.span_id");
    v.agent_id = opt_str(vd, "agent_id", "voyage.agent_id");
    c.voyage = std::move(v);
  }
  auto logprobs = item(d, "request_logprobs");
  if (!logprobs.is_none()) {
    if (!PyBool_Check(logprobs.ptr()))
      bad_type("request_logprobs", "a bool", logprobs);
    c.request_logprobs = logprobs.cast<bool>();
  }
  return c;
}

runtime_options to_runtime_options(const pyb::dict& target, std::string& key) {
  // The same environment as the C++ runtime (SAIL_API_KEY, SAIL_BASE_URL,
  // TINKER_*, proxies), then the keyword arguments on top.
  auto opts = runtime_options::from_env();
  if (auto v = opt_str(target, "base_url")) {
    opts.sail_base_url = *v;
    opts.sail_base_url_origin = "base_url";
  }
  if (auto v = opt_str(target, "api_key"))
    opts.sail_api_key = *v;
  if (auto v = opt_str(target, "tinker_base_url"))
    opts.tinker_base_url = *v;
  if (auto v = opt_str(target, "tinker_api_key"))
    opts.tinker_api_key = *v;
  // A Python trainer awaits and does not handle `overloaded`: queue deeply
  // by default (a GRPO batch of 64 groups x 32 is 2,048 samples at once).
  opts.pool.max_queued = 1 << 16;
  auto o = opt_dict(target, "options", "runtime_options");
  const std::string p = "runtime_options.";
  check_keys(o,
             {"io_threads", "workers", "max_in_flight", "max_queued", "call_timeout",
              "poll_growth", "poll_jitter", "windows", "default_window", "all_windows",
              "retry", "resolver_retry", "retry_budget", "breaker", "max_connections",
              "shutdown_grace", "seed", "models", "adaptive", "webhook", "wire"},
             p);
  // The model table (validation.hpp): {"<model>": {"windows": [...], "lora":
  // bool}}, replacing the built-in one.
  auto models = item(o, "models");
  if (!models.is_none()) {
    if (!pyb::isinstance<pyb::dict>(models))
      bad_type(p + "models", "a dict of model -> {windows, lora}", models);
    pyb::dict wrapped;
    wrapped["models"] = models;
    auto text = pyb::module_::import("json").attr("dumps")(wrapped).cast<std::string>();
    auto table = model_table::from_json(text);
    if (!table)
      raise_error(table.error());
    opts.models = std::move(*table);
  }
  take(o, "io_threads", p, opts.io_threads);
  take(o, "workers", p, opts.pool.workers);
  take(o, "max_in_flight", p, opts.pool.max_in_flight);
  take(o, "max_queued", p, opts.pool.max_queued);
  take(o, "call_timeout", p, opts.pool.call_timeout);
  take(o, "poll_growth", p, opts.pool.poll_growth);
  take(o, "poll_jitter", p, opts.pool.poll_jitter);
  // all_windows first, so that a named window can still differ.
  auto all = opt_dict(o, "all_windows", p + "all_windows");
  if (!all.empty()) {
    for (auto& [name, timing] : opts.pool.windows)
      apply_timing(timing, all, p + "all_windows.");
    apply_timing(opts.pool.default_timing, all, p + "all_windows.");
  }
  for (auto kv : opt_dict(o, "windows", p + "windows")) {
    auto name = kv.first.cast<std::string>();
    if (!pyb::isinstance<pyb::dict>(kv.second))
      bad_type(p + "windows." + name, "a dict", kv.second);
    auto& timing = opts.pool.windows[name];
    apply_timing(timing, kv.second.cast<pyb::dict>(), p + "windows." + name + ".");
  }
  apply_timing(opts.pool.default_timing, opt_dict(o, "default_window", p + "default_window"),
               p + "default_window.");
  apply_retry(opts.pool.retry, opt_dict(o, "retry", p + "retry"), p + "retry.");
  apply_retry(opts.resolver.retry, opt_dict(o, "resolver_retry", p + "resolver_retry"),
              p + "resolver_retry.");
  apply_retry_budget(opts.pool.retry_budget, opt_dict(o, "retry_budget", p + "retry_budget"),
                     p + "retry_budget.");
  apply_breaker(opts.pool.breaker, opt_dict(o, "breaker", p + "breaker"), p + "breaker.");
  apply_adaptive(opts.pool.adaptive, opt_dict(o, "adaptive", p + "adaptive"), p + "adaptive.");
  apply_webhook(opts.webhook, opt_dict(o, "webhook", p + "webhook"), p + "webhook.");
  take(o, "max_connections", p, opts.http.max_connections_per_origin);
  take(o, "shutdown_grace", p, opts.shutdown_grace);
  apply_wire(opts.wire, opt_dict(o, "wire", p + "wire"), p + "wire.");
  if (auto x = opt_int(o, "seed", p + "seed")) {
    opts.pool.seed = static_cast<uint64_t>(*x);
    opts.resolver.seed = static_cast<uint64_t>(*x);
  }
  raise_if(opts.validate(), {{"sail.", p},
                             {"pool.retry-budget-", p + "retry_budget."},
                             {"pool.breaker-", p + "breaker."},
                             {"pool.adaptive-", p + "adaptive."},
                             {"webhook.", p + "webhook."},
                             {"pool.retry-", p + "retry."},
                             {"pool.default-window.", p + "default_window."},
                             {"pool.", p},
                             {"http.max-connections-per-origin", p + "max_connections"},
                             {"resolver.", p + "resolver_retry."},
                             {"wire.", p + "wire."}});
  // The endpoint as the runtime will resolve it (SAIL_BASE_URL, SAIL_API_URL
  // or SAIL_MODE); an invalid one is reported by runtime::start.
  auto resolved = opts.resolve_sail_base_url();
  append_key(key, resolved ? *resolved : opts.sail_base_url + "|" + opts.sail_mode);
  append_key(key, opts.sail_api_key);
  append_key(key, opts.tinker_base_url);
  append_key(key, opts.tinker_api_key);
  // The options as given (sorted by the package), so equal options share.
  append_key(key, pyb::str(pyb::repr(o)).cast<std::string>());
  return opts;
}

cluster_options to_cluster_options(const pyb::dict& target, completer_config cfg,
                                   system_settings& ss) {
  cluster_options opts;
  opts.config = std::move(cfg);
  auto nodes = item(target, "nodes");
  if (nodes.is_none() || pyb::isinstance<pyb::str>(nodes)
      || !(pyb::isinstance<pyb::list>(nodes) || pyb::isinstance<pyb::tuple>(nodes)))
    bad_type("nodes", "a list of \"host:port\" strings", nodes);
  std::string joined;
  for (auto n : nodes) {
    if (!pyb::isinstance<pyb::str>(n))
      bad_type("nodes items", "\"host:port\" strings", n);
    if (!joined.empty())
      joined += ',';
    joined += n.cast<std::string>();
  }
  auto parsed = parse_node_list(joined, "nodes");
  if (!parsed)
    raise_error(parsed.error());
  opts.nodes = std::move(*parsed);
  ss.tls_certificate = opt_str(target, "tls_certificate").value_or("");
  ss.tls_key = opt_str(target, "tls_key").value_or("");
  ss.tls_cafile = opt_str(target, "tls_cafile").value_or("");
  ss.tls_capath = opt_str(target, "tls_capath").value_or("");
  ss.tls_passphrase = opt_str(target, "tls_passphrase").value_or("");
  auto tls = item(target, "tls");
  if (!tls.is_none()) {
    if (!PyBool_Check(tls.ptr()))
      bad_type("tls", "a bool or None", tls);
    opts.security = tls.cast<bool>() ? transport_security::tls : transport_security::plain;
  }
  auto o = opt_dict(target, "options", "cluster_options");
  const std::string p = "cluster_options.";
  check_keys(o,
             {"connect_timeout", "obtain_timeout", "request_timeout", "retry_min",
              "retry_max", "queue_timeout", "max_attempts", "stats_timeout", "seed",
              "heartbeat_interval", "connection_timeout"},
             p);
  take(o, "connect_timeout", p, opts.connect_timeout);
  take(o, "obtain_timeout", p, opts.obtain_timeout);
  take(o, "request_timeout", p, opts.request_timeout);
  take(o, "retry_min", p, opts.retry_min);
  take(o, "retry_max", p, opts.retry_max);
  take(o, "queue_timeout", p, opts.queue_timeout);
  take(o, "stats_timeout", p, opts.stats_timeout);
  take(o, "max_attempts", p, opts.max_routes);
  if (auto x = opt_int(o, "seed", p + "seed"))
    opts.seed = static_cast<uint64_t>(*x);
  // Failure detection belongs to the actor system (CAF's middleman).
  // (No options struct: to_timespan's own check, > 0.)
  auto system_seconds = [&](const char* key) -> std::optional<caf::timespan> {
    auto v = item(o, key);
    if (v.is_none())
      return std::nullopt;
    return to_timespan(v, p + key);
  };
  ss.heartbeat_interval = system_seconds("heartbeat_interval");
  ss.connection_timeout = system_seconds("connection_timeout");
  raise_if(validate(opts), {{"cluster.", p}});
  return opts;
}

resolver_options to_resolver_options(const pyb::dict& target, http_client_options& http) {
  auto env = runtime_options::from_env();
  http = env.http;
  auto opts = env.resolver;
  auto base = opt_str(target, "base_url");
  if (base) {
    auto checked = checked_tinker_base_url(*base);
    if (!checked)
      raise_error(checked.error());
    opts.base_url = std::move(*checked);
  } else {
    auto checked = checked_tinker_base_url(env.tinker_base_url);
    if (!checked)
      raise_error(checked.error());
    opts.base_url = std::move(*checked);
  }
  opts.api_key = opt_str(target, "api_key").value_or(env.tinker_api_key);
  if (auto err = check_tinker_api_key(opts.api_key))
    raise_error(err);
  auto o = opt_dict(target, "options", "resolver_options");
  const std::string p = "resolver_options.";
  check_keys(o, {"retry", "call_timeout", "seed"}, p);
  apply_retry(opts.retry, opt_dict(o, "retry", p + "retry"), p + "retry.");
  take(o, "call_timeout", p, opts.call_timeout);
  if (auto x = opt_int(o, "seed", p + "seed"))
    opts.seed = static_cast<uint64_t>(*x);
  raise_if(opts.validate(), {{"resolver.call-timeout", p + "call_timeout"},
                             {"resolver.refresh-margin", p + "refresh_margin"},
                             {"resolver.", p + "retry."}});
  return opts;
}

// -- results ------------------------------------------------------------------------------

pyb::dict to_dict(const completer_stats& s) {
  pyb::dict d;
  d["in_flight"] = s.in_flight;
  d["completed"] = s.completed;
  d["polls"] = s.polls;
  pyb::dict failed;
  for (auto& [k, v] : s.failed_by_kind)
    failed[pyb::str(k)] = v;
  d["failed_by_kind"] = failed;
  pyb::dict retries;
  for (auto& [k, v] : s.retries_by_cause)
    retries[pyb::str(k)] = v;
  d["retries_by_cause"] = retries;
  pyb::dict webhooks;
  for (auto& [k, v] : s.webhooks)
    webhooks[pyb::str(k)] = v;
  d["webhooks"] = webhooks;
  auto& g = s.guard;
  pyb::dict guard;
  guard["breaker"] = g.breaker;
  guard["breaker_opened"] = g.breaker_opened;
  guard["next_probe_ms"] = g.next_probe_ms;
  guard["probes"] = g.probes;
  guard["held"] = g.held;
  guard["rejected"] = g.rejected;
  guard["budget_requests"] = g.budget_requests;
  guard["budget_retries"] = g.budget_retries;
  guard["budget_allowed"] = g.budget_allowed;
  guard["budget_denied"] = g.budget_denied;
  d["guard"] = guard;
  pyb::list usage;
  for (auto& u : s.usage) {
    pyb::dict x;
    x["model"] = u.model;
    x["window"] = u.window;
    x["samples"] = u.samples;
    x["unknown"] = u.unknown;
    x["input_tokens"] = u.input_tokens;
    x["cached_tokens"] = u.cached_tokens;
    x["output_tokens"] = u.output_tokens;
    x["reasoning_tokens"] = u.reasoning_tokens;
    usage.append(std::move(x));
  }
  d["usage"] = usage;
  return d;
}

pyb::dict to_dict(const node_status& s) {
  pyb::dict d;
  d["address"] = s.address.to_string();
  d["state"] = to_string(s.state);
  d["in_flight"] = s.in_flight;
  d["completed"] = s.completed;
  d["failed"] = s.failed;
  d["rerouted"] = s.rerouted;
  d["connects"] = s.connects;
  d["losses"] = s.losses;
  d["failed_attempts"] = s.failed_attempts;
  d["last_error"] = s.last_error;
  return d;
}

} // namespace sail::py
