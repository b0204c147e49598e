// bench/inflight_bench: memory per in-flight sample and GET polls per sample.
//
// Part 1 (one fresh process per N, so every baseline is clean): N samples in
// flight against a slow emulator (priority window queued for 30 min), read
// VmRSS of /proc/self/status with the stack idle (after a warm-up) and again
// once the pool reports N in flight AND the emulator has accepted N creates:
//   per sample = (RSS with N in flight - idle RSS) / N.
// The emulator runs in a forked child process, so its own per-response memory
// is NOT in that figure; the child's RSS growth per response is printed
// beside it for information. By default the pool's poll interval for the
// window is set past the measurement (quiescent samples: created, accepted,
// waiting for their first poll), so the figure is the state a pending sample
// holds, not the HTTP queue of a poll storm; --poll-ms sets another interval.
//
// Part 2: GET /v1/responses/{id} per sample for a 60 s sample with the
// DEFAULT priority window timing (pool_options defaults), counted per
// response id from the emulator's recorded poll arrivals.
//
// Usage:
//   inflight_bench                       both parts, N = 10000 and 100000
//   inflight_bench --n 10000,100000 --poll-samples 5 --poll-latency-s 60
//   inflight_bench --quick               N = 2000, 3 samples of 5 s (smoke)
//   inflight_bench --baseline OLD_EXE    also runs OLD_EXE --inflight N (an
//                                        inflight_bench built from an older
//                                        tree) before each N: before/after
//                                        in one run (scripts/bench-baseline inflight)
// Internal modes (run by the driver as child processes):
//   --inflight N [--poll-ms MS] | --polls K --poll-latency-s S
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <numeric>
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

namespace {

double secs_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
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

sail::completer_config toy_config(const char* window) {
  sail::completer_config c;
  c.model = "emulator/toy";
  c.max_tokens = 16;
  c.completion_window = window;
  return c;
}

// -- part 1 ----------------------------------------------------------------------

int run_inflight(size_t n, long poll_ms) {
  constexpr size_t prompt_len = 32;
  sail::emulator::options eopts;
  eopts.threads = 1;
  eopts.record_arrivals = false;
  eopts.latency.priority.queued = std::chrono::minutes(30);
  sail::bench::emulator_child emu{eopts}; // before any thread
  auto emu_rss0 = sail::bench::rss_kb(emu.pid());

  sail::system_config cfg;
  caf::actor_system sys{cfg};
  sail::runtime_options opts;
  opts.sail_base_url = emu.base_url();
  opts.sail_api_key = eopts.sail_api_key;
  opts.io_threads = 1;
  opts.pool.max_in_flight = n + 1024;
  opts.pool.max_queued = n + 1024;
  opts.http.max_queued_per_origin = static_cast<uint32_t>(n + 2048);
  auto& prio = opts.pool.windows["priority"];
  prio.first_poll = std::chrono::milliseconds(poll_ms);
  prio.max_poll = std::max<caf::timespan>(prio.first_poll, std::chrono::milliseconds(poll_ms));
  prio.deadline = std::chrono::hours(1);
  auto started = sail::runtime::start(sys, opts);
  if (!started) {
    std::fprintf(stderr, "runtime: %s\n", sail::render(started.error()).c_str());
    return 1;
  }
  auto& rt = **started;
  auto warm = rt.make_token_completer(toy_config("asap"));
  auto slow = rt.make_token_completer(toy_config("priority"));
  if (!warm || !slow) {
    std::fprintf(stderr, "completer rejected\n");
    return 1;
  }
  // Warm-up: open the connections, touch the allocator's arenas.
  {
    std::vector<std::future<sail::token_completer::sample_result>> fs;
    for (size_t i = 0; i < 256; ++i)
      fs.push_back(warm->sample(sail::bench::prompt_tokens(prompt_len, i)));
    for (auto& f : fs)
      if (!f.get()) {
        std::fprintf(stderr, "warm-up sample failed\n");
        return 1;
      }
  }
  std::this_thread::sleep_for(500ms);
  auto base_kb = sail::bench::rss_kb();
  auto emu_base_kb = sail::bench::rss_kb(emu.pid());
  auto creates0 = sail::bench::emulator_child::count(emu.stats(), "POST /v1/responses", "202");

  std::atomic<uint64_t> replies{0};
  std::atomic<uint64_t> failures{0};
  auto t0 = clock_type::now();
  for (size_t i = 0; i < n; ++i) {
    sail::sample_request req;
    req.prompt = sail::model_input{sail::bench::prompt_tokens(prompt_len, i)};
    slow->sample(std::move(req), [&](sail::token_completer::sample_result r) {
      if (!r)
        failures.fetch_add(1);
      replies.fetch_add(1);
    });
  }
  auto submit_s = secs_since(t0);
  // Wait (bounded) for N in flight in the pool AND N accepted creates.
  uint64_t in_flight = 0;
  uint64_t creates = 0;
  auto limit = std::chrono::seconds(60 + n / 500);
  for (;;) {
    in_flight = pool_stats(sys, rt).in_flight;
    creates = sail::bench::emulator_child::count(emu.stats(), "POST /v1/responses", "202")
              - creates0;
    if ((in_flight >= n && creates >= n) || failures.load() > 0
        || clock_type::now() - t0 > limit)
      break;
    std::this_thread::sleep_for(250ms);
  }
  auto fill_s = secs_since(t0);
  std::this_thread::sleep_for(500ms);
  auto rss = sail::bench::rss_kb();
  auto hwm = sail::bench::proc_status_kb("VmHWM:");
  auto emu_rss = sail::bench::rss_kb(emu.pid());
  bool ok = in_flight >= n && creates >= n && failures.load() == 0;
  double per = static_cast<double>(rss - base_kb) * 1024.0 / static_cast<double>(n);
  double emu_per = static_cast<double>(emu_rss - emu_base_kb) * 1024.0
                   / static_cast<double>(n);
  std::printf("  N=%zu: pool in flight %" PRIu64 ", emulator accepted %" PRIu64
              " creates, %" PRIu64 " early failures; submit %.2f s, all accepted after %.2f s\n",
              n, in_flight, creates, failures.load(), submit_s, fill_s);
  std::printf("  N=%zu: client RSS idle %ld KiB -> %ld KiB with N in flight (peak %ld KiB)\n",
              n, base_kb, rss, hwm);
  std::printf("  N=%zu: emulator child RSS %ld KiB at start, %ld KiB idle, %ld KiB with N "
              "responses (not included above)\n",
              n, emu_rss0, emu_base_kb, emu_rss);
  std::printf("RESULT inflight n=%zu ok=%d client_bytes_per_sample=%.0f "
              "emulator_bytes_per_response=%.0f fill_s=%.2f\n",
              n, ok ? 1 : 0, per, emu_per, fill_s);
  std::fflush(stdout);
  auto s0 = clock_type::now();
  rt.shutdown();
  std::printf("  N=%zu: runtime shutdown with N open samples took %.2f s; %" PRIu64
              " of %zu callbacks ran\n",
              n, secs_since(s0), replies.load(), n);
  std::fflush(stdout);
  emu.stop();
  return ok ? 0 : 1;
}

// -- part 2 ----------------------------------------------------------------------

int run_polls(size_t k, long latency_s) {
  sail::emulator::options eopts;
  eopts.threads = 1;
  eopts.latency.priority.queued = std::chrono::seconds(latency_s);
  sail::bench::emulator_child emu{eopts}; // before any thread

  sail::system_config cfg;
  caf::actor_system sys{cfg};
  sail::runtime_options opts; // DEFAULT pool options: default window timing
  opts.sail_base_url = emu.base_url();
  opts.sail_api_key = eopts.sail_api_key;
  auto& t = opts.pool.timing("priority");
  std::printf("  priority window timing (defaults): first_poll %.3f s, max_poll %.3f s, "
              "growth %.2f, jitter +/-%.0f%%\n",
              std::chrono::duration<double>(t.first_poll).count(),
              std::chrono::duration<double>(t.max_poll).count(), opts.pool.poll_growth,
              opts.pool.poll_jitter * 100);
  auto started = sail::runtime::start(sys, opts);
  if (!started) {
    std::fprintf(stderr, "runtime: %s\n", sail::render(started.error()).c_str());
    return 1;
  }
  auto& rt = **started;
  auto tc = rt.make_token_completer(toy_config("priority"));
  if (!tc)
    return 1;
  auto t0 = clock_type::now();
  std::vector<std::future<sail::token_completer::sample_result>> fs;
  for (size_t i = 0; i < k; ++i)
    fs.push_back(tc->sample(sail::bench::prompt_tokens(16, i)));
  std::vector<double> took;
  size_t failed = 0;
  for (auto& f : fs) {
    if (f.wait_until(t0 + std::chrono::seconds(latency_s * 2 + 60))
        != std::future_status::ready) {
      std::fprintf(stderr, "sample did not finish in time\n");
      return 1;
    }
    if (!f.get())
      ++failed;
    took.push_back(secs_since(t0));
  }
  auto ps = pool_stats(sys, rt);
  auto st = emu.stats(false);
  std::vector<uint64_t> gets;
  for (auto& [id, xs] : st.at("poll_arrivals").as_object())
    gets.push_back(xs.as_array().size());
  std::sort(gets.begin(), gets.end());
  double mean = gets.empty() ? 0
                             : static_cast<double>(std::accumulate(gets.begin(), gets.end(),
                                                                   uint64_t{0}))
                                 / static_cast<double>(gets.size());
  std::printf("  %zu samples of %ld s, %zu failed; finished after %.1f .. %.1f s\n", k,
              latency_s, failed, took.front(), *std::max_element(took.begin(), took.end()));
  std::printf("  GETs per response id (emulator):");
  for (auto g : gets)
    std::printf(" %" PRIu64, g);
  std::printf("\n  pool counted %" PRIu64 " polls for %" PRIu64 " completed samples\n",
              ps.pool.polls, ps.completed);
  std::printf("RESULT polls samples=%zu latency_s=%ld ok=%d gets_min=%" PRIu64
              " gets_mean=%.1f gets_max=%" PRIu64 "\n",
              k, latency_s, failed == 0 && gets.size() == k ? 1 : 0,
              gets.empty() ? 0 : gets.front(), mean, gets.empty() ? 0 : gets.back());
  std::fflush(stdout);
  rt.shutdown();
  emu.stop();
  return failed == 0 ? 0 : 1;
}

// -- driver ------------------------------------------------------------------------

// Runs `cmd`, echoes its output and keeps its RESULT lines (prefixed with
// `label`, e.g. "before ").
int run_child(const std::string& cmd, std::vector<std::string>& results,
              const std::string& label = {}) {
  std::fflush(stdout);
  auto* p = ::popen(cmd.c_str(), "r");
  if (!p)
    return 1;
  char line[4096];
  while (std::fgets(line, sizeof(line), p)) {
    std::string s{line};
    if (s.rfind("RESULT ", 0) == 0)
      results.push_back(label + s.substr(7));
    std::fputs(line, stdout);
    std::fflush(stdout);
  }
  int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

std::string field(const std::string& line, const std::string& key) {
  auto pos = line.find(key + "=");
  if (pos == std::string::npos)
    return "?";
  pos += key.size() + 1;
  auto end = line.find_first_of(" \n", pos);
  return line.substr(pos, end - pos);
}

} // namespace

int main(int argc, char** argv) {
  using sail::bench::flag_int;
  if (auto n = sail::bench::flag(argc, argv, "inflight"))
    return run_inflight(std::strtoul(n->c_str(), nullptr, 10),
                        flag_int(argc, argv, "poll-ms", 30 * 60 * 1000));
  if (auto k = sail::bench::flag(argc, argv, "polls"))
    return run_polls(std::strtoul(k->c_str(), nullptr, 10),
                     flag_int(argc, argv, "poll-latency-s", 60));

  bool quick = sail::bench::has_flag(argc, argv, "quick");
  std::string ns = sail::bench::flag(argc, argv, "n").value_or(quick ? "2000" : "10000,100000");
  long poll_samples = flag_int(argc, argv, "poll-samples", quick ? 3 : 5);
  long latency = flag_int(argc, argv, "poll-latency-s", quick ? 5 : 60);
  auto poll_ms = sail::bench::flag(argc, argv, "poll-ms");
  auto baseline = sail::bench::flag(argc, argv, "baseline");
  std::string self = "/proc/self/exe";
  {
    char buf[4096];
    auto len = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (len > 0)
      self.assign(buf, static_cast<size_t>(len));
  }
  std::printf("inflight_bench: %u cores; every measurement in a fresh process; the "
              "emulator in a forked child process (its memory is reported apart, not "
              "subtracted)\n",
              std::thread::hardware_concurrency());
  std::vector<std::string> results;
  int rc = 0;
  size_t pos = 0;
  while (pos < ns.size()) {
    auto comma = ns.find(',', pos);
    auto item = ns.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? ns.size() : comma + 1;
    std::printf("\n[in flight] N=%s, prompt 32 tokens, max_tokens 16, priority window "
                "queued 30 min, first poll after %s ms\n",
                item.c_str(), poll_ms ? poll_ms->c_str() : "1800000");
    auto args = " --inflight " + item + (poll_ms ? " --poll-ms " + *poll_ms : std::string{});
    if (baseline) {
      std::printf("  before (baseline %s):\n", baseline->c_str());
      rc |= run_child("'" + *baseline + "'" + args, results, "before ");
      std::printf("  after (this tree):\n");
    }
    rc |= run_child("'" + self + "'" + args, results);
  }
  if (poll_samples > 0) {
    std::printf("\n[polls] %ld samples, emulator latency %ld s (priority window queued), "
                "DEFAULT pool window timing\n",
                poll_samples, latency);
    rc |= run_child("'" + self + "' --polls " + std::to_string(poll_samples)
                      + " --poll-latency-s " + std::to_string(latency),
                    results);
  }
  std::printf("\n== inflight_bench summary ==\n");
  for (auto& r : results) {
    if (r.rfind("before inflight", 0) == 0)
      std::printf("BEFORE in flight %-7s: %s bytes RSS per in-flight sample (baseline "
                  "binary)%s\n",
                  field(r, "n").c_str(), field(r, "client_bytes_per_sample").c_str(),
                  field(r, "ok") == "1" ? "" : "  [INCOMPLETE]");
    else if (r.rfind("inflight", 0) == 0)
      std::printf("%sin flight %-7s: %s bytes RSS per in-flight sample (client process; "
                  "emulator child: %s bytes per response)%s\n",
                  baseline ? "AFTER  " : "", field(r, "n").c_str(),
                  field(r, "client_bytes_per_sample").c_str(),
                  field(r, "emulator_bytes_per_response").c_str(),
                  field(r, "ok") == "1" ? "" : "  [INCOMPLETE]");
    else if (r.rfind("polls", 0) == 0)
      std::printf("GET polls per %s s sample (default priority timing): mean %s, min %s, "
                  "max %s over %s samples%s\n",
                  field(r, "latency_s").c_str(), field(r, "gets_mean").c_str(),
                  field(r, "gets_min").c_str(), field(r, "gets_max").c_str(),
                  field(r, "samples").c_str(), field(r, "ok") == "1" ? "" : "  [FAILED]");
  }
  return rc;
}
