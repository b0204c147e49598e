// The cluster as it runs in production, one process per role on 127.0.0.1:
// an emulator (in this process, so its counters can be read), three
// `sail-tinker serve` processes, and a trainer (an actor system in this
// process running sail::cluster). Node failures are real signals: SIGKILL,
// SIGSTOP, SIGTERM. Every wait is bounded and woken by what it waits for
// (process output, the emulator's counter updates, the cluster monitor).
#include <catch2/catch.hpp>

#include <signal.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "sail_tinker/messages/error.hpp"
#include "support/certs_cluster.hpp"
#include "support/cluster_fixture.hpp"
#include "support/lsan_openssl.hpp"
#include "support/paths.hpp"
#include "support/process.hpp"
#include "support/stack_fixture.hpp"
#include "support/sync_http.hpp"


using namespace sail;
using namespace sail::test;
using namespace std::chrono_literals;

namespace {

/// Failure detection of every process in these tests (trainer: see
/// configure_test_node, which uses the same values).
constexpr auto heartbeat_interval = 200ms;
constexpr auto connection_timeout = 1s;

/// One `sail-tinker serve` process against the emulator.
class serve_process {
public:
  serve_process(const emulator::server& emu, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args{"serve",
                                  "--port",
                                  "0",
                                  "--metrics-port",
                                  "0",
                                  "--log-level",
                                  "warn",
                                  "--middleman.heartbeat-interval=200ms",
                                  "--middleman.connection-timeout=1s"};
    args.insert(args.end(), extra.begin(), extra.end());
    process_options opts;
    opts.env["SAIL_API_KEY"] = emu.config().sail_api_key;
    opts.env["SAIL_BASE_URL"] = emu.base_url();
    opts.env["TINKER_API_KEY"] = std::nullopt;
    opts.env["TINKER_BASE_URL"] = std::nullopt;
    proc_ = std::make_unique<subprocess>(std::string{binary_dir} + "/sail-tinker", args, opts);
    port_ = port_of(proc_->wait_for_line("listening on caf://", 30s),
                    R"(^listening on caf://127\.0\.0\.1:(\d+)$)");
    metrics_port_ = port_of(proc_->wait_for_line("listening on http://", 30s),
                            R"(^listening on http://127\.0\.0\.1:(\d+)/metrics$)");
    for (auto& a : extra)
      if (a == "--webhook.enabled")
        webhook_port_ = port_of(proc_->wait_for_line("webhook receiver on port", 30s),
                                R"(^webhook receiver on port (\d+), Sail calls http://.*$)");
  }

  uint16_t webhook_port() const {
    return webhook_port_;
  }

  /// The value of the /metrics sample line starting with `name` (a metric
  /// name with its labels, e.g. `sail_tinker_webhooks_total{outcome="applied"}`).
  uint64_t metric(const std::string& name) {
    sync_http http{"127.0.0.1", metrics_port_};
    auto res = http.get("/metrics");
    if (!res.ok() || res.status() != 200)
      throw std::runtime_error("GET /metrics failed");
    std::istringstream in{res.body()};
    std::string line;
    while (std::getline(in, line))
      if (line.rfind(name + " ", 0) == 0)
        return std::stoull(line.substr(name.size() + 1));
    throw std::runtime_error("no " + name + " in /metrics");
  }

  uint16_t port() const {
    return port_;
  }

  node_address address() const {
    return {"127.0.0.1", port_};
  }

  void signal(int sig) {
    proc_->signal(sig);
  }

  process_result wait(std::chrono::milliseconds timeout) {
    return proc_->wait(timeout);
  }

  /// sail_tinker_samples_completed_total from the node's /metrics.
  uint64_t completed_by_metrics() {
    sync_http http{"127.0.0.1", metrics_port_};
    auto res = http.get("/metrics");
    if (!res.ok() || res.status() != 200)
      throw std::runtime_error("GET /metrics failed");
    std::istringstream in{res.body()};
    std::string line;
    const std::string name = "sail_tinker_samples_completed_total ";
    while (std::getline(in, line))
      if (line.rfind(name, 0) == 0)
        return std::stoull(line.substr(name.size()));
    throw std::runtime_error("no samples_completed_total in /metrics");
  }

private:
  uint16_t port_of(const std::optional<std::string>& line, const char* pattern) {
    std::smatch m;
    if (!line || !std::regex_match(*line, m, std::regex{pattern}))
      throw std::runtime_error("serve did not start: " + proc_->out() + proc_->err());
    return static_cast<uint16_t>(std::stoi(m[1].str()));
  }

  std::unique_ptr<subprocess> proc_;
  uint16_t port_ = 0;
  uint16_t metrics_port_ = 0;
  uint16_t webhook_port_ = 0;
};

/// The emulator, three serve processes and a trainer.
struct process_cluster {
  emulator::server emu;
  std::vector<std::unique_ptr<serve_process>> nodes;
  std::unique_ptr<test_trainer> trainer;

  explicit process_cluster(std::chrono::milliseconds queued, size_t n_nodes = 3,
                           const std::vector<std::string>& serve_args = {})
    : emu(emulator_with_queue(queued)) {
    std::vector<node_address> addrs;
    for (size_t i = 0; i < n_nodes; ++i) {
      nodes.push_back(std::make_unique<serve_process>(emu, serve_args));
      addrs.push_back(nodes.back()->address());
    }
    trainer = std::make_unique<test_trainer>(addrs, toy_config());
    if (!trainer->cl().wait_ready(n_nodes, 30s))
      throw std::runtime_error("the trainer did not connect to every node");
  }

  ~process_cluster() {
    trainer->stop();
    nodes.clear();  // still-running nodes are killed and reaped
  }

  cluster& cl() {
    return trainer->cl();
  }

  /// Starts `n` samples (each a future; the trainer's cluster answers).
  std::vector<std::future<cluster::sample_result>> start_samples(int n) {
    std::vector<std::future<cluster::sample_result>> fs;
    for (int i = 0; i < n; ++i)
      fs.push_back(cl().sample(numbered_prompt(i)));
    return fs;
  }

  /// Waits until every sample has reached Sail once (the emulator wakes the
  /// wait on each request).
  bool all_submitted(size_t n) {
    return wait_for_post_arrivals(emu, n);
  }

  /// Every future answered with a result (none failed, none lost).
  void require_all_ok(std::vector<std::future<cluster::sample_result>>& fs) {
    for (size_t i = 0; i < fs.size(); ++i) {
      REQUIRE(fs[i].wait_for(120s) == std::future_status::ready);
      auto r = fs[i].get();
      INFO("sample " << i << ": " << (r ? std::string{"ok"} : render(r.error())));
      REQUIRE(r);
      CHECK(matches_model(emu, toy_config(), numbered_prompt(static_cast<int64_t>(i)).prompt.tokens, 8,
                          r->tokens));
    }
  }

  /// One inference run per Idempotency-Key, and some keys were replayed
  /// (re-routed with their key after the lost node had submitted them).
  void check_once_per_key(size_t n) {
    auto st = emu.snapshot();
    CHECK(st.inference_runs.size() == n);
    CHECK(st.inference_runs_total == n);
    CHECK(st.max_runs_per_key == 1);
    size_t replayed = 0;
    for (auto& [key, xs] : st.arrivals)
      if (xs.size() > 1)
        ++replayed;
    CHECK(replayed > 0);
  }

  void dump_status() {
    for (auto& s : cl().status())
      UNSCOPED_INFO(s.address.to_string()
                    << ": " << to_string(s.state) << " in_flight=" << s.in_flight
                    << " completed=" << s.completed << " rerouted=" << s.rerouted
                    << " losses=" << s.losses << " last_error=" << s.last_error);
  }
};

} // namespace

TEST_CASE("processes: three serve nodes share the load", "[cluster][processes]") {
  process_cluster pc{20ms};
  constexpr int n = 150;
  auto fs = pc.start_samples(n);
  pc.require_all_ok(fs);
  pc.dump_status();
  auto status = pc.cl().status();
  uint64_t total = 0;
  for (size_t i = 0; i < 3; ++i) {
    auto served = pc.nodes[i]->completed_by_metrics();
    INFO("node " << i << ": /metrics says " << served << ", trainer counted "
                 << status[i].completed);
    CHECK(served * 5 >= n);  // each node serves at least 20 %
    CHECK(status[i].completed == served);
    total += served;
  }
  CHECK(total == n);
  auto st = pc.emu.snapshot();
  CHECK(st.inference_runs.size() == n);
  CHECK(st.max_runs_per_key == 1);
  // SIGTERM: each node stops cleanly.
  pc.trainer->stop();
  for (auto& node : pc.nodes) {
    node->signal(SIGTERM);
    auto done = node->wait(30s);
    INFO(done.err);
    CHECK_FALSE(done.timed_out);
    CHECK(done.exited);
    CHECK(done.exit_code == 0);
  }
}

namespace {

/// Starts `n` samples, waits until every one has reached Sail and node
/// `victim` holds some of them, calls `fail()` (a signal to the victim), then
/// requires what every node failure must give: each sample answered with its
/// result (the trainer sees no error), the victim's work re-routed, every
/// sample counted once, one inference run per Idempotency-Key. Returns the
/// cluster's final view of its nodes.
std::vector<node_status> run_through_failure(process_cluster& pc, size_t victim,
                                             const std::function<void()>& fail) {
  constexpr int n = 90;
  auto fs = pc.start_samples(n);
  REQUIRE(pc.all_submitted(n));
  REQUIRE(pc.cl().status()[victim].in_flight > 0);
  fail();
  pc.require_all_ok(fs);
  pc.dump_status();
  auto status = pc.cl().status();
  CHECK(status[victim].rerouted > 0);
  CHECK(status[victim].losses >= 1);
  CHECK(status[0].completed + status[1].completed + status[2].completed == n);
  pc.check_once_per_key(n);
  return status;
}

} // namespace

TEST_CASE("processes: SIGKILL of a node mid-run loses no sample and runs none twice",
          "[cluster][processes][failover]") {
  process_cluster pc{3s};
  auto status = run_through_failure(pc, 0, [&] { pc.nodes[0]->signal(SIGKILL); });
  CHECK(status[0].state != node_state::ready);
  auto killed = pc.nodes[0]->wait(10s);
  CHECK(killed.term_signal == SIGKILL);
}

TEST_CASE("processes: SIGSTOP of a node is detected by heartbeats and its work re-routed",
          "[cluster][processes][failover]") {
  process_cluster pc{3s};
  run_through_failure(pc, 1, [&] {
    auto stopped_at = std::chrono::steady_clock::now();
    pc.nodes[1]->signal(SIGSTOP);
    // A stopped process keeps its sockets open: only the missing heartbeats
    // tell. The link is dropped once nothing arrived for connection-timeout
    // (checked on each heartbeat tick), plus scheduling slack for loaded CI.
    auto bound = connection_timeout + heartbeat_interval + 1s;
    bool detected = pc.cl().wait_for([](auto& xs) { return xs[1].losses >= 1; }, bound);
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - stopped_at);
    INFO("frozen node detected after " << took.count() << " ms (connection timeout "
                                       << std::chrono::milliseconds(connection_timeout).count()
                                       << " ms)");
    REQUIRE(detected);
  });
  pc.trainer->stop();
  pc.nodes[1]->signal(SIGKILL);  // a stopped process still dies on SIGKILL
}

TEST_CASE("processes: SIGTERM of a node mid-run hands its work over",
          "[cluster][processes][failover]") {
  process_cluster pc{3s};
  run_through_failure(pc, 2, [&] { pc.nodes[2]->signal(SIGTERM); });
  auto done = pc.nodes[2]->wait(30s);
  INFO(done.err);
  CHECK(done.exited);
  CHECK(done.exit_code == 0);
}

TEST_CASE("processes: completion webhooks through serve nodes, SIGKILL of one mid-run",
          "[cluster][processes][webhook]") {
  // Every node receives its own webhooks (random token per node); the
  // samples of the killed node are re-routed with the body they had, naming
  // the dead node's receiver, so the surviving nodes poll those.
  process_cluster pc{1s, 3, {"--webhook.enabled"}};
  for (auto& node : pc.nodes)
    REQUIRE(node->webhook_port() != 0);
  auto status = run_through_failure(pc, 0, [&] { pc.nodes[0]->signal(SIGKILL); });
  auto st = pc.emu.snapshot();
  CHECK(st.count("POST /v1/responses", 400) == 0);
  // Samples that stayed on a live node finished by webhook, without a GET;
  // only re-routed ones (whose webhook goes to the dead node) were polled.
  uint64_t applied = 0;
  uint64_t polls = 0;
  for (size_t i = 1; i < 3; ++i) {
    applied += pc.nodes[i]->metric(R"(sail_tinker_webhooks_total{outcome="applied"})");
    polls += pc.nodes[i]->metric("sail_tinker_polls_total");
    CHECK(pc.nodes[i]->metric(R"(sail_tinker_webhooks_total{outcome="rejected_unauthorized"})")
          == 0);
  }
  INFO("live nodes: " << applied << " samples by webhook, " << polls << " GETs; rerouted "
                      << status[0].rerouted);
  CHECK(applied + status[0].rerouted >= status[1].completed + status[2].completed);
  CHECK(applied > 0);
  size_t polled_keys = 0;
  for (auto& [key, t] : st.timings)
    if (st.poll_arrivals.count(t.id) > 0)
      ++polled_keys;
  CHECK(polled_keys <= status[0].rerouted);
  auto killed = pc.nodes[0]->wait(10s);
  CHECK(killed.term_signal == SIGKILL);
}

TEST_CASE("processes: with TLS, peers without a certificate of the cluster CA are refused",
          "[cluster][processes][tls]") {
  auto certs = make_cluster_certs(3);
  struct cleanup {
    cluster_certs& c;
    ~cleanup() {
      remove_cluster_certs(c);
    }
  } cleanup_certs{certs};
  auto tls_args = [](const std::string& cert, const std::string& key, const std::string& ca) {
    return std::vector<std::string>{"--openssl.certificate=" + cert, "--openssl.key=" + key,
                                    "--openssl.cafile=" + ca};
  };
  auto peer = [&](size_t i) {
    return tls_files{certs.peers[i].cert, certs.peers[i].key, certs.ca};
  };
  emulator::server emu{emulator_with_queue(1ms)};
  serve_process node{emu, tls_args(certs.peers[0].cert, certs.peers[0].key, certs.ca)};
  // A refused peer never connects; its attempts keep failing.
  auto refused = [](test_trainer& t) {
    return t.cl().wait_for([](auto& xs) { return xs[0].failed_attempts >= 2; }, 60s)
           && t.cl().status()[0].connects == 0;
  };
  SECTION("a trainer with a certificate of the cluster CA is served") {
    test_trainer trainer{{node.address()}, toy_config(), {}, peer(1)};
    REQUIRE(trainer.cl().wait_ready(1, 30s));
    auto f = trainer.cl().sample(numbered_prompt(1));
    REQUIRE(f.wait_for(60s) == std::future_status::ready);
    auto r = f.get();
    INFO((r ? std::string{"ok"} : render(r.error())));
    CHECK(r);
    trainer.stop();
  }
  SECTION("a trainer without a certificate is refused") {
    test_trainer trainer{{node.address()}, toy_config(), [](cluster_options& o) {
                           o.security = transport_security::tls;
                         }};
    CHECK(refused(trainer));
    trainer.stop();
  }
  SECTION("a trainer speaking plain BASP is refused") {
    test_trainer trainer{{node.address()}, toy_config()};
    CHECK(refused(trainer));
    trainer.stop();
  }
  SECTION("a trainer with a certificate of another CA is refused") {
    test_trainer trainer{{node.address()}, toy_config(), {},
                         tls_files{certs.rogue.cert, certs.rogue.key, certs.rogue_ca}};
    CHECK(refused(trainer));
    trainer.stop();
  }
  SECTION("a node with a certificate of another CA is refused by the trainer") {
    serve_process rogue{emu, tls_args(certs.rogue.cert, certs.rogue.key, certs.ca)};
    test_trainer trainer{{rogue.address()}, toy_config(), {}, peer(2)};
    CHECK(refused(trainer));
    trainer.stop();
  }
  CHECK(emu.snapshot().inference_runs_total <= 1);
}
