#include "sail_tinker/rollout/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <tuple>

#include <boost/json.hpp>

#include "sail_tinker/rollout/durable_run.hpp"
#include "sail_tinker/rollout/samples_file.hpp"

namespace sail::rollout {

namespace json = boost::json;

namespace {

/// Nearest-rank percentile of sorted `xs` (q in 0..1).
double percentile_of(const std::vector<double>& xs, double q) {
  auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(xs.size())));
  return xs[std::min(xs.size() - 1, rank == 0 ? 0 : rank - 1)];
}

std::string fixed(double x, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, x);
  return buf;
}

std::string escape_xml(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

} // namespace

namespace {

/// Steps in numeric order when they are numbers ("2" before "10"), else by
/// text; numbers first.
bool step_less(const std::string& x, const std::string& y) {
  auto numeric = [](const std::string& s) {
    return !s.empty() && s.size() <= 18
           && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  bool nx = numeric(x);
  bool ny = numeric(y);
  if (nx != ny)
    return nx;
  if (nx)
    return std::stoll(x) < std::stoll(y);
  return x < y;
}

struct group_key {
  std::string step;
  std::string version;
  std::string model;
  std::string window;

  bool operator<(const group_key& y) const {
    if (step != y.step)
      return step_less(step, y.step);
    return std::tie(version, model, window) < std::tie(y.version, y.model, y.window);
  }
};

struct group_data {
  std::unique_ptr<usage_ledger> ledger;
  uint64_t samples = 0;
  std::vector<double> latencies;
};

/// model and window of a call's settings (a durable run's `call` column).
std::pair<std::string, std::string> model_window_of(const std::string& settings) {
  std::pair<std::string, std::string> out;
  json::error_code ec;
  auto v = json::parse(settings, ec);
  if (ec || !v.is_object())
    return out;
  auto& o = v.get_object();
  if (auto* m = o.if_contains("model"); m != nullptr && m->is_string())
    out.first = m->get_string();
  for (auto* key : {"window", "completion_window"})
    if (auto* w = o.if_contains(key); w != nullptr && w->is_string())
      out.second = w->get_string();
  return out;
}

} // namespace

caf::expected<run_report> build_report(journal& j, const price_table* prices) {
  run_report result;
  // A rollout journal: one step and one version, the run's model and window.
  std::pair<std::string, std::string> run_model_window;
  if (auto& run = j.run()) {
    result.run_id = run->run_id;
    run_model_window = model_window_of(run->config);
  }
  std::map<group_key, group_data> groups;
  // A trainer's durable run: the prompt id is the step, and a row holds its
  // call's settings whole or by reference (settings_ref) to a whole one of
  // its step, which need not be a completed row.
  std::map<std::string, std::pair<std::string, std::string>> calls; // settings or ref -> model, window
  auto note_call = [&](const std::string& settings) {
    if (settings.empty() || settings[0] == '#' || calls.count(settings) > 0)
      return;
    auto mw = model_window_of(settings);
    calls.emplace(settings_ref(settings), mw);
    calls.emplace(settings, std::move(mw));
  };
  std::set<std::string> steps_loaded;
  auto model_window = [&](const std::string& step, const std::string& settings)
    -> std::pair<std::string, std::string> {
    note_call(settings);
    if (auto i = calls.find(settings); i != calls.end())
      return i->second;
    if (steps_loaded.insert(step).second)
      if (auto rows = j.samples(step))
        for (auto& row : *rows)
          note_call(row.call);
    auto i = calls.find(settings);
    return i != calls.end() ? i->second : std::pair<std::string, std::string>{};
  };
  struct completed_row {
    std::string step;
    std::string version;
    std::string call;
    std::optional<sample_usage> usage;
    std::optional<int64_t> latency_ms;
  };
  std::vector<completed_row> rows;
  auto err = j.for_each_completed([&](const std::string& prompt, const sample_record& r) {
    rows.push_back({r.call.empty() ? std::string{} : prompt, r.version, r.call,
                    parse_result_usage(r.body), r.latency_ms});
  });
  if (err)
    return err;
  for (auto& r : rows) {
    group_key key;
    if (r.call.empty()) {
      key.model = run_model_window.first;
      key.window = run_model_window.second;
    } else {
      std::tie(key.model, key.window) = model_window(r.step, r.call);
      key.step = r.step;
      key.version = r.version;
    }
    if (key.step.empty())
      key.step = "-";
    if (key.version.empty())
      key.version = "-";
    auto& g = groups[key];
    if (!g.ledger)
      g.ledger = std::make_unique<usage_ledger>(prices);
    ++g.samples;
    g.ledger->add(key.model, key.window, r.usage);
    if (r.latency_ms)
      g.latencies.push_back(static_cast<double>(*r.latency_ms));
  }
  // Failures the journal knows of: the rollout run's (samples of written
  // prompts without a result); a trainer's run does not journal failures.
  auto failed = j.failed_written();
  if (!failed)
    return failed.error();
  if (*failed > 0) {
    group_key key{"-", "-", run_model_window.first, run_model_window.second};
    auto& g = groups[key];
    if (!g.ledger)
      g.ledger = std::make_unique<usage_ledger>(prices);
  }
  for (auto& [key, g] : groups) {
    report_row row;
    row.step = key.step;
    row.version = key.version;
    row.model = key.model;
    row.window = key.window;
    row.samples = g.samples;
    if (key.step == "-" && key.version == "-" && key.model == run_model_window.first
        && key.window == run_model_window.second)
      row.failures = *failed;
    auto total = g.ledger->total();
    row.tokens = total.usage;
    row.tokens.model = key.model;
    row.tokens.window = key.window;
    if (prices != nullptr) {
      row.cost_usd = total.cost_usd;
      row.unpriced = total.unpriced;
    }
    if (!g.latencies.empty()) {
      std::sort(g.latencies.begin(), g.latencies.end());
      row.latency_p50_ms = percentile_of(g.latencies, 0.50);
      row.latency_p90_ms = percentile_of(g.latencies, 0.90);
      row.latency_p99_ms = percentile_of(g.latencies, 0.99);
    }
    result.rows.push_back(std::move(row));
  }
  return result;
}

std::string render_text(const run_report& r) {
  std::string out = "run " + (r.run_id.empty() ? std::string{"?"} : r.run_id) + "\n";
  char line[512];
  std::snprintf(line, sizeof(line), "%-6s %-8s %-10s %8s %8s %12s %12s %12s %12s %12s %10s %10s %10s\n",
                "step", "version", "window", "samples", "failed", "input", "cached", "output",
                "reasoning", "cost_usd", "p50_ms", "p90_ms", "p99_ms");
  out += line;
  auto opt = [](const std::optional<double>& x, int decimals) {
    return x ? fixed(*x, decimals) : std::string{"-"};
  };
  for (auto& x : r.rows) {
    std::snprintf(line, sizeof(line),
                  "%-6s %-8s %-10s %8llu %8llu %12llu %12llu %12llu %12llu %12s %10s %10s %10s\n",
                  x.step.c_str(), x.version.c_str(), x.window.c_str(),
                  static_cast<unsigned long long>(x.samples),
                  static_cast<unsigned long long>(x.failures),
                  static_cast<unsigned long long>(x.tokens.input_tokens),
                  static_cast<unsigned long long>(x.tokens.cached_tokens),
                  static_cast<unsigned long long>(x.tokens.output_tokens),
                  static_cast<unsigned long long>(x.tokens.reasoning_tokens),
                  opt(x.cost_usd, 6).c_str(), opt(x.latency_p50_ms, 0).c_str(),
                  opt(x.latency_p90_ms, 0).c_str(), opt(x.latency_p99_ms, 0).c_str());
    out += line;
    if (x.tokens.unknown > 0)
      out += "  (usage unknown for " + std::to_string(x.tokens.unknown) + " sample(s))\n";
  }
  return out;
}

std::string render_json(const run_report& r) {
  json::object o;
  o["run_id"] = r.run_id;
  json::array rows;
  for (auto& x : r.rows) {
    json::object row;
    row["step"] = x.step;
    row["version"] = x.version;
    row["model"] = x.model;
    row["window"] = x.window;
    row["samples"] = x.samples;
    row["failures"] = x.failures;
    row["usage_unknown"] = x.tokens.unknown;
    row["input_tokens"] = x.tokens.input_tokens;
    row["cached_tokens"] = x.tokens.cached_tokens;
    row["output_tokens"] = x.tokens.output_tokens;
    row["reasoning_tokens"] = x.tokens.reasoning_tokens;
    row["cost_usd"] = x.cost_usd ? json::value(*x.cost_usd) : json::value(nullptr);
    if (x.latency_p50_ms)
      row["latency_ms"] = json::object{{"p50", *x.latency_p50_ms},
                                       {"p90", *x.latency_p90_ms},
                                       {"p99", *x.latency_p99_ms}};
    else
      row["latency_ms"] = nullptr;
    rows.push_back(std::move(row));
  }
  o["rows"] = std::move(rows);
  return json::serialize(o) + "\n";
}

std::string render_svg(const run_report& r) {
  // One group of bars per row (step/version/window): cost (left axis) and
  // the latency percentiles (right axis).
  const int width = 640;
  const int height = 360;
  const int left = 70;
  const int right = 70;
  const int top = 40;
  const int bottom = 60;
  double max_cost = 0;
  double max_latency = 0;
  for (auto& x : r.rows) {
    max_cost = std::max(max_cost, x.cost_usd.value_or(0));
    max_latency = std::max(max_latency, x.latency_p99_ms.value_or(0));
  }
  if (max_cost <= 0)
    max_cost = 1;
  if (max_latency <= 0)
    max_latency = 1;
  auto n = std::max<size_t>(1, r.rows.size());
  double slot = static_cast<double>(width - left - right) / static_cast<double>(n);
  double plot_h = height - top - bottom;
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width)
                    + "\" height=\"" + std::to_string(height)
                    + "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  svg += "<title>cost and latency per step: run " + escape_xml(r.run_id) + "</title>\n";
  svg += "<text x=\"" + std::to_string(left) + "\" y=\"20\" font-size=\"13\">cost (bars, USD) "
         "and latency p50/p90/p99 (dots, ms) per step: run " + escape_xml(r.run_id) + "</text>\n";
  auto y_of = [&](double v, double max) { return top + plot_h * (1.0 - v / max); };
  svg += "<line x1=\"" + std::to_string(left) + "\" y1=\"" + std::to_string(top) + "\" x2=\""
         + std::to_string(left) + "\" y2=\"" + std::to_string(height - bottom)
         + "\" stroke=\"black\"/>\n";
  svg += "<line x1=\"" + std::to_string(width - right) + "\" y1=\"" + std::to_string(top)
         + "\" x2=\"" + std::to_string(width - right) + "\" y2=\""
         + std::to_string(height - bottom) + "\" stroke=\"black\"/>\n";
  svg += "<text x=\"5\" y=\"" + std::to_string(top + 4) + "\">$" + fixed(max_cost, 6) + "</text>\n";
  svg += "<text x=\"" + std::to_string(width - right + 5) + "\" y=\"" + std::to_string(top + 4)
         + "\">" + fixed(max_latency, 0) + " ms</text>\n";
  for (size_t i = 0; i < r.rows.size(); ++i) {
    auto& x = r.rows[i];
    double x0 = left + slot * static_cast<double>(i);
    double cost = x.cost_usd.value_or(0);
    double y = y_of(cost, max_cost);
    svg += "<rect x=\"" + fixed(x0 + slot * 0.2, 1) + "\" y=\"" + fixed(y, 1) + "\" width=\""
           + fixed(slot * 0.6, 1) + "\" height=\"" + fixed(top + plot_h - y, 1)
           + "\" fill=\"#4a7ebb\"><title>cost $" + fixed(cost, 6) + "</title></rect>\n";
    const char* colors[] = {"#2ca02c", "#ff7f0e", "#d62728"};
    const std::optional<double>* ps[] = {&x.latency_p50_ms, &x.latency_p90_ms,
                                         &x.latency_p99_ms};
    const char* names[] = {"p50", "p90", "p99"};
    for (int k = 0; k < 3; ++k)
      if (*ps[k])
        svg += "<circle cx=\"" + fixed(x0 + slot * 0.5, 1) + "\" cy=\""
               + fixed(y_of(**ps[k], max_latency), 1) + "\" r=\"4\" fill=\"" + colors[k]
               + "\"><title>" + names[k] + " " + fixed(**ps[k], 0) + " ms</title></circle>\n";
    svg += "<text x=\"" + fixed(x0 + slot * 0.5, 1) + "\" y=\"" + std::to_string(height - bottom + 16)
           + "\" text-anchor=\"middle\">step " + escape_xml(x.step) + " " + escape_xml(x.version)
           + " " + escape_xml(x.window) + "</text>\n";
  }
  svg += "</svg>\n";
  return svg;
}

} // namespace sail::rollout
