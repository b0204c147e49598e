// bench/e2e_bench: samples/s through the whole stack -- token_completer ->
// completer -> worker pool -> HTTP client -> emulator -- with zero model
// latency and no poll delay (first_poll 0), beside a Python asyncio client
// (bench/peers/python_client.py, httpx) speaking the same create + poll
// protocol against the SAME emulator in the same run, with the same number of
// samples, the same concurrency and the same number of connections.
//
// The emulator runs in a forked child process (1 thread by default), so the
// CPU time of each client is measured apart from the emulator's. Each side
// gets a warm-up first; the closed loop keeps --concurrency samples in flight
// until --samples are done, and every result is checked (16 tokens, as many
// logprobs).
//
// Usage: e2e_bench [--samples 20000] [--concurrency 256] [--connections 16]
//                  [--emu-threads 1] [--io-threads 1] [--workers 4]
//                  [--py-samples N] [--python /usr/bin/python3]
//                  [--python-client PATH] [--skip-python] [--repeat 1]
//                  [--caf-threads N] [--caf-policy stealing|sharing]
//                  [--adaptive]
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>
#include <sys/wait.h>

#include <caf/actor_system.hpp>
#include <caf/scheduler/abstract_coordinator.hpp>

#include "bench_support.hpp"
#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/actors/system_config.hpp"
#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/messages/error.hpp"

using clock_type = std::chrono::steady_clock;

namespace {

constexpr int64_t max_tokens = 16;
constexpr size_t prompt_len = 32;

/// Closed loop: `concurrency` lanes, each submitting its next sample from the
/// previous one's callback, until `total` samples are done.
class closed_loop {
public:
  closed_loop(sail::token_completer tc, size_t total, uint64_t salt0)
    : tc_(std::move(tc)), total_(total), salt0_(salt0) {
  }

  /// Runs and blocks until every sample replied; returns the seconds taken.
  double run(size_t concurrency) {
    auto t0 = clock_type::now();
    for (size_t i = 0; i < std::min(concurrency, total_); ++i)
      launch();
    done_future_.wait();
    return std::chrono::duration<double>(clock_type::now() - t0).count();
  }

  uint64_t errors() const {
    return errors_.load();
  }
  std::string first_error() const {
    std::lock_guard guard{mtx_};
    return first_error_;
  }

private:
  void launch() {
    auto i = next_.fetch_add(1);
    if (i >= total_)
      return;
    sail::sample_request req;
    req.prompt = sail::model_input{sail::bench::prompt_tokens(prompt_len, salt0_ + i)};
    tc_.sample(std::move(req), [this](sail::token_completer::sample_result r) {
      if (!r) {
        note_error(sail::render(r.error()));
      } else if (r->tokens.size() != static_cast<size_t>(max_tokens)
                 || !r->maybe_logprobs
                 || r->maybe_logprobs->size() != r->tokens.size()) {
        note_error("unexpected result shape");
      }
      if (done_.fetch_add(1) + 1 == total_)
        done_promise_.set_value();
      else
        launch();
    });
  }

  void note_error(std::string what) {
    if (errors_.fetch_add(1) == 0) {
      std::lock_guard guard{mtx_};
      first_error_ = std::move(what);
    }
  }

  sail::token_completer tc_;
  size_t total_;
  uint64_t salt0_;
  std::atomic<size_t> next_{0};
  std::atomic<size_t> done_{0};
  std::atomic<uint64_t> errors_{0};
  std::promise<void> done_promise_;
  std::future<void> done_future_ = done_promise_.get_future();
  mutable std::mutex mtx_;
  std::string first_error_;
};

struct side_result {
  double samples_per_s = 0;
  double seconds = 0;
  double client_cpu_s = 0;
  double emulator_cpu_s = 0;
  uint64_t errors = 0;
  bool ok = false;
};

std::string source_dir() {
  std::string f = __FILE__;
  auto slash = f.rfind('/');
  return slash == std::string::npos ? "." : f.substr(0, slash);
}

/// Runs the Python client; parses its samples_per_s line.
side_result run_python(const std::string& python, const std::string& script,
                       const sail::bench::emulator_child& emu, const std::string& key,
                       size_t samples, size_t concurrency, size_t connections) {
  side_result out;
  auto cmd = "'" + python + "' '" + script + "' --base-url " + emu.base_url()
             + " --api-key " + key + " --samples " + std::to_string(samples)
             + " --concurrency " + std::to_string(concurrency) + " --connections "
             + std::to_string(connections) + " --max-tokens " + std::to_string(max_tokens)
             + " --prompt-tokens " + std::to_string(prompt_len)
             + " --first-poll-ms 0 --max-poll-ms 0";
  rusage before{};
  getrusage(RUSAGE_CHILDREN, &before);
  auto emu_cpu0 = sail::bench::proc_cpu_seconds(emu.pid());
  auto* p = ::popen(cmd.c_str(), "r");
  if (!p)
    return out;
  char line[1024];
  std::string last;
  while (std::fgets(line, sizeof(line), p))
    last = line;
  int status = ::pclose(p);
  out.emulator_cpu_s = sail::bench::proc_cpu_seconds(emu.pid()) - emu_cpu0;
  rusage after{};
  getrusage(RUSAGE_CHILDREN, &after);
  auto s = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  out.client_cpu_s = s(after.ru_utime) + s(after.ru_stime) - s(before.ru_utime)
                     - s(before.ru_stime);
  auto num = [&](const char* k) {
    auto pos = last.find(k);
    return pos == std::string::npos ? -1.0 : std::strtod(last.c_str() + pos + std::strlen(k), nullptr);
  };
  out.samples_per_s = num("samples_per_s=");
  out.seconds = num("seconds=");
  out.errors = static_cast<uint64_t>(std::max(0.0, num("errors=")));
  out.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && out.samples_per_s > 0;
  if (!out.ok)
    std::fprintf(stderr, "python client failed (status %d): %s\n", status, last.c_str());
  return out;
}

} // namespace

int main(int argc, char** argv) {
  using sail::bench::flag_int;
  size_t samples = static_cast<size_t>(flag_int(argc, argv, "samples", 20000));
  size_t concurrency = static_cast<size_t>(flag_int(argc, argv, "concurrency", 256));
  size_t connections = static_cast<size_t>(flag_int(argc, argv, "connections", 16));
  size_t py_samples = static_cast<size_t>(flag_int(argc, argv, "py-samples",
                                                   static_cast<long>(samples)));
  long repeat = flag_int(argc, argv, "repeat", 1);
  auto python = sail::bench::flag(argc, argv, "python").value_or("/usr/bin/python3");
  auto script = sail::bench::flag(argc, argv, "python-client")
                  .value_or(source_dir() + "/peers/python_client.py");
  bool skip_python = sail::bench::has_flag(argc, argv, "skip-python");

  sail::emulator::options eopts;
  eopts.threads = static_cast<size_t>(flag_int(argc, argv, "emu-threads", 1));
  eopts.record_arrivals = false;
  sail::bench::emulator_child emu{eopts}; // before any thread

  sail::system_config cfg;
  // Optional CAF scheduler tuning (the default is the library's system_config).
  if (auto threads = flag_int(argc, argv, "caf-threads", 0); threads > 0)
    cfg.set("scheduler.max-threads", static_cast<size_t>(threads));
  if (auto policy = sail::bench::flag(argc, argv, "caf-policy"))
    cfg.set("scheduler.policy", caf::atom_from_string(*policy));
  caf::actor_system sys{cfg};
  sail::runtime_options opts;
  opts.sail_base_url = emu.base_url();
  opts.sail_api_key = eopts.sail_api_key;
  opts.io_threads = static_cast<size_t>(flag_int(argc, argv, "io-threads", 1));
  opts.pool.workers = static_cast<size_t>(flag_int(argc, argv, "workers", 4));
  opts.pool.max_in_flight = concurrency;
  opts.http.max_connections_per_origin = static_cast<uint32_t>(connections);
  for (auto& [window, timing] : opts.pool.windows) {
    timing.first_poll = caf::timespan{0};
    timing.max_poll = caf::timespan{0};
  }
  opts.pool.default_timing.first_poll = caf::timespan{0};
  opts.pool.default_timing.max_poll = caf::timespan{0};
  // "No poll delay" also means no learned plan: adaptive polling would place
  // the first poll near the learned low quantile (a few ms here), a timer
  // per sample this bench's premise excludes (--adaptive keeps it on).
  opts.pool.adaptive.enabled = sail::bench::has_flag(argc, argv, "adaptive");
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

  std::printf("e2e_bench: %u cores; emulator in a child process (%zu thread, zero "
              "latency); %zu samples, %zu in flight, %zu connections, prompt %zu tokens, "
              "%" PRId64 " output tokens, first poll at once\n",
              std::thread::hardware_concurrency(), eopts.threads, samples, concurrency,
              connections, prompt_len, max_tokens);
  std::printf("C++: io threads %zu, pool workers %zu, CAF scheduler threads %zu\n",
              opts.io_threads, opts.pool.workers, sys.scheduler().num_workers());
  std::fflush(stdout);

  // Warm-up.
  {
    closed_loop warm{*tc, std::min<size_t>(2000, samples), 10'000'000};
    warm.run(concurrency);
  }
  auto st0 = emu.stats();
  auto rss0 = sail::bench::rss_kb();
  size_t finished = 0;
  int rc = 0;
  std::vector<side_result> cpp_runs, py_runs;
  for (long r = 0; r < std::max(1L, repeat); ++r) {
    side_result cpp;
    auto cpu0 = sail::bench::self_cpu_seconds();
    auto emu_cpu0 = sail::bench::proc_cpu_seconds(emu.pid());
    closed_loop loop{*tc, samples, static_cast<uint64_t>(r) * samples};
    cpp.seconds = loop.run(concurrency);
    cpp.client_cpu_s = sail::bench::self_cpu_seconds() - cpu0;
    cpp.emulator_cpu_s = sail::bench::proc_cpu_seconds(emu.pid()) - emu_cpu0;
    cpp.samples_per_s = static_cast<double>(samples) / cpp.seconds;
    cpp.errors = loop.errors();
    cpp.ok = cpp.errors == 0;
    finished += samples;
    if (!cpp.ok)
      std::fprintf(stderr, "C++ side: %" PRIu64 " errors, first: %s\n", cpp.errors,
                   loop.first_error().c_str());
    std::printf("run %ld C++   : %9.1f samples/s (%.2f s; client CPU %.2f s = %.0f "
                "samples per CPU-s; emulator CPU %.2f s)%s\n",
                r + 1, cpp.samples_per_s, cpp.seconds, cpp.client_cpu_s,
                samples / cpp.client_cpu_s, cpp.emulator_cpu_s,
                cpp.ok ? "" : " [ERRORS]");
    auto rss = sail::bench::rss_kb();
    std::printf("        client RSS %ld KiB after warm-up -> %ld KiB after %zu finished "
                "samples (%+.0f bytes per finished sample)\n",
                rss0, rss, finished,
                static_cast<double>(rss - rss0) * 1024.0 / static_cast<double>(finished));
    std::fflush(stdout);
    cpp_runs.push_back(cpp);
    if (!skip_python) {
      auto py = run_python(python, script, emu, eopts.sail_api_key, py_samples, concurrency,
                           connections);
      std::printf("run %ld Python: %9.1f samples/s (%.2f s; client CPU %.2f s = %.0f "
                  "samples per CPU-s; emulator CPU %.2f s)%s\n",
                  r + 1, py.samples_per_s, py.seconds, py.client_cpu_s,
                  py_samples / py.client_cpu_s, py.emulator_cpu_s,
                  py.ok ? "" : " [FAILED]");
      std::fflush(stdout);
      py_runs.push_back(py);
      if (!py.ok)
        rc = 1;
    }
    if (!cpp.ok)
      rc = 1;
  }
  auto st1 = emu.stats();
  auto creates = sail::bench::emulator_child::count(st1, "POST /v1/responses", "202")
                 - sail::bench::emulator_child::count(st0, "POST /v1/responses", "202");
  auto polls = sail::bench::emulator_child::count(st1, "GET /v1/responses/{id}", "200")
               - sail::bench::emulator_child::count(st0, "GET /v1/responses/{id}", "200");
  std::printf("emulator: %" PRIu64 " creates, %" PRIu64 " polls (both clients, after "
              "warm-up); max inference runs per key %" PRIu64 "\n",
              creates, polls, st1.at("max_runs_per_key").to_number<uint64_t>());

  auto best = [](const std::vector<side_result>& xs) {
    side_result b;
    for (auto& x : xs)
      if (x.samples_per_s > b.samples_per_s)
        b = x;
    return b;
  };
  auto cpp = best(cpp_runs);
  std::printf("\n== e2e_bench summary (best of %zu) ==\n", cpp_runs.size());
  std::printf("C++ stack : %9.1f samples/s, %8.0f samples per client CPU-second\n",
              cpp.samples_per_s, static_cast<double>(samples) / cpp.client_cpu_s);
  if (!py_runs.empty()) {
    auto py = best(py_runs);
    std::printf("Python    : %9.1f samples/s, %8.0f samples per client CPU-second\n",
                py.samples_per_s, static_cast<double>(py_samples) / py.client_cpu_s);
    std::printf("ratio     : %9.1fx wall-clock throughput, %.1fx per client CPU-second "
                "(target: >= 20x)\n",
                cpp.samples_per_s / py.samples_per_s,
                (static_cast<double>(samples) / cpp.client_cpu_s)
                  / (static_cast<double>(py_samples) / py.client_cpu_s));
  }
  std::fflush(stdout);
  rt.shutdown();
  emu.stop();
  return rc;
}
