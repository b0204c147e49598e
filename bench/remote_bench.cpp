// Trainer -> service-node hop on loopback beside the in-process hop, and
// cluster throughput with 1, 2 and 3 nodes against a latency-bound emulator.
// Plain main (no Google Benchmark fixtures): each figure needs several actor
// systems set up once. Prints a Markdown table for docs/benchmarks.md.
//
//   remote_bench [samples-per-latency-run=2000] [throughput-samples=600]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "sail_tinker/actors/cluster.hpp"
#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/actors/service.hpp"
#include "sail_tinker/actors/system_config.hpp"
#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/messages/error.hpp"

using namespace sail;
using clk = std::chrono::steady_clock;

namespace {

/// `poll`: first poll and poll cap (1 ms for the instant emulator; the
/// emulator's queue latency for the throughput runs, so a sample costs one or
/// two GETs and the emulator's CPU is not what is measured).
runtime_options bench_runtime(const emulator::server& emu, size_t max_in_flight,
                              caf::timespan poll) {
  runtime_options opts;
  opts.sail_base_url = emu.base_url();
  opts.sail_api_key = emu.config().sail_api_key;
  opts.io_threads = 1;
  opts.pool.workers = 4;
  opts.pool.max_in_flight = max_in_flight;
  opts.pool.max_queued = 100000;
  opts.pool.poll_jitter = 0;
  for (auto& [window, timing] : opts.pool.windows) {
    timing.first_poll = poll;
    timing.max_poll = std::max<caf::timespan>(poll, std::chrono::milliseconds(5));
  }
  return opts;
}

struct node {
  node_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<runtime> rt;
  std::unique_ptr<service_node> svc;

  node(const emulator::server& emu, size_t max_in_flight,
       caf::timespan poll = std::chrono::milliseconds(1)) {
    sys = std::make_unique<caf::actor_system>(cfg);
    rt = std::move(*runtime::start(*sys, bench_runtime(emu, max_in_flight, poll)));
    service_options so;
    so.host = "127.0.0.1";
    svc = std::move(*service_node::start(*rt, so));
  }

  ~node() {
    svc->shutdown();
    rt->shutdown();
    rt.reset();
    sys.reset();
  }
};

completer_config toy() {
  completer_config c;
  c.model = "emulator/toy";
  c.max_tokens = 8;
  return c;
}

sample_request prompt(size_t i) {
  sample_request req;
  req.prompt.tokens = {static_cast<int64_t>(i % 50) + 1, 2, 3};
  return req;
}

struct percentiles {
  double p50 = 0;
  double p99 = 0;
};

percentiles summarize(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[static_cast<size_t>(q * static_cast<double>(us.size() - 1))]; };
  return {at(0.50), at(0.99)};
}

/// Sequential round trips of `msg` from a scoped actor to `h`.
template <class Handle, class F>
percentiles round_trips(caf::actor_system& sys, Handle h, size_t n, F send_one) {
  caf::scoped_actor self{sys};
  std::vector<double> us;
  us.reserve(n);
  for (size_t i = 0; i < n + n / 10; ++i) {
    auto t0 = clk::now();
    send_one(self, h, i);
    auto dt = std::chrono::duration<double, std::micro>(clk::now() - t0).count();
    if (i >= n / 10) // warm-up
      us.push_back(dt);
  }
  return summarize(us);
}

template <class Handle>
void stats_once(caf::scoped_actor& self, const Handle& h, size_t) {
  self->request(h, std::chrono::seconds(10), atom::stats_v)
    .receive([](completer_stats&) {}, [](caf::error& e) { throw std::runtime_error(render(e)); });
}

template <class Handle>
void sample_once(caf::scoped_actor& self, const Handle& h, size_t i) {
  self->request(h, std::chrono::seconds(30), atom::sample_v, prompt(i))
    .receive([](tokens_with_logprobs&) {}, [](caf::error& e) { throw std::runtime_error(render(e)); });
}

} // namespace

int main(int argc, char** argv) {
  size_t n = argc > 1 ? std::stoul(argv[1]) : 2000;
  size_t m = argc > 2 ? std::stoul(argv[2]) : 600;
  std::cout << "| measurement | p50 (µs) | p99 (µs) |\n|---|---|---|\n";
  {
    emulator::options eo;
    eo.threads = 1;
    emulator::server emu{eo};
    node nd{emu, 256};
    // In-process hop: the node's own completer, from the node's system.
    auto local = nd.rt->make_completer(toy());
    // Remote hop: the same node's completer through a trainer cluster.
    node_config tcfg;
    caf::actor_system tsys{tcfg};
    cluster_options co;
    co.nodes = {{"127.0.0.1", nd.svc->port()}};
    co.config = toy();
    auto cl = std::move(*cluster::start(tsys, co));
    cl->wait_ready(1, std::chrono::seconds(30));
    auto front_local = nd.svc->handle();
    auto p = round_trips(*nd.sys, front_local, n, stats_once<service_actor>);
    std::printf("| stats, in-process (front -> pool) | %.0f | %.0f |\n", p.p50, p.p99);
    p = round_trips(tsys, cl->handle(), n, stats_once<completer_actor>);
    std::printf("| stats, trainer -> cluster -> node (loopback BASP) | %.0f | %.0f |\n", p.p50, p.p99);
    p = round_trips(*nd.sys, *local, n / 4, sample_once<completer_actor>);
    std::printf("| sample (instant emulator), in-process completer | %.0f | %.0f |\n", p.p50, p.p99);
    p = round_trips(tsys, cl->handle(), n / 4, sample_once<completer_actor>);
    std::printf("| sample (instant emulator), trainer -> cluster -> node | %.0f | %.0f |\n", p.p50, p.p99);
    cl->shutdown();
  }
  constexpr size_t per_node_cap = 16;
  // Trainer concurrency: twice what three nodes admit, so the nodes' caps
  // bind (the excess waits in their pools), not the trainer's loop, which
  // waits for the futures in order.
  constexpr size_t window = 2 * 3 * per_node_cap;
  constexpr auto queued = std::chrono::milliseconds(50);
  std::cout << "\n| nodes | samples | seconds | samples/s | ideal samples/s | samples per node |\n"
               "|---|---|---|---|---|---|\n";
  for (size_t k = 1; k <= 3; ++k) {
    emulator::options eo;
    eo.threads = 2;
    eo.latency.priority.queued = queued;
    eo.latency.priority.per_token = std::chrono::microseconds(0);
    emulator::server emu{eo};
    std::vector<std::unique_ptr<node>> nodes;
    node_config tcfg;
    auto tsys = std::make_unique<caf::actor_system>(tcfg);
    cluster_options co;
    for (size_t i = 0; i < k; ++i) {
      // First poll just after the emulator's latency, without jitter: one
      // GET per sample when nothing is late.
      nodes.push_back(std::make_unique<node>(emu, per_node_cap,
                                             queued + std::chrono::milliseconds(2)));
      co.nodes.push_back({"127.0.0.1", nodes.back()->svc->port()});
    }
    co.config = toy();
    auto cl = std::move(*cluster::start(*tsys, co));
    cl->wait_ready(k, std::chrono::seconds(30));
    auto t0 = clk::now();
    std::vector<std::future<cluster::sample_result>> fs;
    size_t next = 0;
    size_t ok = 0;
    while (next < window && next < m)
      fs.push_back(cl->sample(prompt(next++)));
    for (size_t i = 0; i < fs.size(); ++i) {
      if (fs[i].get())
        ++ok;
      if (next < m)
        fs.push_back(cl->sample(prompt(next++)));
    }
    auto secs = std::chrono::duration<double>(clk::now() - t0).count();
    // k * cap samples in flight, each held `queued`.
    auto ideal = static_cast<double>(k * per_node_cap)
                 / std::chrono::duration<double>(queued).count();
    std::string split;
    for (auto& st : cl->status())
      split += (split.empty() ? "" : " / ") + std::to_string(st.completed);
    std::printf("| %zu | %zu ok of %zu | %.2f | %.0f | %.0f | %s |\n", k, ok, m, secs,
                static_cast<double>(ok) / secs, ideal, split.c_str());
    cl->shutdown();
    cl.reset();
    tsys.reset();
    nodes.clear();
  }
  return 0;
}
