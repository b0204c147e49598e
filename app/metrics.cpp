#include "sail_tinker/app/metrics.hpp"

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/status.hpp>
#include <caf/event_based_actor.hpp>

#include "sail_tinker/app/cli.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/fwd.hpp"

namespace sail::app {

// -- text format -----------------------------------------------------------------------

namespace {

std::string escape_label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string number(double v) {
  if (std::isinf(v))
    return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, res.ptr);
}

void header(std::ostringstream& out, const char* name, const char* type, const char* help) {
  out << "# HELP " << name << ' ' << help << '\n' << "# TYPE " << name << ' ' << type << '\n';
}

} // namespace

std::string render_prometheus(const completer_stats& stats,
                              const std::map<std::string, request_metrics::op_data>& ops) {
  std::ostringstream out;
  header(out, "sail_tinker_build_info", "gauge", "Version of this node (always 1).");
  out << "sail_tinker_build_info{version=\"" << version << "\",protocol=\""
      << escape_label(protocol_version) << "\"} 1\n";
  header(out, "sail_tinker_samples_in_flight", "gauge",
         "Samples accepted by this node (every completer) and not yet finished.");
  out << "sail_tinker_samples_in_flight " << stats.in_flight << '\n';
  header(out, "sail_tinker_samples_completed_total", "counter",
         "Samples that finished with a result.");
  out << "sail_tinker_samples_completed_total " << stats.completed << '\n';
  header(out, "sail_tinker_samples_failed_total", "counter",
         "Samples that finished with an error, by error kind.");
  auto failed = stats.failed_by_kind;
  for (uint8_t c = 1; c <= errc_count; ++c)
    failed.emplace(to_string(static_cast<errc>(c)), 0);
  for (auto& [kind, n] : failed)
    out << "sail_tinker_samples_failed_total{kind=\"" << escape_label(kind) << "\"} " << n
        << '\n';
  header(out, "sail_tinker_usage_samples_total", "counter",
         "Samples that finished with a result, by model, completion window and whether the "
         "response reported its usage (known) or not (unknown: no or a malformed usage).");
  for (auto& u : stats.usage) {
    auto labels = "model=\"" + escape_label(u.model) + "\",window=\"" + escape_label(u.window)
                  + '"';
    out << "sail_tinker_usage_samples_total{" << labels << ",usage=\"known\"} " << u.samples
        << '\n';
    out << "sail_tinker_usage_samples_total{" << labels << ",usage=\"unknown\"} " << u.unknown
        << '\n';
  }
  header(out, "sail_tinker_usage_tokens_total", "counter",
         "Tokens billed as the responses' usage reports them, by model, completion window and "
         "kind (input includes cached; output includes reasoning).");
  for (auto& u : stats.usage) {
    auto labels = "model=\"" + escape_label(u.model) + "\",window=\"" + escape_label(u.window)
                  + '"';
    std::pair<const char*, uint64_t> kinds[] = {{"input", u.input_tokens},
                                                {"cached", u.cached_tokens},
                                                {"output", u.output_tokens},
                                                {"reasoning", u.reasoning_tokens}};
    for (auto& [kind, n] : kinds)
      out << "sail_tinker_usage_tokens_total{" << labels << ",kind=\"" << kind << "\"} " << n
          << '\n';
  }
  header(out, "sail_tinker_retries_total", "counter",
         "HTTP retries and re-dispatches, by cause (http_429, transport, timeout, ...).");
  for (auto& [cause, n] : stats.retries_by_cause)
    out << "sail_tinker_retries_total{cause=\"" << escape_label(cause) << "\"} " << n << '\n';
  auto& g = stats.guard;
  header(out, "sail_tinker_breaker_state", "gauge",
         "Circuit breaker of the pool: 1 for its current state (closed, half_open, open).");
  for (auto state : {"closed", "half_open", "open"})
    out << "sail_tinker_breaker_state{state=\"" << state << "\"} " << (g.breaker == state ? 1 : 0)
        << '\n';
  header(out, "sail_tinker_breaker_opened_total", "counter", "Times the circuit breaker opened.");
  out << "sail_tinker_breaker_opened_total " << g.breaker_opened << '\n';
  header(out, "sail_tinker_breaker_next_probe_seconds", "gauge",
         "While the breaker is open: seconds until its next probe (else 0).");
  out << "sail_tinker_breaker_next_probe_seconds "
      << number(static_cast<double>(g.next_probe_ms) / 1000.0) << '\n';
  header(out, "sail_tinker_breaker_probes_total", "counter",
         "Attempts let through as the breaker's probe.");
  out << "sail_tinker_breaker_probes_total " << g.probes << '\n';
  header(out, "sail_tinker_breaker_held_total", "counter",
         "Attempts held back while the breaker was not closed.");
  out << "sail_tinker_breaker_held_total " << g.held << '\n';
  header(out, "sail_tinker_retry_budget", "gauge",
         "The retry budget's sliding window: first attempts, retries, and the retries allowed.");
  out << "sail_tinker_retry_budget{window=\"requests\"} " << g.budget_requests << '\n'
      << "sail_tinker_retry_budget{window=\"retries\"} " << g.budget_retries << '\n'
      << "sail_tinker_retry_budget{window=\"allowed\"} " << g.budget_allowed << '\n';
  header(out, "sail_tinker_retry_budget_denied_total", "counter",
         "Retries deferred because the retry budget was spent.");
  out << "sail_tinker_retry_budget_denied_total " << g.budget_denied << '\n';
  header(out, "sail_tinker_polls_total", "counter",
         "GET polls sent for completed samples.");
  out << "sail_tinker_polls_total " << stats.polls << '\n';
  header(out, "sail_tinker_webhooks_total", "counter",
         "Completion webhooks by outcome: received, applied (finished a sample), "
         "duplicate, unknown, early (claimed after its create), rejected_<reason>.");
  auto hooks = stats.webhooks;
  for (auto k : {"received", "applied", "duplicate", "unknown", "early", "rejected_unauthorized",
                 "rejected_bad_route", "rejected_too_large", "rejected_malformed"})
    hooks.emplace(k, 0);
  for (auto& [outcome, n] : hooks)
    out << "sail_tinker_webhooks_total{outcome=\"" << escape_label(outcome) << "\"} " << n
        << '\n';
  // Both histograms come as counts per bucket (completer_stats); Prometheus
  // wants cumulative counts.
  auto histogram = [&out](const char* name, const auto& bounds,
                          const std::vector<uint64_t>& counts, double scale, double sum) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bounds.size(); ++i) {
      cumulative += i < counts.size() ? counts[i] : 0;
      out << name << "_bucket{le=\"" << number(static_cast<double>(bounds[i]) * scale)
          << "\"} " << cumulative << '\n';
    }
    if (counts.size() > bounds.size())
      cumulative += counts[bounds.size()];
    out << name << "_bucket{le=\"+Inf\"} " << cumulative << '\n';
    out << name << "_sum " << number(sum) << '\n';
    out << name << "_count " << cumulative << '\n';
  };
  header(out, "sail_tinker_polls_per_sample", "histogram",
         "GET polls per completed sample.");
  histogram("sail_tinker_polls_per_sample", polls_buckets, stats.polls_per_sample, 1.0,
            static_cast<double>(stats.polls));
  header(out, "sail_tinker_notice_delay_seconds", "histogram",
         "Completion (the response's completed_at) to result in hand, for responses "
         "that carry completed_at.");
  histogram("sail_tinker_notice_delay_seconds", notice_buckets_ms, stats.notice_delay, 0.001,
            static_cast<double>(stats.notice_delay_sum_ms) / 1000.0);
  header(out, "sail_tinker_requests_total", "counter",
         "Requests answered by this node's completer fronts, by operation and outcome.");
  for (auto& [op, d] : ops) {
    out << "sail_tinker_requests_total{op=\"" << escape_label(op) << "\",outcome=\"ok\"} "
        << d.ok << '\n';
    out << "sail_tinker_requests_total{op=\"" << escape_label(op)
        << "\",outcome=\"error\"} " << d.failed << '\n';
  }
  header(out, "sail_tinker_request_latency_seconds", "histogram",
         "Latency of requests to the completer fronts (a sample_group counts once).");
  for (auto& [op, d] : ops) {
    auto& h = d.latency;
    uint64_t cumulative = 0;
    auto lbl = escape_label(op);
    for (size_t i = 0; i < h.bounds.size(); ++i) {
      cumulative += h.counts[i];
      out << "sail_tinker_request_latency_seconds_bucket{op=\"" << lbl << "\",le=\""
          << number(h.bounds[i]) << "\"} " << cumulative << '\n';
    }
    cumulative += h.counts.back();
    out << "sail_tinker_request_latency_seconds_bucket{op=\"" << lbl << "\",le=\"+Inf\"} "
        << cumulative << '\n';
    out << "sail_tinker_request_latency_seconds_sum{op=\"" << lbl << "\"} " << number(h.sum)
        << '\n';
    out << "sail_tinker_request_latency_seconds_count{op=\"" << lbl << "\"} " << h.count
        << '\n';
  }
  return out.str();
}

// -- metrics server ---------------------------------------------------------------------

namespace {

http_server_response text_response(boost::beast::http::status status, std::string body,
                                   const char* content_type) {
  http_server_response res{status, 11};
  res.set(boost::beast::http::field::content_type, content_type);
  res.body() = std::move(body);
  return res;
}

/// One-shot actor answering one GET /metrics. (Spawned with arguments: CAF
/// 0.17.6 dereferences a null argument tuple for argument-less functors,
/// which UBSan reports.)
void scrape(caf::event_based_actor* self, std::shared_ptr<http_server_context> box,
            stats_actor source, std::shared_ptr<request_metrics> metrics) {
  namespace http = boost::beast::http;
  self->request(source, std::chrono::seconds(10), atom::stats_v)
    .then(
      [=](completer_stats& s) {
        box->respond(text_response(http::status::ok,
                                   render_prometheus(s, metrics->snapshot()),
                                   "text/plain; version=0.0.4; charset=utf-8"));
        self->quit();
      },
      [=](caf::error& err) {
        box->respond(text_response(http::status::service_unavailable,
                                   "counters unavailable: " + render(err) + "\n",
                                   "text/plain"));
        self->quit();
      });
}

} // namespace

metrics_server::metrics_server(caf::actor_system& sys, stats_actor source,
                               std::shared_ptr<request_metrics> metrics,
                               http_server_options opts) {
  auto handler = [&sys, source, metrics](http_server_context&& ctx) {
    namespace http = boost::beast::http;
    auto& req = ctx.request();
    std::string target{req.target()};
    auto path = target.substr(0, target.find('?'));
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      ctx.respond(text_response(http::status::method_not_allowed, "method not allowed\n",
                                "text/plain"));
      return;
    }
    if (path == "/healthz") {
      ctx.respond(text_response(http::status::ok, "ok\n", "text/plain"));
      return;
    }
    if (path != "/metrics") {
      ctx.respond(text_response(http::status::not_found, "see /metrics\n", "text/plain"));
      return;
    }
    // Fetch the completer's counters asynchronously: the handler must not
    // block, so a one-shot actor asks and answers the HTTP request.
    auto box = std::make_shared<http_server_context>(std::move(ctx));
    sys.spawn(scrape, std::move(box), source, metrics);
  };
  server_ = std::make_unique<http_server>(std::move(opts), std::move(handler));
}

metrics_server::~metrics_server() {
  stop();
}

caf::error metrics_server::start() {
  return server_->start();
}

uint16_t metrics_server::port() const noexcept {
  return server_->port();
}

void metrics_server::stop() {
  if (server_)
    server_->stop();
}

} // namespace sail::app
