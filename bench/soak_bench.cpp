// bench/soak_bench: no sample lost to transient faults, bounded retry load
// while Sail is down.
//
// The whole stack (token_completer -> completer -> worker pool -> HTTP client)
// against the emulator in a forked child process (so the client's RSS is its
// own), zero model latency, a closed loop of --concurrency lanes, each sample
// with its own Idempotency-Key ("soak-<n>").
//
//   1. warm-up: --warmup samples without faults; then RSS "start".
//   2. mix: --samples samples at the fault mix 20 % 503, 10 % 429 (Retry-After
//      --retry-after-s), 5 % connection reset, 5 % truncated body, on creates
//      and polls, the 503s and resets AFTER acceptance (the task exists; a
//      retry must replay it, never run it again).
//   3. down/up: --after samples; as soon as the lanes are in flight Sail goes
//      hard down (every create and poll 503, before acceptance) for --down-s
//      seconds, then up (no faults) until they are done. One second into the
//      outage --extra-lanes more lanes start: new work arriving while Sail is
//      down. A lane whose sample is refused with `unavailable` (breaker open)
//      resubmits it, same key, after --refused-wait-ms. Sail requests while
//      down are counted by the emulator.
//   4. baseline (same run, unless --skip-baseline): a second pool WITHOUT the
//      breaker and with an unbounded budget (only the per-call backoff left)
//      through the same down period, to show what the guard saves.
//   RSS "end": after everything finished, idle.
//
// Reports: samples ok / lost (any error other than a refusal counts as lost),
// inference runs per key (the emulator's max), Sail requests per sample, Sail
// requests while down (per in-flight sample and per second) guarded vs
// baseline, and the guard's counters; exit 1 if a sample was lost or run twice.
//
// Usage: soak_bench [--samples 100000] [--after 5000] [--warmup 2000]
//                   [--concurrency 256] [--extra-lanes 64] [--down-s 20]
//                   [--retry-after-s 1]
//                   [--refused-wait-ms 1000] [--workers 4] [--io-threads 1]
//                   [--emu-threads 1] [--seed 14] [--skip-baseline]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "bench_support.hpp"
#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/actors/system_config.hpp"
#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/messages/error.hpp"

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
namespace emu = sail::emulator;

namespace {

constexpr int64_t max_tokens = 16;
constexpr size_t prompt_len = 32;

double secs(clock_type::duration d) {
  return std::chrono::duration<double>(d).count();
}

// -- the emulator's faults per phase (switched by emulator_child::command) -------

/// The fault settings of each phase.
emu::fault_settings faults_for(char phase, uint64_t seed, long retry_after_s) {
  emu::fault_settings f;
  f.seed = seed;
  switch (phase) {
    case 'm':
      f.set(emu::fault_kind::status_503, 0.20)
        .set(emu::fault_kind::status_429, 0.10)
        .set(emu::fault_kind::connection_reset, 0.05)
        .set(emu::fault_kind::truncated_body, 0.05);
      f.routes = emu::route_create | emu::route_poll;
      f.after_accept_fraction = 1.0;
      f.retry_after = std::chrono::seconds(retry_after_s);
      break;
    case 'd':
      f.set(emu::fault_kind::status_503, 1.0);
      f.routes = emu::route_create | emu::route_poll;
      f.after_accept_fraction = 0.0;
      break;
    default: // 'u': up, no faults
      break;
  }
  return f;
}

uint64_t num(const boost::json::object& o, const char* key) {
  auto i = o.find(key);
  return i == o.end() ? 0 : i->value().to_number<uint64_t>();
}

/// Sail requests (creates and polls, any status) in an emulator stats object.
uint64_t sail_requests(const boost::json::object& st) {
  uint64_t n = 0;
  auto& reqs = st.at("requests").as_object();
  for (auto route : {"POST /v1/responses", "GET /v1/responses/{id}"})
    if (auto r = reqs.find(route); r != reqs.end())
      for (auto& [status, count] : r->value().as_object())
        n += count.to_number<uint64_t>();
  return n;
}

sail::completer_stats pool_stats(caf::actor_system& sys, sail::runtime& rt) {
  caf::scoped_actor self{sys};
  sail::completer_stats result;
  self->request(rt.pool(), std::chrono::seconds(30), sail::atom::stats_v)
    .receive([&](sail::completer_stats& s) { result = std::move(s); },
             [&](caf::error& err) {
               throw std::runtime_error("pool stats: " + sail::render(err));
             });
  return result;
}

/// Retries decided by the retry policy (not the pool's pauses and
/// re-dispatches, nor the HTTP client's own stale-connection replays).
uint64_t total_retries(const sail::completer_stats& s) {
  uint64_t n = 0;
  for (auto& [cause, count] : s.pool.retries_by_cause)
    if (cause != "pool_pause" && cause != "worker_restart" && cause != "redispatch"
        && cause != "stale_connection")
      n += count;
  return n;
}

// -- the closed loop ---------------------------------------------------------------

/// `lanes` lanes; each runs one sample at a time. A sample refused with
/// `unavailable` is resubmitted (same key) after `refused_wait`; any other
/// error counts as lost.
class soak_loop {
public:
  soak_loop(sail::token_completer tc, std::string prefix, caf::timespan refused_wait)
    : tc_(std::move(tc)), prefix_(std::move(prefix)), refused_wait_(refused_wait) {
  }

  struct result {
    uint64_t ok = 0;
    uint64_t lost = 0;
    uint64_t refused = 0;
    std::map<std::string, uint64_t> lost_by_kind;
    std::string first_lost;
    double seconds = 0;
  };

  /// Runs `count` samples on `lanes` lanes; `on_tick(elapsed, lanes)` runs on
  /// this thread at least every 50 ms (phase switches; it may add lanes).
  result run(size_t count, size_t lanes,
             const std::function<void(clock_type::duration, size_t&)>& on_tick = {}) {
    result out;
    auto t0 = clock_type::now();
    size_t next = 0;
    size_t done = 0;
    size_t busy = 0;
    std::deque<std::pair<clock_type::time_point, size_t>> waiting;
    auto launch = [&](size_t i) {
      ++busy;
      sail::sample_request req;
      req.prompt = sail::model_input{sail::bench::prompt_tokens(prompt_len, base_ + i)};
      req.key = prefix_ + std::to_string(base_ + i);
      tc_.sample(std::move(req), [this, i](sail::token_completer::sample_result r) {
        std::lock_guard guard{mtx_};
        events_.emplace_back(i, std::move(r));
        cv_.notify_one();
      });
    };
    while (busy < lanes && next < count)
      launch(next++);
    while (done < count) {
      std::deque<std::pair<size_t, sail::token_completer::sample_result>> batch;
      {
        std::unique_lock guard{mtx_};
        cv_.wait_for(guard, 50ms, [&] { return !events_.empty(); });
        batch.swap(events_);
      }
      auto now = clock_type::now();
      for (auto& [i, r] : batch) {
        --busy;
        if (r) {
          ++out.ok;
          ++done;
        } else if (sail::code_of(r.error()) == sail::errc::unavailable) {
          ++out.refused;
          waiting.emplace_back(now + refused_wait_, i);
        } else {
          ++out.lost;
          ++done;
          auto code = sail::code_of(r.error());
          ++out.lost_by_kind[code ? sail::to_string(*code) : "other"];
          if (out.first_lost.empty())
            out.first_lost = sail::render(r.error());
        }
      }
      while (!waiting.empty() && waiting.front().first <= now) {
        launch(waiting.front().second);
        waiting.pop_front();
      }
      while (busy + waiting.size() < lanes && next < count)
        launch(next++);
      if (on_tick)
        on_tick(now - t0, lanes);
    }
    base_ += count;
    out.seconds = secs(clock_type::now() - t0);
    return out;
  }

private:
  sail::token_completer tc_;
  std::string prefix_;
  caf::timespan refused_wait_;
  uint64_t base_ = 0;
  std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<std::pair<size_t, sail::token_completer::sample_result>> events_;
};

void print_result(const char* phase, const soak_loop::result& r, uint64_t samples) {
  std::printf("  %-9s %" PRIu64 " samples in %.1f s (%.0f/s): %" PRIu64 " ok, %" PRIu64
              " lost, %" PRIu64 " refusals resubmitted\n",
              phase, samples, r.seconds, static_cast<double>(samples) / r.seconds, r.ok, r.lost,
              r.refused);
  for (auto& [kind, n] : r.lost_by_kind)
    std::printf("            lost as %s: %" PRIu64 "\n", kind.c_str(), n);
  if (!r.first_lost.empty())
    std::printf("            first lost: %s\n", r.first_lost.c_str());
}

sail::runtime_options stack_options(const std::string& url, const std::string& key,
                                    size_t lanes, int argc, char** argv) {
  using sail::bench::flag_int;
  sail::runtime_options opts;
  opts.sail_base_url = url;
  opts.sail_api_key = key;
  opts.io_threads = static_cast<size_t>(flag_int(argc, argv, "io-threads", 1));
  opts.pool.workers = static_cast<size_t>(flag_int(argc, argv, "workers", 4));
  opts.pool.max_in_flight = lanes;
  for (auto& [window, timing] : opts.pool.windows) {
    timing.first_poll = caf::timespan{0};
    timing.max_poll = caf::timespan{0};
  }
  opts.pool.default_timing.first_poll = caf::timespan{0};
  opts.pool.default_timing.max_poll = caf::timespan{0};
  return opts;
}

struct down_figures {
  uint64_t requests = 0;
  double seconds = 0;
  size_t in_flight = 0;
  uint64_t retries = 0;
  sail::retry_guard_stats guard_before;
  sail::retry_guard_stats guard_after;
};

/// Phase 3 on `rt`: `count` samples; Sail down for `down` from the first
/// tick (the lanes' samples in flight), `extra` lanes more from one second
/// into it, then up.
down_figures run_down_up(sail::bench::emulator_child& child, caf::actor_system& sys,
                         sail::runtime& rt, soak_loop& loop, size_t count, size_t lanes,
                         size_t extra, clock_type::duration down, soak_loop::result& out) {
  down_figures f;
  bool is_down = false;
  bool was_down = false;
  uint64_t req0 = 0;
  uint64_t retries0 = 0;
  clock_type::duration went_down{};
  bool extended = false;
  out = loop.run(count, lanes, [&](clock_type::duration elapsed, size_t& active_lanes) {
    if (was_down && !extended && elapsed - went_down >= 1s) {
      active_lanes += extra;
      extended = true;
    }
    if (!was_down) { // the first tick: every lane has its sample in flight
      auto s = pool_stats(sys, rt);
      f.in_flight = s.in_flight;
      f.guard_before = s.pool.guard;
      retries0 = total_retries(s);
      child.command('d');
      req0 = sail_requests(child.stats(true));
      went_down = elapsed;
      is_down = was_down = true;
      return;
    }
    if (is_down && elapsed - went_down >= down) {
      auto st = child.stats(true);
      auto s = pool_stats(sys, rt);
      child.command('u');
      f.requests = sail_requests(st) - req0;
      f.seconds = secs(elapsed - went_down);
      f.retries = total_retries(s) - retries0;
      f.guard_after = s.pool.guard;
      is_down = false;
    }
  });
  if (is_down) { // finished while still down (cannot happen: nothing completes while down)
    child.command('u');
  }
  return f;
}

void print_down(const char* label, const down_figures& f) {
  std::printf("  %-9s %.1f s down, %zu samples in flight: %" PRIu64
              " Sail requests (%.2f per in-flight sample, %.1f/s), %" PRIu64
              " retries by the policy\n",
              label, f.seconds, f.in_flight, f.requests,
              f.in_flight ? static_cast<double>(f.requests) / static_cast<double>(f.in_flight)
                          : 0.0,
              f.seconds > 0 ? static_cast<double>(f.requests) / f.seconds : 0.0, f.retries);
}

} // namespace

int main(int argc, char** argv) {
  using sail::bench::flag_int;
  auto samples = static_cast<size_t>(flag_int(argc, argv, "samples", 100000));
  auto after = static_cast<size_t>(flag_int(argc, argv, "after", 5000));
  auto warmup = static_cast<size_t>(flag_int(argc, argv, "warmup", 2000));
  auto lanes = static_cast<size_t>(flag_int(argc, argv, "concurrency", 256));
  auto extra = static_cast<size_t>(flag_int(argc, argv, "extra-lanes", 64));
  auto down = std::chrono::seconds(flag_int(argc, argv, "down-s", 20));
  auto retry_after_s = flag_int(argc, argv, "retry-after-s", 1);
  auto refused_wait = std::chrono::milliseconds(flag_int(argc, argv, "refused-wait-ms", 1000));
  auto seed = static_cast<uint64_t>(flag_int(argc, argv, "seed", 14));
  bool baseline = !sail::bench::has_flag(argc, argv, "skip-baseline");

  emu::options eopts;
  eopts.threads = static_cast<size_t>(flag_int(argc, argv, "emu-threads", 1));
  eopts.record_arrivals = false;
  // Before any thread. Commands switch the faults: 'm' mix, 'd' down, 'u' up.
  sail::bench::emulator_child child{eopts, [=](emu::server& server, char phase) {
                                      server.set_faults(faults_for(phase, seed, retry_after_s));
                                    }};

  sail::system_config cfg;
  caf::actor_system sys{cfg};
  auto opts = stack_options(child.base_url(), eopts.sail_api_key, lanes, argc, argv);
  auto started = sail::runtime::start(sys, opts);
  if (!started) {
    std::fprintf(stderr, "runtime: %s\n", sail::render(started.error()).c_str());
    return 1;
  }
  auto& rt = **started;
  sail::completer_config c;
  c.model = "emulator/toy";
  c.max_tokens = max_tokens;
  c.completion_window = "priority";
  auto tc = rt.make_token_completer(c);
  if (!tc) {
    std::fprintf(stderr, "completer: %s\n", sail::render(tc.error()).c_str());
    return 1;
  }
  {
    auto now = std::time(nullptr);
    char when[64];
    std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
    std::printf("soak_bench at %s:", when);
    for (int i = 1; i < argc; ++i)
      std::printf(" %s", argv[i]);
    std::printf("\n");
  }
  std::printf("soak_bench: %u cores; emulator in a child process (%zu thread, zero latency); "
              "%zu lanes; pool: %zu workers, default retry options (no attempt cap), budget "
              "ratio %.2f + %.0f/s over %.0f s, breaker %u failures >= %.0f %% within %.0f s "
              "or %u in a row, probes after %.0f..%.0f s\n",
              std::thread::hardware_concurrency(), eopts.threads, lanes, opts.pool.workers,
              opts.pool.retry_budget.ratio, opts.pool.retry_budget.min_per_second,
              secs(opts.pool.retry_budget.window), opts.pool.breaker.min_failures,
              opts.pool.breaker.failure_ratio * 100, secs(opts.pool.breaker.window),
              opts.pool.breaker.consecutive_failures, secs(opts.pool.breaker.open_delay),
              secs(opts.pool.breaker.max_open_delay));
  std::fflush(stdout);

  int rc = 0;
  soak_loop loop{*tc, "soak-", refused_wait};
  // 1. warm-up
  child.command('u');
  auto warm = loop.run(warmup, lanes);
  auto rss_start = sail::bench::rss_kb();
  auto st0 = child.stats(true);
  auto ps0 = pool_stats(sys, rt);
  std::printf("\nphases\n");
  print_result("warm-up", warm, warmup);
  // 2. the fault mix
  child.command('m');
  auto cpu0 = sail::bench::self_cpu_seconds();
  auto mix = loop.run(samples, lanes);
  auto cpu_mix = sail::bench::self_cpu_seconds() - cpu0;
  child.command('u');
  auto st1 = child.stats(true);
  auto ps1 = pool_stats(sys, rt);
  auto rss_mix = sail::bench::rss_kb();
  print_result("mix", mix, samples);
  // 3. down, then up
  soak_loop::result du;
  auto guarded = run_down_up(child, sys, rt, loop, after, lanes, extra, down, du);
  print_result("down/up", du, after);
  auto st2 = child.stats(true);
  auto ps2 = pool_stats(sys, rt);
  // Idle, everything finished.
  auto rss_end = sail::bench::rss_kb();
  // 4. baseline: no breaker, unbounded budget, same down period.
  std::optional<down_figures> unguarded;
  soak_loop::result base_result;
  if (baseline) {
    auto bopts = stack_options(child.base_url(), eopts.sail_api_key, lanes, argc, argv);
    bopts.pool.breaker.min_failures = 0;
    bopts.pool.retry_budget.ratio = 1e9;
    auto brt = sail::runtime::start(sys, bopts);
    if (!brt) {
      std::fprintf(stderr, "baseline runtime: %s\n", sail::render(brt.error()).c_str());
      return 1;
    }
    auto btc = (*brt)->make_token_completer(c);
    soak_loop bloop{*btc, "baseline-", refused_wait};
    unguarded = run_down_up(child, sys, **brt, bloop, lanes + extra, lanes, extra, down,
                            base_result);
    print_result("baseline", base_result, lanes + extra);
    (*brt)->shutdown();
  }
  auto st_end = child.stats(true);

  // Figures.
  auto mix_requests = sail_requests(st1) - sail_requests(st0);
  auto mix_creates_retried = total_retries(ps1) - total_retries(ps0);
  std::printf("\nsummary\n");
  std::printf("  samples              %" PRIu64 " ok, %" PRIu64 " lost (target 0), %" PRIu64
              " refusals (unavailable) resubmitted\n",
              warm.ok + mix.ok + du.ok, warm.lost + mix.lost + du.lost,
              mix.refused + du.refused);
  std::printf("  inference runs       %" PRIu64 " for %zu samples of the soak, max %" PRIu64
              " per key (target 1)\n",
              num(st2, "inference_runs_total"), warmup + samples + after,
              num(st_end, "max_runs_per_key"));
  std::printf("  Sail requests        mix: %.2f per sample (%" PRIu64 " for %zu samples, %" PRIu64
              " retries by the policy); faults injected: ",
              static_cast<double>(mix_requests) / static_cast<double>(samples), mix_requests,
              samples, mix_creates_retried);
  auto& f1 = st1.at("faults").as_object();
  for (auto& [k, v] : f1)
    std::printf("%s %" PRIu64 " ", std::string(k).c_str(), v.to_number<uint64_t>());
  std::printf("\n  retries by cause     mix:");
  for (auto& [cause, n] : ps1.pool.retries_by_cause) {
    auto before = ps0.pool.retries_by_cause.count(cause) ? ps0.pool.retries_by_cause.at(cause) : 0;
    std::printf(" %s %" PRIu64, cause.c_str(), n - before);
  }
  std::printf("\n  while down           (requests to Sail during the down period)\n");
  print_down("guarded", guarded);
  if (unguarded)
    print_down("baseline", *unguarded);
  auto& g = ps2.pool.guard;
  std::printf("  guard (end)          breaker %s, opened %" PRIu64 "x, %" PRIu64 " probes, %" PRIu64
              " attempts held, %" PRIu64 " refusals; budget: %" PRIu64 " retries deferred "
              "(window now: %" PRIu64 " retries of %" PRIu64 " allowed, %" PRIu64
              " first attempts)\n",
              g.breaker.c_str(), g.breaker_opened, g.probes, g.held, g.rejected,
              g.budget_denied, g.budget_retries, g.budget_allowed, g.budget_requests);
  std::printf("  client CPU           mix: %.1f s, %.0f us per sample\n", cpu_mix,
              cpu_mix * 1e6 / static_cast<double>(samples));
  std::printf("  RSS                  start %ld KiB, after the mix %ld KiB, end %ld KiB "
              "(%+.1f bytes per finished sample)\n",
              rss_start, rss_mix, rss_end,
              static_cast<double>(rss_end - rss_start) * 1024.0
                / static_cast<double>(samples + after));
  std::fflush(stdout);
  if (warm.lost + mix.lost + du.lost > 0 || num(st_end, "max_runs_per_key") > 1)
    rc = 1;
  rt.shutdown();
  return rc;
}
