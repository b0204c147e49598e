// bench/notice_bench: how many GETs a sample costs and how late its result is
// noticed, with today's fixed polling, adaptive polling and completion
// webhooks, side by side in one run.
//
// Each mode gets a fresh emulator and runtime in this process. The samples'
// latencies come from the emulator's seeded spread (log-uniform between
// --min-s and --max-s, each doubling equally likely), drawn per
// Idempotency-Key, and every mode uses the same keys: each mode sees exactly
// the same latencies. Time is scaled down by --scale (latencies AND the
// pool's poll timing are divided by it, so polling behaves as at full scale);
// "equivalent" figures multiply the measured delays back.
//
// The run is RL-like: --waves steps of samples/waves samples each, a step
// starting when the previous one has completed (adaptive polling learns from
// the samples it finished; the first step uses the configured timing).
//
// Per mode:
//   GETs per sample   GET /v1/responses/{id} arrivals recorded by the emulator
//                     per response id: mean, max, and the mean over samples
//                     whose (equivalent) latency is 50-70 s ("60 s sample")
//   notice delay      the moment the caller had the result minus the moment
//                     the emulator completed the response (its own record),
//                     p50 / p99, real and equivalent (x scale)
//
// Usage: notice_bench [--samples 1000] [--waves 10] [--scale 20]
//                     [--min-s 5] [--max-s 120] [--adaptive-polls 8]
//                     [--max-gap-factor 2.5] [--quick]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/actors/system_config.hpp"
#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/messages/error.hpp"

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

struct params {
  int samples = 1000;
  int waves = 10;
  double scale = 20;
  double min_s = 5;
  double max_s = 120;
  uint32_t adaptive_polls = sail::adaptive_poll_options{}.polls;
  double max_gap_factor = sail::adaptive_poll_options{}.max_gap_factor;
};

/// The best any polling schedule can do on a known log-uniform [lo, hi]
/// spread when a sample of `at` seconds may cost at most `gets` GETs: the
/// largest share of samples noticed within `within` seconds. Such a schedule
/// has at most gets - 1 polls before `at`; each catches only the samples that
/// completed in the `within` before it, and the density is highest at lo, so
/// the best `gets - 1` windows are back to back from lo. After `at` every
/// sample is counted as caught (even polling every `within` seconds there),
/// so this is an upper bound on the share, i.e. a lower bound on the delay.
double best_share_within(double lo, double hi, double at, int gets, double within) {
  auto cdf = [&](double t) {
    return t <= lo ? 0.0 : t >= hi ? 1.0 : std::log(t / lo) / std::log(hi / lo);
  };
  auto early = std::min(lo + within * (gets - 1), at);
  return (cdf(early) - cdf(lo)) + (1.0 - cdf(at));
}

enum class mode { fixed, adaptive, webhooks };

const char* name(mode m) {
  switch (m) {
    case mode::fixed:
      return "fixed";
    case mode::adaptive:
      return "adaptive";
    case mode::webhooks:
      return "webhooks";
  }
  return "?";
}

template <class D>
D scaled(D d, double scale) {
  return std::chrono::duration_cast<D>(std::chrono::duration<double, typename D::period>(
    static_cast<double>(d.count()) / scale));
}

double percentile(std::vector<double> xs, double p) {
  if (xs.empty())
    return 0;
  std::sort(xs.begin(), xs.end());
  auto i = static_cast<size_t>(p * static_cast<double>(xs.size() - 1) + 0.5);
  return xs[std::min(i, xs.size() - 1)];
}

struct result_row {
  mode m;
  double gets_mean = 0;
  size_t gets_max = 0;
  double gets_60s = 0;
  size_t n_60s = 0;
  double notice_p50_ms = 0;
  double notice_p99_ms = 0;
  double gets_mean_warm = 0;  // waves 2..
  double gets_60s_warm = 0;
  size_t n_60s_warm = 0;
  double notice_p50_warm_ms = 0;
  size_t failed = 0;
  double wall_s = 0;
  std::map<std::string, uint64_t> hooks;
};

result_row run_mode(mode m, const params& p) {
  sail::emulator::options eo;
  eo.threads = 2;
  eo.webhook_retry_delay = std::chrono::milliseconds(100);
  for (auto* w : eo.latency.all()) {
    w->spread.kind = sail::emulator::latency_spread::shape::log_uniform;
    w->spread.min = std::chrono::microseconds(static_cast<int64_t>(p.min_s * 1e6 / p.scale));
    w->spread.max = std::chrono::microseconds(static_cast<int64_t>(p.max_s * 1e6 / p.scale));
  }
  sail::emulator::server emu{eo};
  sail::system_config cfg;
  caf::actor_system sys{cfg};
  sail::runtime_options o;
  o.sail_base_url = emu.base_url();
  o.sail_api_key = emu.config().sail_api_key;
  o.io_threads = 1;
  o.pool.workers = 4;
  o.pool.seed = 7;
  o.pool.max_in_flight = 4096;
  // Every window's timing (defaults: priority's) divided by the scale.
  for (auto& [w, t] : o.pool.windows) {
    t.first_poll = scaled(t.first_poll, p.scale);
    t.max_poll = scaled(t.max_poll, p.scale);
    t.deadline = scaled(t.deadline, p.scale);
    t.webhook_first_poll = scaled(t.webhook_first_poll, p.scale);
    t.webhook_poll = scaled(t.webhook_poll, p.scale);
  }
  o.completer.window_deadlines.clear();
  o.pool.adaptive.enabled = m == mode::adaptive;
  o.pool.adaptive.polls = p.adaptive_polls;
  o.pool.adaptive.max_gap_factor = p.max_gap_factor;
  o.webhook.enabled = m == mode::webhooks;
  auto rt = sail::runtime::start(sys, o);
  if (!rt) {
    std::fprintf(stderr, "runtime: %s\n", sail::render(rt.error()).c_str());
    std::exit(1);
  }
  sail::completer_config c;
  c.model = "emulator/toy";
  c.max_tokens = 8;
  c.completion_window = "priority";
  auto tc = (*rt)->make_token_completer(c);
  if (!tc) {
    std::fprintf(stderr, "completer: %s\n", sail::render(tc.error()).c_str());
    std::exit(1);
  }
  std::mutex mtx;
  std::map<std::string, clock_type::time_point> noticed;
  result_row row;
  row.m = m;
  auto t0 = clock_type::now();
  int per_wave = std::max(1, p.samples / p.waves);
  int next = 0;
  for (int w = 0; w < p.waves && next < p.samples; ++w) {
    std::vector<std::future<sail::token_completer::sample_result>> fs;
    for (int i = 0; i < per_wave && next < p.samples; ++i, ++next) {
      sail::sample_request req;
      req.prompt.tokens = {next % 60, 1, 2};
      req.key = "s-" + std::to_string(next);
      auto key = req.key;
      auto prom = std::make_shared<std::promise<sail::token_completer::sample_result>>();
      fs.push_back(prom->get_future());
      tc->sample(std::move(req), [&mtx, &noticed, key, prom](sail::token_completer::sample_result r) {
        {
          std::lock_guard guard{mtx};
          noticed[key] = clock_type::now();
        }
        prom->set_value(std::move(r));
      });
    }
    for (auto& f : fs)
      if (!f.get())
        ++row.failed;
  }
  row.wall_s = std::chrono::duration<double>(clock_type::now() - t0).count();
  {
    caf::scoped_actor self{sys};
    self->request((*rt)->pool(), 30s, sail::atom::stats_v)
      .receive([&](sail::completer_stats& s) { row.hooks = s.pool.webhooks; },
               [&](caf::error&) {});
  }
  (*rt)->shutdown();
  auto st = emu.snapshot();
  std::vector<double> gets;
  std::vector<double> gets_warm;
  std::vector<double> notice_ms;
  std::vector<double> notice_warm_ms;
  for (int i = 0; i < next; ++i) {
    auto key = "s-" + std::to_string(i);
    auto t = st.timings.find(key);
    if (t == st.timings.end())
      continue;
    auto pa = st.poll_arrivals.find(t->second.id);
    auto n = pa == st.poll_arrivals.end() ? size_t{0} : pa->second.size();
    gets.push_back(static_cast<double>(n));
    row.gets_max = std::max(row.gets_max, n);
    auto latency_eq_s = (t->second.done_ms - t->second.accepted_ms) / 1000.0 * p.scale;
    if (latency_eq_s >= 50 && latency_eq_s <= 70) {
      row.gets_60s += static_cast<double>(n);
      ++row.n_60s;
      if (i >= per_wave) {
        row.gets_60s_warm += static_cast<double>(n);
        ++row.n_60s_warm;
      }
    }
    auto done_at = emu.started_at()
                   + std::chrono::duration_cast<clock_type::duration>(
                     std::chrono::duration<double, std::milli>(t->second.done_ms));
    auto k = noticed.find(key);
    if (k == noticed.end())
      continue;
    auto d = std::chrono::duration<double, std::milli>(k->second - done_at).count();
    notice_ms.push_back(d);
    if (i >= per_wave) {
      gets_warm.push_back(static_cast<double>(n));
      notice_warm_ms.push_back(d);
    }
  }
  auto mean = [](const std::vector<double>& xs) {
    double s = 0;
    for (auto x : xs)
      s += x;
    return xs.empty() ? 0.0 : s / static_cast<double>(xs.size());
  };
  row.gets_mean = mean(gets);
  row.gets_mean_warm = mean(gets_warm);
  row.gets_60s = row.n_60s ? row.gets_60s / static_cast<double>(row.n_60s) : 0.0;
  row.gets_60s_warm =
    row.n_60s_warm ? row.gets_60s_warm / static_cast<double>(row.n_60s_warm) : 0.0;
  row.notice_p50_ms = percentile(notice_ms, 0.50);
  row.notice_p99_ms = percentile(notice_ms, 0.99);
  row.notice_p50_warm_ms = percentile(notice_warm_ms, 0.50);
  return row;
}

} // namespace

int main(int argc, char** argv) {
  params p;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::string{argv[++i]};
    };
    if (a == "--samples")
      p.samples = std::atoi(value().c_str());
    else if (a == "--waves")
      p.waves = std::atoi(value().c_str());
    else if (a == "--scale")
      p.scale = std::atof(value().c_str());
    else if (a == "--min-s")
      p.min_s = std::atof(value().c_str());
    else if (a == "--max-s")
      p.max_s = std::atof(value().c_str());
    else if (a == "--adaptive-polls")
      p.adaptive_polls = static_cast<uint32_t>(std::atoi(value().c_str()));
    else if (a == "--max-gap-factor")
      p.max_gap_factor = std::atof(value().c_str());
    else if (a == "--quick") {
      p.samples = 100;
      p.waves = 2;
    } else {
      std::fprintf(stderr,
                   "usage: notice_bench [--samples N] [--waves W] [--scale S] [--min-s X] "
                   "[--max-s Y] [--adaptive-polls N] [--max-gap-factor F] [--quick]\n");
      return 2;
    }
  }
  if (p.samples <= 0 || p.waves <= 0 || !(p.scale >= 1) || !(p.min_s > 0)
      || !(p.max_s >= p.min_s) || p.adaptive_polls == 0 || !(p.max_gap_factor >= 1)) {
    std::fprintf(stderr, "bad parameters\n");
    return 2;
  }
  std::printf("notice_bench: %d samples in %d waves; emulator latency log-uniform %.0f-%.0f s "
              "scaled by 1/%.0f (%.3f-%.3f s real); poll timing (priority) scaled alike\n",
              p.samples, p.waves, p.min_s, p.max_s, p.scale, p.min_s / p.scale,
              p.max_s / p.scale);
  std::printf("adaptive: %u polls across the learned distribution, gaps up to %.1f x max poll\n",
              p.adaptive_polls, p.max_gap_factor);
  auto share = best_share_within(p.min_s, p.max_s, 60, 8, 1);
  std::printf("bound: with <= 8 GETs for a 60 s sample, no polling schedule notices more than "
              "%.1f %% of samples within 1 s eq (notice p50 <= 1 s needs 50 %%)\n",
              share * 100);
  std::vector<result_row> rows;
  for (auto m : {mode::fixed, mode::adaptive, mode::webhooks}) {
    rows.push_back(run_mode(m, p));
    std::fflush(stdout);
  }
  std::printf("\n%-9s %9s %5s %10s %21s %21s %10s %10s %18s %7s %7s\n", "mode", "GETs/smp",
              "max", "GETs@60s", "notice p50 real/eq", "notice p99 real/eq", "GETs warm",
              "@60s warm", "p50 warm real/eq", "failed", "wall s");
  for (auto& r : rows) {
    char p50[64];
    char p99[64];
    char warm[64];
    std::snprintf(p50, sizeof p50, "%.0f ms / %.2f s", r.notice_p50_ms,
                  r.notice_p50_ms * p.scale / 1000.0);
    std::snprintf(p99, sizeof p99, "%.0f ms / %.2f s", r.notice_p99_ms,
                  r.notice_p99_ms * p.scale / 1000.0);
    std::snprintf(warm, sizeof warm, "%.0f ms / %.2f s", r.notice_p50_warm_ms,
                  r.notice_p50_warm_ms * p.scale / 1000.0);
    std::printf("%-9s %9.2f %5zu %6.2f(%3zu) %21s %21s %10.2f %10.2f %18s %7zu %7.1f\n",
                name(r.m), r.gets_mean, r.gets_max, r.gets_60s, r.n_60s, p50, p99,
                r.gets_mean_warm, r.gets_60s_warm, warm, r.failed, r.wall_s);
  }
  for (auto& r : rows) {
    if (r.hooks.empty())
      continue;
    std::printf("%s webhooks:", name(r.m));
    for (auto& [k, v] : r.hooks)
      std::printf(" %s=%llu", k.c_str(), static_cast<unsigned long long>(v));
    std::printf("\n");
  }
  std::printf("(\"eq\" = real x %.0f: the full-scale equivalent of a polling delay; a webhook's "
              "delay is network time and does not scale. \"warm\": waves 2..%d.)\n",
              p.scale, p.waves);
  return 0;
}
