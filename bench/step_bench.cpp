// bench/step_bench: training steps with over-provisioning and carry-over
// (actors/step_sampler.hpp) against steps that launch K groups and wait for
// all of them -- side by side in one run, on the emulator (a child process)
// with a heavy-tailed latency: log-normal per sample, p99 = --ratio x the
// median (--median-ms; time scaled so the whole bench takes about a minute).
//
// Per overprovision F (0 = launch K, wait for all; then 0.25 and 0.5):
// --steps steps of --groups groups of --group-size members through a
// durable run (its own journal per F), the adapter version label changing
// every step (staleness counts steps behind), then drain(). Printed: step
// wall time p50 / p99, total time, the members the emulator ran (billed)
// and those delivered to the caller, their difference (discarded billed
// samples: must be 0), and the mean staleness of delivered members.
//
// Last line: "step p50 reduction: N % at overprovision F; discarded billed
// samples: D" for the F with the lowest step p50.
//
// Usage: step_bench [--median-ms 60] [--ratio 10] [--steps 20] [--groups 64]
//                   [--group-size 8] [--dir DIR]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/actors/step_sampler.hpp"
#include "sail_tinker/actors/system_config.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/rollout/durable_run.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

struct side {
  double overprovision = 0;
  std::vector<double> step_ms;
  double total_s = 0;
  uint64_t billed = 0;
  uint64_t delivered = 0;
  uint64_t stale = 0;
  double mean_staleness = 0;
};

double percentile(std::vector<double> xs, double q) {
  if (xs.empty())
    return 0;
  std::sort(xs.begin(), xs.end());
  auto pos = q * static_cast<double>(xs.size() - 1);
  auto lo = static_cast<size_t>(pos);
  auto hi = std::min(lo + 1, xs.size() - 1);
  return xs[lo] + (xs[hi] - xs[lo]) * (pos - static_cast<double>(lo));
}

uint64_t inference_runs(const sail::bench::emulator_child& emu) {
  return emu.stats().at("inference_runs_total").to_number<uint64_t>();
}

[[noreturn]] void die(const std::string& what, const caf::error& err) {
  std::fprintf(stderr, "step_bench: %s: %s\n", what.c_str(), sail::render(err).c_str());
  std::exit(1);
}

} // namespace

int main(int argc, char** argv) {
  using namespace sail;
  auto median_ms = bench::flag_int(argc, argv, "median-ms", 60);
  auto ratio = static_cast<double>(bench::flag_int(argc, argv, "ratio", 10));
  auto steps = static_cast<uint64_t>(bench::flag_int(argc, argv, "steps", 20));
  auto groups = static_cast<uint32_t>(bench::flag_int(argc, argv, "groups", 64));
  auto group_size = static_cast<uint32_t>(bench::flag_int(argc, argv, "group-size", 8));
  auto dir = bench::flag(argc, argv, "dir").value_or(
    (std::filesystem::temp_directory_path() / ("step_bench." + std::to_string(::getpid())))
      .string());
  std::filesystem::create_directories(dir);

  // The emulator first: fork before any thread.
  emulator::options eo;
  eo.threads = 1;
  eo.request_log_capacity = 1000;
  for (auto* w : eo.latency.all())
    w->spread = emulator::latency_spread::log_normal_p99(std::chrono::milliseconds(median_ms),
                                                         ratio);
  bench::emulator_child emu{eo};

  system_config cfg;
  caf::actor_system sys{cfg};
  runtime_options ro;
  ro.sail_base_url = emu.base_url();
  ro.sail_api_key = eo.sail_api_key;
  ro.io_threads = 1;
  ro.pool.workers = 4;
  ro.pool.max_in_flight = 4096;
  // Polls scaled to the latency: first after a fifth of the median, at
  // most every half median.
  for (auto* t : {&ro.pool.default_timing, &ro.pool.windows["asap"]}) {
    t->first_poll = std::chrono::milliseconds(std::max<long>(1, median_ms / 5));
    t->max_poll = std::chrono::milliseconds(std::max<long>(2, median_ms / 2));
  }
  auto rt = runtime::start(sys, ro);
  if (!rt)
    die("runtime", rt.error());
  completer_config cc;
  cc.model = "emulator/toy";
  cc.completion_window = "asap";
  cc.max_tokens = 8;

  std::printf("step_bench: %u groups of %u per step, %llu steps; emulator log-normal latency "
              "median %ld ms, p99 %.0fx the median\n",
              groups, group_size, static_cast<unsigned long long>(steps), median_ms, ratio);
  std::printf("%-14s %12s %12s %9s %9s %10s %10s %7s %15s\n", "overprovision", "step p50 ms",
              "step p99 ms", "total s", "billed", "delivered", "discarded", "stale",
              "mean staleness");
  std::vector<side> sides;
  for (double f : {0.0, 0.25, 0.5}) {
    side sd;
    sd.overprovision = f;
    auto path = dir + "/run-" + std::to_string(static_cast<int>(f * 100)) + ".journal";
    rollout::journal::remove(path);
    auto run = rollout::durable_run::open(path, "step-bench-" + std::to_string(f));
    if (!run)
      die("run", run.error());
    std::vector<group_prompt> prompts;
    auto needed = static_cast<size_t>(groups) * (steps + 1) * 2;
    for (size_t i = 0; i < needed; ++i) {
      group_prompt p;
      p.id = std::to_string(i);
      p.request.prompt = model_input{bench::prompt_tokens(16, i)};
      prompts.push_back(std::move(p));
    }
    step_sampler_options so;
    so.group_size = group_size;
    so.groups_per_step = groups;
    so.overprovision = f;
    so.max_staleness = 1;
    auto sampler = step_sampler::open(sys, *run, std::move(prompts), so);
    if (!sampler)
      die("sampler", sampler.error());
    auto completer = (*rt)->make_completer(cc);
    if (!completer)
      die("completer", completer.error());
    auto runs_before = inference_runs(emu);
    auto t0 = clock_type::now();
    for (uint64_t s = 0; s < steps; ++s) {
      auto start = clock_type::now();
      auto b = (*sampler)->next_step({*completer, cc, "v" + std::to_string(s)});
      if (!b)
        die("next_step", b.error());
      sd.step_ms.push_back(
        std::chrono::duration<double, std::milli>(clock_type::now() - start).count());
    }
    auto rest = (*sampler)->drain();
    if (!rest)
      die("drain", rest.error());
    if (auto err = (*sampler)->close())
      die("close", err);
    sd.total_s = std::chrono::duration<double>(clock_type::now() - t0).count();
    auto st = (*sampler)->stats();
    sd.billed = inference_runs(emu) - runs_before;
    sd.delivered = st.members_delivered;
    sd.stale = st.stale;
    sd.mean_staleness = st.members_delivered == 0
                          ? 0
                          : static_cast<double>(st.staleness_sum)
                              / static_cast<double>(st.members_delivered);
    sampler->reset();
    (*run)->close();
    rollout::journal::remove(path);
    std::printf("%-14.2f %12.0f %12.0f %9.1f %9llu %10llu %10lld %7llu %15.3f\n", f,
                percentile(sd.step_ms, 0.5), percentile(sd.step_ms, 0.99), sd.total_s,
                static_cast<unsigned long long>(sd.billed),
                static_cast<unsigned long long>(sd.delivered),
                static_cast<long long>(sd.billed) - static_cast<long long>(sd.delivered),
                static_cast<unsigned long long>(sd.stale), sd.mean_staleness);
    std::fflush(stdout);
    sides.push_back(std::move(sd));
  }
  (*rt)->shutdown();
  std::filesystem::remove_all(dir);
  auto base = percentile(sides.front().step_ms, 0.5);
  auto best = std::min_element(sides.begin() + 1, sides.end(), [](auto& a, auto& b) {
    return percentile(a.step_ms, 0.5) < percentile(b.step_ms, 0.5);
  });
  auto reduction = base > 0 ? 100.0 * (base - percentile(best->step_ms, 0.5)) / base : 0.0;
  std::printf("step p50 reduction: %.0f %% at overprovision %.2f; discarded billed samples: %lld\n",
              reduction, best->overprovision,
              static_cast<long long>(best->billed) - static_cast<long long>(best->delivered));
  return 0;
}
