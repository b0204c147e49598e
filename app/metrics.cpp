#include "sail_tinker/app/metrics.hpp"

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <span>
#include <sstream>
#include <type_traits>

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

void header(std::ostringstream& out, std::string_view name, const char* type,
            std::string_view help) {
  out << "# HELP " << name << ' ' << help << '\n' << "# TYPE " << name << ' ' << type << '\n';
}

const char* type_of(const stat_info& info) {
  switch (info.kind) {
    case stat_kind::counter:
      return "counter";
    case stat_kind::buckets:
      return "histogram";
    default:
      return "gauge";
  }
}

/// v * scale, with a scale below 1 applied as a division (ms -> s: 9 / 1000.0
/// prints 0.009, while 9 * 0.001 prints 0.009000000000000001).
double scaled(double v, double scale) {
  return scale < 1 ? v / std::round(1 / scale) : v * scale;
}

/// Writes histogram `h` (counts per bucket of `bounds`) as Prometheus'
/// cumulative buckets, its sum and count; `labels` go before `le`.
void write_histogram(std::ostringstream& out, std::string_view name, const std::string& labels,
                     std::span<const double> bounds, const histogram& h, double scale) {
  uint64_t cumulative = 0;
  auto with = [&](std::string_view more) {
    std::string all = labels;
    if (!more.empty())
      all += (all.empty() ? "" : ",") + std::string{more};
    return all.empty() ? std::string{} : "{" + all + "}";
  };
  for (size_t i = 0; i < bounds.size(); ++i) {
    cumulative += i < h.counts.size() ? h.counts[i] : 0;
    out << name << "_bucket" << with("le=\"" + number(scaled(bounds[i], scale)) + '"') << ' '
        << cumulative << '\n';
  }
  if (h.counts.size() > bounds.size())
    cumulative += h.counts[bounds.size()];
  out << name << "_bucket" << with("le=\"+Inf\"") << ' ' << cumulative << '\n';
  out << name << "_sum" << with({}) << ' ' << number(scaled(h.sum, scale)) << '\n';
  out << name << "_count" << with({}) << ' ' << cumulative << '\n';
}

/// Renders the fields of a stats struct as their description says: one
/// family per metric (its HELP and TYPE once), fields sharing a metric told
/// apart by their fixed label.
struct exposition {
  std::ostringstream& out;
  /// Labels of the row being written (a table's row: model, window).
  std::string row_labels;
  std::string_view last_metric;

  void head(const stat_info& info) {
    if (info.metric == last_metric)
      return;
    last_metric = info.metric;
    header(out, info.metric, type_of(info), info.help);
  }

  std::string labels(const stat_info& info, std::string_view label, std::string_view value) {
    std::string all = row_labels;
    if (!label.empty())
      all += (all.empty() ? "" : ",") + std::string{label} + "=\"" + escape_label(value) + '"';
    if (!info.label_value.empty())
      all += (all.empty() ? "" : ",") + std::string{info.label} + "=\""
             + std::string{info.label_value} + '"';
    return all.empty() ? all : "{" + all + "}";
  }

  template <class T>
  void value(const stat_info& info, T v) {
    out << info.metric << labels(info, {}, {}) << ' ';
    if (info.scale == 1)
      out << v << '\n';
    else
      out << number(scaled(static_cast<double>(v), info.scale)) << '\n';
  }

  void operator()(const stat_info& info, uint64_t v) {
    head(info);
    value(info, v);
  }

  void operator()(const stat_info& info, int64_t v) {
    head(info);
    value(info, v);
  }

  void operator()(const stat_info& info, const std::string& v) {
    if (info.kind != stat_kind::state)
      return; // a row's label (row_labels)
    head(info);
    for (auto state : info.known)
      out << info.metric << labels(info, info.label, state) << ' ' << (v == state ? 1 : 0)
          << '\n';
  }

  void operator()(const stat_info& info, const std::map<std::string, uint64_t>& v) {
    head(info);
    auto all = v;
    for (auto k : info.known)
      all.emplace(k, 0);
    if (info.known_more)
      for (auto& k : info.known_more())
        all.emplace(k, 0);
    for (auto& [k, n] : all)
      out << info.metric << labels(info, info.label, k) << ' ' << n << '\n';
  }

  void operator()(const stat_info& info, const histogram& h) {
    head(info);
    write_histogram(out, info.metric, row_labels, info.bounds, h, info.scale);
  }

  /// A table: each field's family over every row (a family stays together).
  void operator()(const stat_info&, const std::vector<usage_totals>& rows) {
    const usage_totals columns;
    for_each_stat(columns, [&](const stat_info& column, const auto&) {
      if (column.kind == stat_kind::label)
        return;
      for (auto& row : rows) {
        row_labels.clear();
        for_each_stat(row, [&](const stat_info& info, const auto& v) {
          if constexpr (std::is_same_v<std::decay_t<decltype(v)>, std::string>)
            if (info.kind == stat_kind::label)
              row_labels += (row_labels.empty() ? "" : ",") + std::string{info.label} + "=\""
                            + escape_label(v) + '"';
        });
        for_each_stat(row, [&](const stat_info& info, const auto& v) {
          if (info.key == column.key)
            (*this)(info, v);
        });
      }
      row_labels.clear();
      head(column); // the family's header even without rows
    });
  }

  template <described_stats T>
  void operator()(const stat_info&, const T& x) {
    for_each_stat(x, *this);
  }
};

} // namespace

std::string render_prometheus(const completer_stats& stats,
                              const std::map<std::string, request_metrics::op_data>& ops) {
  std::ostringstream out;
  header(out, "sail_tinker_build_info", "gauge", "Version of this node (always 1).");
  out << "sail_tinker_build_info{version=\"" << version << "\",protocol=\""
      << escape_label(protocol_version) << "\"} 1\n";
  exposition ex{out, {}, {}};
  for_each_stat(stats, ex);
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
  for (auto& [op, d] : ops)
    write_histogram(out, "sail_tinker_request_latency_seconds",
                    "op=\"" + escape_label(op) + '"', latency_buckets_s, d.latency, 1.0);
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
