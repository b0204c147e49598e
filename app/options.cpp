#include "sail_tinker/app/options.hpp"

#include <fstream>
#include <sstream>

#include <caf/config_option_adder.hpp>

#include "sail_tinker/app/log.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/option_check.hpp"

namespace sail::app {

namespace {

using adder = caf::config_option_adder;

// One function per options struct: adding a field to the struct and to the
// configuration is one line here (plus its range in the struct's validate()).

void add_retry(adder& a, retry_options& r) {
  a.add(r.max_attempts, "retry-max-attempts",
        "cap on the HTTP attempts of one call (create or poll); 0: none, the sample's deadline")
    .add(r.base_delay, "retry-base-delay", "backoff cap of the first retry")
    .add(r.max_delay, "retry-max-delay", "upper bound of the backoff cap")
    .add(r.max_retry_after, "retry-max-retry-after", "cap on an honoured Retry-After");
}

void add_adaptive(adder& a, adaptive_poll_options& p) {
  a.add(p.enabled, "adaptive-polling",
        "plan polls from the completion latency learned per model and window")
    .add(p.polls, "adaptive-polls", "polls across the learned latency distribution")
    .add(p.min_samples, "adaptive-min-samples",
         "finished samples of a model and window before its plan is used")
    .add(p.max_gap_factor, "adaptive-max-gap-factor",
         "a planned gap may stretch to this multiple of the window's max poll (>= 1)");
}

void add_retry_budget(adder& a, retry_budget_options& b) {
  a.add(b.ratio, "retry-budget-ratio", "retries allowed per first attempt in the window")
    .add(b.min_per_second, "retry-budget-min-per-second",
         "retries allowed per second of the window whatever the traffic")
    .add(b.window, "retry-budget-window", "sliding window of the retry budget");
}

void add_breaker(adder& a, circuit_breaker_options& b) {
  a.add(b.min_failures, "breaker-min-failures",
        "failures within the window that open the circuit breaker (0: no breaker)")
    .add(b.failure_ratio, "breaker-failure-ratio",
         "...if they are at least this share of the window's attempts")
    .add(b.consecutive_failures, "breaker-consecutive-failures",
         "failures in a row that open the circuit breaker at once (0: off)")
    .add(b.window, "breaker-window", "sliding window of the circuit breaker")
    .add(b.open_delay, "breaker-open-delay", "wait before the first probe (doubles per failed probe)")
    .add(b.max_open_delay, "breaker-max-open-delay", "longest wait between probes")
    .add(b.probe_timeout, "breaker-probe-timeout", "a probe without an answer is replaced after this");
}

void add_pool(adder& a, pool_options& p, config_extras& x) {
  a.add(p.workers, "workers", "HTTP workers")
    .add(p.max_in_flight, "max-in-flight", "samples in flight on this node")
    .add(p.max_queued, "max-queued", "samples waiting for admission (beyond: overloaded)")
    .add(p.max_dispatch_attempts, "max-dispatch-attempts", "dispatches of one job")
    .add(p.max_restarts, "max-restarts", "worker restarts within restart-window before escalation")
    .add(p.restart_window, "restart-window", "window of the restart intensity")
    .add(p.call_timeout, "call-timeout", "per-HTTP-call timeout when the job sets none")
    .add(p.poll_growth, "poll-growth", "poll interval growth factor")
    .add(p.poll_jitter, "poll-jitter", "poll interval jitter (+/- fraction)")
    .add(p.seed, "seed", "seed of the jitter (0: random)");
  add_retry(a, p.retry);
  add_adaptive(a, p.adaptive);
  a.add(x.webhook_first_poll, "webhook-first-poll",
        "with a webhook expected: first safety-net poll, every window (0: per window)")
    .add(x.webhook_poll, "webhook-poll",
         "with a webhook expected: safety-net poll interval, every window (0: per window)");
  add_retry_budget(a, p.retry_budget);
  add_breaker(a, p.breaker);
}

void add_webhook(adder& a, webhook_options& w) {
  a.add(w.enabled, "enabled", "receive Sail's completion webhooks")
    .add(w.host, "host", "address the receiver listens on")
    .add(w.port, "port", "port the receiver listens on (0: any free port)")
    .add(w.path, "path", "request path of deliveries")
    .add(w.public_url, "public-url",
         "the URL Sail calls (through NAT or a load balancer); default: the bound address")
    .add(w.tls_certificate_file, "certificate", "TLS certificate chain (PEM)")
    .add(w.tls_key_file, "key", "TLS private key (PEM)")
    .add(w.allow_plaintext, "insecure-plaintext",
         "allow a plaintext listener off loopback (TLS terminated in front of it)")
    .add(w.body_limit, "body-limit", "largest delivery body in bytes");
}

void add_completer(adder& a, completer_options& c, config_extras& x) {
  a.add(x.group_policy, "group-policy", "fail_group | partial (a failed group member)")
    .add(c.max_group_size, "max-group-size", "largest n of sample_group")
    .add(c.resolve_timeout, "resolve-timeout", "timeout of a resolve request");
}

void add_http(adder& a, http_client_options& h) {
  a.add(h.timeouts.connect, "connect-timeout", "name resolution + TCP connect")
    .add(h.timeouts.tls_handshake, "tls-handshake-timeout", "TLS handshake")
    .add(h.timeouts.write, "write-timeout", "sending one request")
    .add(h.timeouts.read, "read-timeout", "receiving one response")
    .add(h.max_connections_per_origin, "max-connections-per-origin", "keep-alive pool size per origin")
    .add(h.idle_timeout, "idle-timeout", "idle keep-alive connections close after this")
    .add(h.tls.ca_file, "ca-file", "PEM file with extra trusted CAs")
    .add(h.user_agent, "user-agent", "User-Agent header");
}

void add_resolver(adder& a, resolver_options& r) {
  a.add(r.call_timeout, "call-timeout", "timeout of one Tinker REST call")
    .add(r.refresh_margin, "refresh-margin", "signed URLs: refreshed from 2 margins before expiry, unused in the last margin")
    .add(r.retry.max_attempts, "max-attempts", "attempts of one Tinker REST call")
    .add(r.retry.still_building_delay, "still-building-delay", "wait after a 503 'still building'");
}

void add_wire(adder& a, wire_options& w) {
  a.add(w.stop_field, "stop-field",
        "where stop token ids go: " + join_choices(wire_options::stop_field_choices()))
    .add(w.logprobs, "logprobs",
         "how logprobs are requested: " + join_choices(wire_options::logprobs_choices()))
    .add(w.include_value, "include-value", "the include value requesting logprobs")
    .add(w.layout, "layout",
         "where a response carries the output: " + join_choices(wire_options::layout_choices()))
    .add(w.lora_key, "lora-key", "metadata key of a Sail LoRA name")
    .add(w.signed_url_key, "signed-url-key", "metadata key of a Tinker signed URL")
    .add(w.adapter_config_key, "adapter-config-key", "metadata key of the adapter config")
    .add(w.lora_name_key, "lora-name-key", "metadata key of the Tinker LoRA name");
}

void add_cluster(adder& a, cluster_options& c) {
  a.add(c.connect_timeout, "connect-timeout", "one connect attempt to a service node (TCP, TLS, handshake)")
    .add(c.queue_timeout, "queue-timeout", "how long a sample waits while no node is ready")
    .add(c.max_routes, "max-attempts", "routes per sample (first send + re-routes)")
    .add(c.retry_min, "retry-min", "first reconnect delay (doubled per failure)")
    .add(c.retry_max, "retry-max", "longest reconnect delay");
}

} // namespace

const std::vector<std::string>& app_option_groups() {
  static const std::vector<std::string> groups{"sail",    "pool",    "completer", "http",
                                               "resolver", "cluster", "webhook",   "pricing",
                                               "log",      "wire"};
  return groups;
}

void add_app_options(caf::config_option_set& opts, app_options& o) {
  auto& rt = o.runtime;
  adder{opts, "sail"}
    .add(rt.io_threads, "io-threads", "threads running the HTTP client's io_context")
    .add(o.extras.model_table_file, "model-table", "JSON file with the model table "
                                                   "({\"models\":{...}}); default: built-in")
    .add(rt.shutdown_grace, "shutdown-grace", "bound of each shutdown stage");
  adder pool{opts, "pool"};
  add_pool(pool, rt.pool, o.extras);
  adder webhook{opts, "webhook"};
  add_webhook(webhook, rt.webhook);
  adder completer{opts, "completer"};
  add_completer(completer, rt.completer, o.extras);
  adder http{opts, "http"};
  add_http(http, rt.http);
  adder resolver{opts, "resolver"};
  add_resolver(resolver, rt.resolver);
  adder cluster{opts, "cluster"};
  add_cluster(cluster, o.cluster);
  adder wire{opts, "wire"};
  add_wire(wire, rt.wire);
  adder{opts, "pricing"}.add(o.extras.prices_file, "file",
                             "prices file ({\"prices\":[{model, window, input, cached_input, "
                             "output}]}, USD per 1M tokens); rollout --prices wins");
  adder{opts, "log"}
    .add(o.log.level, "level", "debug | info | warn | error | off")
    .add(o.log.format, "format", "text | json");
}

caf::error config_extras::validate() const {
  using namespace option_check;
  if (!group_policy.empty() && group_policy != "fail_group" && group_policy != "partial")
    return invalid_argument("completer.group-policy", "expected fail_group or partial");
  return first_error(non_negative(webhook_first_poll, "pool.webhook-first-poll"),
                     non_negative(webhook_poll, "pool.webhook-poll"));
}

caf::expected<runtime_options> make_runtime_options(const app_options& o,
                                                    const std::optional<std::string>& base_url) {
  if (auto err = o.extras.validate())
    return err;
  auto opts = runtime_options::from_env(o.runtime);
  if (base_url) {
    opts.sail_base_url = *base_url;
    opts.sail_base_url_origin = "base-url";
  }
  auto resolved = opts.resolve_sail_base_url();
  if (!resolved)
    return std::move(resolved.error());
  opts.sail_base_url = std::move(*resolved);
  auto& x = o.extras;
  if (!x.model_table_file.empty()) {
    std::ifstream in{x.model_table_file};
    if (!in)
      return invalid_argument("sail.model-table", "cannot read " + x.model_table_file);
    std::stringstream buf;
    buf << in.rdbuf();
    auto table = model_table::from_json(buf.str());
    if (!table)
      return std::move(table.error());
    opts.models = std::move(*table);
  }
  auto& p = opts.pool;
  auto webhook_timing = [&x](window_timing& w) {
    if (x.webhook_first_poll.count() > 0)
      w.webhook_first_poll = x.webhook_first_poll;
    if (x.webhook_poll.count() > 0)
      w.webhook_poll = x.webhook_poll;
  };
  webhook_timing(p.default_timing);
  for (auto& [name, w] : p.windows)
    webhook_timing(w);
  p.on_breaker_change = [](breaker_state state, const std::string& detail) {
    auto msg = std::string{"circuit breaker "} + to_string(state);
    if (state == breaker_state::closed)
      log_info("pool", msg, {{"detail", detail}});
    else
      log_warn("pool", msg, {{"detail", detail}});
  };
  opts.completer.group_policy = x.group_policy == "partial" ? group_failure_policy::partial
                                                            : group_failure_policy::fail_group;
  if (auto err = opts.validate())
    return err;
  return opts;
}

} // namespace sail::app
