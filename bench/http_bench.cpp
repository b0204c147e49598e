// http_bench: requests/s of sail::http_client (keep-alive, closed loops at
// concurrency C) against the emulator's cheapest route, GET
// /_emulator/health, beside wrk on the same route in the same run.
//
//   http_bench [--duration S] [--concurrency 1,4,16,64] [--client-threads N]
//              [--emulator-threads N] [--wrk-threads N] [--no-wrk]
//
// For each C: the client gets max_connections_per_origin = C and C request
// loops (each completion starts the next request) for S seconds after a short
// warm-up; then `wrk -t<T> -c<C> -d<S>s` runs against the same emulator and its
// "Requests/sec" line is parsed. The emulator, the client and wrk share the
// machine, so figures are relative, not absolute. The CPU columns (client
// io threads' CPU time per completed request; wrk's user+sys time per request)
// are less sensitive to machine load than the req/s columns.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <pthread.h>
#include <sys/resource.h>
#include <time.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/http_client.hpp"

namespace {

using steady = std::chrono::steady_clock;

struct config {
  double duration = 3.0;
  std::vector<int> concurrency = {1, 4, 16, 64};
  int client_threads = 1;
  int emulator_threads = 1;
  int wrk_threads = 1;
  bool wrk = true;
};

struct loop_state {
  sail::http_client* client = nullptr;
  std::string url;
  std::atomic<bool> measuring{false};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ok{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<int> running{0};
  std::promise<void> all_done;
  std::string first_error;
  std::atomic<bool> have_error{false};
};

void issue(const std::shared_ptr<loop_state>& st) {
  if (st->stop.load()) {
    if (st->running.fetch_sub(1) == 1)
      st->all_done.set_value();
    return;
  }
  sail::http_request req;
  req.url = st->url;
  st->client->async_request(std::move(req), [st](caf::expected<sail::http_response> r) {
    if (r && r->status == 200) {
      if (st->measuring.load(std::memory_order_relaxed))
        st->ok.fetch_add(1, std::memory_order_relaxed);
    } else {
      st->errors.fetch_add(1);
      if (!st->have_error.exchange(true))
        st->first_error = r ? "status " + std::to_string(r->status)
                            : sail::render(r.error());
    }
    issue(st);
  });
}

// CPU seconds consumed so far by the given threads.
double thread_cpu(std::vector<std::thread>& threads) {
  double total = 0;
  for (auto& t : threads) {
    clockid_t id;
    timespec ts{};
    if (pthread_getcpuclockid(t.native_handle(), &id) == 0
        && clock_gettime(id, &ts) == 0)
      total += static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
  }
  return total;
}

double children_cpu() {
  rusage ru{};
  getrusage(RUSAGE_CHILDREN, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)
         + static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

struct client_result {
  double cpu_us_per_req = 0;
  double rps = 0;
  uint64_t errors = 0;
  uint64_t connections = 0;
  std::string first_error;
};

client_result run_client(const std::string& url, int c, const config& cfg) {
  boost::asio::io_context io;
  auto guard = boost::asio::make_work_guard(io);
  std::vector<std::thread> threads;
  for (int i = 0; i < cfg.client_threads; ++i)
    threads.emplace_back([&] { io.run(); });
  client_result out;
  {
    sail::http_client_options opts;
    opts.max_connections_per_origin = static_cast<uint32_t>(c);
    auto client = sail::http_client::make(io, opts);
    if (!client) {
      std::cerr << sail::render(client.error()) << "\n";
      std::exit(1);
    }
    auto st = std::make_shared<loop_state>();
    st->client = &*client;
    st->url = url;
    st->running = c;
    auto done = st->all_done.get_future();
    for (int i = 0; i < c; ++i)
      issue(st);
    std::this_thread::sleep_for(std::chrono::milliseconds(300)); // warm-up
    st->measuring = true;
    auto t0 = steady::now();
    auto cpu0 = thread_cpu(threads);
    std::this_thread::sleep_for(std::chrono::duration<double>(cfg.duration));
    st->measuring = false;
    auto cpu1 = thread_cpu(threads);
    auto elapsed = std::chrono::duration<double>(steady::now() - t0).count();
    if (st->ok.load() > 0)
      out.cpu_us_per_req = (cpu1 - cpu0) * 1e6 / static_cast<double>(st->ok.load());
    st->stop = true;
    done.wait();
    out.rps = static_cast<double>(st->ok.load()) / elapsed;
    out.errors = st->errors.load();
    out.first_error = st->first_error;
    out.connections = client->stats().connections_opened;
  }
  guard.reset();
  for (auto& t : threads)
    t.join();
  return out;
}

double run_wrk(const std::string& url, int c, const config& cfg, std::string& raw,
               double& cpu_us_per_req) {
  int threads = std::min(cfg.wrk_threads, c);
  std::ostringstream cmd;
  cmd << "wrk -t" << threads << " -c" << c << " -d"
      << static_cast<int>(cfg.duration + 0.5) << "s " << url << " 2>&1";
  auto cpu0 = children_cpu();
  FILE* f = popen(cmd.str().c_str(), "r");
  if (f == nullptr)
    return -1;
  char buf[4096];
  raw.clear();
  while (size_t n = fread(buf, 1, sizeof(buf), f))
    raw.append(buf, n);
  pclose(f);
  auto cpu = children_cpu() - cpu0;
  auto pos = raw.find("Requests/sec:");
  if (pos == std::string::npos)
    return -1;
  // "  123456 requests in 3.00s, ..." -> total requests (warm-up included).
  if (auto r = raw.find(" requests in "); r != std::string::npos) {
    auto start = raw.rfind('\n', r);
    auto total = std::strtod(raw.c_str() + (start == std::string::npos ? 0 : start + 1),
                             nullptr);
    if (total > 0)
      cpu_us_per_req = cpu * 1e6 / total;
  }
  return std::strtod(raw.c_str() + pos + 13, nullptr);
}

std::vector<int> parse_list(const char* s) {
  std::vector<int> out;
  std::stringstream ss{s};
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty())
      out.push_back(std::max(1, std::atoi(item.c_str())));
  return out;
}

} // namespace

int main(int argc, char** argv) {
  config cfg;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::cerr << "missing value for " << a << "\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--duration")
      cfg.duration = std::atof(next());
    else if (a == "--concurrency")
      cfg.concurrency = parse_list(next());
    else if (a == "--client-threads")
      cfg.client_threads = std::max(1, std::atoi(next()));
    else if (a == "--emulator-threads")
      cfg.emulator_threads = std::max(1, std::atoi(next()));
    else if (a == "--wrk-threads")
      cfg.wrk_threads = std::max(1, std::atoi(next()));
    else if (a == "--no-wrk")
      cfg.wrk = false;
    else {
      std::cerr << "usage: http_bench [--duration S] [--concurrency 1,4,16,64] "
                   "[--client-threads N] [--emulator-threads N] [--wrk-threads N] "
                   "[--no-wrk]\n";
      return a == "--help" ? 0 : 2;
    }
  }
  bool have_wrk = cfg.wrk && std::system("command -v wrk >/dev/null 2>&1") == 0;
  sail::emulator::options eo;
  eo.threads = static_cast<size_t>(cfg.emulator_threads);
  eo.record_arrivals = false;
  sail::emulator::server emu{eo};
  auto url = emu.base_url() + "/_emulator/health";
  std::printf("http_bench: GET %s, %.1f s per run, client threads %d, emulator "
              "threads %d, wrk threads %d%s\n",
              url.c_str(), cfg.duration, cfg.client_threads, cfg.emulator_threads,
              cfg.wrk_threads, have_wrk ? "" : " (wrk not run)");
  std::printf("%5s %11s %10s %6s %13s %12s %7s %6s\n", "C", "sail req/s",
              "wrk req/s", "ratio", "sail CPU us/r", "wrk CPU us/r", "errors",
              "conns");
  for (int c : cfg.concurrency) {
    auto r = run_client(url, c, cfg);
    double w = -1;
    double wcpu = 0;
    std::string raw;
    if (have_wrk)
      w = run_wrk(url, c, cfg, raw, wcpu);
    char wbuf[32] = "-";
    char ratio[32] = "-";
    if (w > 0) {
      std::snprintf(wbuf, sizeof(wbuf), "%.0f", w);
      std::snprintf(ratio, sizeof(ratio), "%.2f", r.rps / w);
    }
    std::printf("%5d %11.0f %10s %6s %13.1f %12.1f %7llu %6llu\n", c, r.rps, wbuf,
                ratio, r.cpu_us_per_req, wcpu,
                static_cast<unsigned long long>(r.errors),
                static_cast<unsigned long long>(r.connections));
    if (r.errors > 0)
      std::printf("       first client error: %s\n", r.first_error.c_str());
    if (have_wrk && w <= 0)
      std::printf("       wrk output: %s\n", raw.c_str());
    std::fflush(stdout);
  }
  emu.stop();
  return 0;
}
