// Service nodes and the trainer-side cluster over real loopback sockets: one
// emulator, several service-node actor systems (each with its own runtime),
// and a trainer actor system, all in this process, linked by CAF's middleman
// (BASP over TCP, or caf::openssl). Node loss is produced by a TCP relay
// (cut = killed process, freeze = stopped process) or a graceful node stop.
#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <atomic>
#include <future>
#include <set>

#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/type_ids.hpp"
#include "support/certs_cluster.hpp"
#include "support/cluster_fixture.hpp"
#include "support/lsan_openssl.hpp"
#include "support/stack_fixture.hpp"

using namespace sail;
using namespace sail::test;
using namespace std::chrono_literals;

namespace {

node_address local(uint16_t port) {
  return {"127.0.0.1", port};
}

template <class T>
caf::expected<T> get(std::future<caf::expected<T>>& f) {
  if (f.wait_for(120s) != std::future_status::ready)
    return make_error(errc::timeout, "test: no answer within two minutes");
  return f.get();
}

/// Runs `n` samples through the cluster, calling `midway` once every sample
/// is in flight; returns the results in order.
std::vector<caf::expected<tokens_with_logprobs>>
run_samples(cluster& cl, int n, const std::function<void()>& midway = {}) {
  std::vector<std::future<cluster::sample_result>> fs;
  for (int i = 0; i < n; ++i)
    fs.push_back(cl.sample(numbered_prompt(i)));
  if (midway)
    midway();
  std::vector<caf::expected<tokens_with_logprobs>> out;
  for (auto& f : fs)
    out.push_back(get(f));
  return out;
}

void require_all_ok(const std::vector<caf::expected<tokens_with_logprobs>>& rs) {
  for (size_t i = 0; i < rs.size(); ++i) {
    INFO("sample " << i << ": " << (rs[i] ? std::string{"ok"} : render(rs[i].error())));
    REQUIRE(rs[i]);
  }
}

void check_results_match_model(const emulator::server& emu,
                               const std::vector<caf::expected<tokens_with_logprobs>>& rs) {
  for (size_t i = 0; i < rs.size(); ++i) {
    CHECK(matches_model(emu, toy_config(), numbered_prompt(static_cast<int64_t>(i)).prompt.tokens, 8,
                        rs[i]->tokens));
  }
}

} // namespace

// -- options ------------------------------------------------------------------------

TEST_CASE("cluster: node lists and options are validated before anything is sent",
          "[cluster]") {
  auto list = parse_node_list("127.0.0.1:4242, node-b:1,[::1]:99");
  REQUIRE(list);
  REQUIRE(list->size() == 3);
  CHECK((*list)[1] == node_address{"node-b", 1});
  CHECK((*list)[2].host == "::1");
  CHECK((*list)[2].to_string() == "[::1]:99");
  for (auto bad : {"", "host", "host:0", "host:65536", "host:12x", ":80", "a:1,a:1", "::1:80"}) {
    INFO(bad);
    auto r = parse_node_list(bad);
    REQUIRE(!r);
    CHECK(code_of(r.error()) == errc::invalid_argument);
    CHECK(info_of(r.error())->field == "nodes");
  }
  auto opts = test_cluster_options({local(1)}, toy_config());
  CHECK(!validate(opts));
  opts.config.temperature = std::numeric_limits<double>::quiet_NaN();
  auto err = validate(opts);
  REQUIRE(err);
  CHECK(info_of(err)->field == "temperature");
  opts.config.temperature = 1.0;
  opts.config.top_p = std::numeric_limits<double>::infinity();
  REQUIRE(validate(opts));
  CHECK(info_of(validate(opts))->field == "top_p");
  opts.config.top_p = 1.0;
  opts.nodes.clear();
  CHECK(info_of(validate(opts))->field == "nodes");
  // The cluster refuses to start with a configuration that cannot cross a
  // link: no actor is spawned, no connection attempted.
  node_config cfg;
  configure_test_node(cfg);
  caf::actor_system sys{cfg};
  auto bad = test_cluster_options({local(1)}, toy_config());
  bad.config.temperature = std::numeric_limits<double>::infinity();
  auto started = cluster::start(sys, bad);
  REQUIRE(!started);
  CHECK(code_of(started.error()) == errc::invalid_argument);
}

// -- service front --------------------------------------------------------------------

TEST_CASE("service: equal configurations share one completer, invalid ones are "
          "refused on the node",
          "[cluster][service]") {
  emulator::server emu{test_emulator_options()};
  test_node node{emu};
  node_config cfg;
  configure_test_node(cfg);
  caf::actor_system sys{cfg};
  {
    auto front = sys.middleman().remote_actor<completer_service_actor>("127.0.0.1", node.port());
    REQUIRE(front);
    caf::scoped_actor self{sys};
    auto obtain = [&](completer_config c) {
      caf::expected<completer_actor> out{completer_actor{}};
      self->request(*front, 10s, atom::obtain_v, std::move(c))
        .receive([&](completer_actor& h, webhook_endpoint&) { out = std::move(h); },
                 [&](caf::error& e) { out = std::move(e); });
      return out;
    };
    auto a = obtain(toy_config());
    auto b = obtain(toy_config());
    auto c = obtain(toy_config(9));
    REQUIRE(a);
    REQUIRE(b);
    REQUIRE(c);
    CHECK(*a == *b);
    CHECK(*a != *c);
    auto bad = toy_config();
    bad.max_tokens = 0;
    auto refused = obtain(bad);
    REQUIRE(!refused);
    CHECK(code_of(refused.error()) == errc::invalid_argument);
    CHECK(info_of(refused.error())->field == "max_tokens");
    // The obtained remote completer samples like a local one.
    caf::expected<tokens_with_logprobs> res{tokens_with_logprobs{}};
    self->request(*a, 30s, atom::sample_v, numbered_prompt(1))
      .receive([&](tokens_with_logprobs& r) { res = std::move(r); },
               [&](caf::error& e) { res = std::move(e); });
    REQUIRE(res);
    CHECK(matches_model(emu, toy_config(), numbered_prompt(1).prompt.tokens, 8, res->tokens));
  }
  {
    // A decorator wraps each new completer once (the CLI's metering front).
    auto decorated = std::make_shared<std::atomic<int>>(0);
    service_options so;
    so.host = "127.0.0.1";
    so.decorate = [decorated](caf::actor_system&, completer_actor c) {
      ++*decorated;
      return c;
    };
    auto second = service_node::start(node.rt(), so);
    REQUIRE(second);
    auto front = sys.middleman().remote_actor<completer_service_actor>("127.0.0.1",
                                                                       (*second)->port());
    REQUIRE(front);
    caf::scoped_actor self{sys};
    for (int i = 0; i < 3; ++i)
      self->request(*front, 10s, atom::obtain_v, toy_config(7))
        .receive([](completer_actor&, webhook_endpoint&) {},
                 [](caf::error& e) { FAIL(render(e)); });
    CHECK(*decorated == 1);
    (*second)->shutdown();
  }
  node.stop();
}

TEST_CASE("cluster: adapter_config in either form is accepted on the node",
          "[cluster][service][lora]") {
  emulator::server emu{test_emulator_options()};
  test_node node{emu};
  auto cfg = toy_config();
  cfg.tinker_lora_signed_url = "https://storage.example/ckpt.tar?sig=abc";
  cfg.adapter_config = R"("{\"peft_type\":\"LORA\",\"r\":32}")";
  test_trainer trainer{{local(node.port())}, cfg};
  auto f = trainer.cl().sample(numbered_prompt(1));
  auto res = get(f);
  INFO((res ? std::string{} : render(res.error())));
  REQUIRE(res);
  // Sent as the canonical JSON text of the object.
  size_t creates = 0;
  for (auto& r : emu.request_log())
    if (r.route == "POST /v1/responses") {
      ++creates;
      auto body = boost::json::parse(r.request_body);
      CHECK(body.at("metadata").at("adapter_config") == R"({"peft_type":"LORA","r":32})");
    }
  CHECK(creates == 1);
  trainer.stop();
  node.stop();
}

TEST_CASE("cluster: every node rejecting the configuration fails samples with "
          "that error",
          "[cluster]") {
  emulator::server emu{test_emulator_options()};
  test_node node{emu};
  auto bad = toy_config();
  bad.model = "";
  test_trainer trainer{{local(node.port())}, bad};
  auto f = trainer.cl().sample(numbered_prompt(1));
  auto res = get(f);
  REQUIRE(!res);
  CHECK(code_of(res.error()) == errc::invalid_argument);
  CHECK(info_of(res.error())->field == "model");
  trainer.stop();
  node.stop();
}

// -- balancing ----------------------------------------------------------------------

TEST_CASE("cluster: three nodes share the load", "[cluster]") {
  emulator::server emu{emulator_with_queue(20ms)};
  std::vector<std::unique_ptr<test_node>> nodes;
  std::vector<node_address> addrs;
  for (int i = 0; i < 3; ++i) {
    nodes.push_back(std::make_unique<test_node>(emu));
    addrs.push_back(local(nodes.back()->port()));
  }
  test_trainer trainer{addrs, toy_config()};
  REQUIRE(trainer.cl().wait_ready(3, 30s));
  constexpr int n = 150;
  auto rs = run_samples(trainer.cl(), n);
  require_all_ok(rs);
  check_results_match_model(emu, rs);
  auto status = trainer.cl().status();
  uint64_t total = 0;
  for (size_t i = 0; i < 3; ++i) {
    auto served = nodes[i]->stats().completed;
    INFO("node " << i << " served " << served << ", trainer counted " << status[i].completed);
    CHECK(served * 5 >= n);  // at least 20 %
    CHECK(status[i].completed == served);
    CHECK(status[i].in_flight == 0);
    total += served;
  }
  CHECK(total == n);
  auto st = emu.snapshot();
  CHECK(st.inference_runs.size() == n);
  CHECK(st.max_runs_per_key == 1);
  auto agg = trainer.cl().stats();
  REQUIRE(agg);
  CHECK(agg->completed == n);
  trainer.stop();
  for (auto& node : nodes)
    node->stop();
}

// -- node loss ------------------------------------------------------------------------

namespace {

struct relayed_cluster {
  emulator::server emu;
  std::vector<std::unique_ptr<test_node>> nodes;
  std::vector<std::unique_ptr<tcp_relay>> relays;
  std::unique_ptr<test_trainer> trainer;

  explicit relayed_cluster(std::chrono::milliseconds queued) : emu(emulator_with_queue(queued)) {
    std::vector<node_address> addrs;
    for (int i = 0; i < 3; ++i) {
      nodes.push_back(std::make_unique<test_node>(emu));
      relays.push_back(std::make_unique<tcp_relay>(nodes.back()->port()));
      addrs.push_back(local(relays.back()->port()));
    }
    trainer = std::make_unique<test_trainer>(addrs, toy_config());
    if (!trainer->cl().wait_ready(3, 30s))
      throw std::runtime_error("cluster did not connect");
  }

  ~relayed_cluster() {
    trainer->stop();
    for (auto& n : nodes)
      n->stop();
    relays.clear();
  }

  /// Waits until the emulator has seen `n` POSTs (every sample submitted).
  bool all_submitted(size_t n) {
    return wait_for_post_arrivals(emu, n);
  }

  /// The node to lose in a failover test: the one with the most samples in
  /// flight (submitted by the trainer, unanswered), so the loss always hits
  /// work, however the balancer happened to spread it.
  size_t busiest_node() {
    auto status = trainer->cl().status();
    size_t best = 0;
    for (size_t i = 0; i < status.size(); ++i) {
      auto& s = status[i];
      UNSCOPED_INFO(s.address.to_string()
                    << ": " << to_string(s.state) << " in_flight=" << s.in_flight
                    << " completed=" << s.completed);
      if (s.in_flight > status[best].in_flight)
        best = i;
    }
    return best;
  }

  /// Samples the trainer has in flight on node `i` (submitted, unanswered).
  uint64_t in_flight(size_t i) {
    return trainer->cl().status()[i].in_flight;
  }

  void check_once_per_key(size_t n) {
    auto st = emu.snapshot();
    CHECK(st.inference_runs.size() == n);
    CHECK(st.max_runs_per_key == 1);
    // Some keys arrived more than once: re-routed with their key, replayed.
    size_t replayed = 0;
    for (auto& [key, xs] : st.arrivals)
      if (xs.size() > 1)
        ++replayed;
    CHECK(replayed > 0);
  }

  struct loss_run {
    size_t victim = 0;
    std::vector<caf::expected<tokens_with_logprobs>> results;
    std::vector<node_status> status;
  };

  /// Runs 60 samples; once every one has reached Sail, loses the busiest
  /// node with `lose(index)`. Requires what every node loss must give: each
  /// sample answered, the victim's work re-routed, every sample counted once,
  /// one inference run per key.
  loss_run run_through_loss(const std::function<void(size_t)>& lose) {
    constexpr int n = 60;
    loss_run out;
    out.results = run_samples(trainer->cl(), n, [&] {
      REQUIRE(all_submitted(n));
      out.victim = busiest_node();
      REQUIRE(in_flight(out.victim) > 0);
      lose(out.victim);
    });
    require_all_ok(out.results);
    out.status = trainer->cl().status();
    CHECK(out.status[out.victim].rerouted > 0);
    CHECK(out.status[0].completed + out.status[1].completed + out.status[2].completed == n);
    check_once_per_key(n);
    return out;
  }
};

} // namespace

TEST_CASE("cluster: a node cut off mid-run (like SIGKILL) loses no sample and "
          "runs none twice",
          "[cluster][failover]") {
  relayed_cluster rc{4s};
  auto run = rc.run_through_loss([&](size_t i) { rc.relays[i]->cut(); });
  check_results_match_model(rc.emu, run.results);
  CHECK(run.status[run.victim].losses >= 1);
  CHECK(run.status[run.victim].state != node_state::ready);
}

TEST_CASE("cluster: a frozen node (like SIGSTOP) is detected by heartbeats and its "
          "work re-routed",
          "[cluster][failover]") {
  relayed_cluster rc{4s};
  auto run = rc.run_through_loss([&](size_t i) { rc.relays[i]->freeze(); });
  for (auto& s : run.status)
    UNSCOPED_INFO(s.address.to_string() << ": " << to_string(s.state) << " completed="
                  << s.completed << " rerouted=" << s.rerouted << " losses=" << s.losses
                  << " last_error=" << s.last_error);
  CHECK(run.status[run.victim].losses >= 1);
}

TEST_CASE("cluster: a node shut down gracefully mid-run hands its work over",
          "[cluster][failover]") {
  relayed_cluster rc{4s};
  rc.run_through_loss([&](size_t i) { rc.nodes[i]->stop(); });
}

TEST_CASE("cluster: groups re-route with their keys when a node is lost",
          "[cluster][failover]") {
  relayed_cluster rc{4s};
  std::vector<std::future<cluster::group_reply>> fs;
  for (int i = 0; i < 6; ++i)
    fs.push_back(rc.trainer->cl().sample_group(numbered_prompt(i), 4));
  REQUIRE(rc.all_submitted(24));
  auto victim = rc.busiest_node();
  REQUIRE(rc.in_flight(victim) > 0);
  rc.relays[victim]->cut();
  for (auto& f : fs) {
    auto r = get(f);
    INFO((r ? std::string{"ok"} : render(r.error())));
    REQUIRE(r);
    REQUIRE(r->members.size() == 4);
    for (auto& m : r->members)
      CHECK(m.ok());
  }
  auto st = rc.emu.snapshot();
  CHECK(st.inference_runs.size() == 24);
  CHECK(st.max_runs_per_key == 1);
}

// -- groups, cancel, stats ---------------------------------------------------------------

TEST_CASE("cluster: groups, cancel and stats behave like a local completer",
          "[cluster]") {
  emulator::server emu{emulator_with_queue(0ms)};
  test_node a{emu};
  test_node b{emu};
  test_trainer trainer{{local(a.port()), local(b.port())}, toy_config()};
  REQUIRE(trainer.cl().wait_ready(2, 30s));
  auto g = trainer.cl().sample_group(numbered_prompt(3), 3);
  auto gr = get(g);
  REQUIRE(gr);
  CHECK(!gr->group_id.empty());
  REQUIRE(gr->members.size() == 3);
  for (auto& m : gr->members)
    REQUIRE(m.ok());
  // A bad sample is refused by the balancer itself, typed.
  sample_request empty;
  auto bad = trainer.cl().sample(empty);
  auto br = get(bad);
  REQUIRE(!br);
  CHECK(code_of(br.error()) == errc::invalid_argument);
  // Cancel: make the emulator slow, start a group, cancel it by id.
  emulator::latency_model slow;
  slow.priority.queued = 60s;
  emu.set_latency(slow);
  auto req = numbered_prompt(4);
  req.group_id = "cancel-me";
  auto cg = trainer.cl().sample_group(req, 2);
  REQUIRE(wait_for_post_arrivals(emu, 5));
  trainer.cl().cancel("cancel-me");
  auto cr = get(cg);
  REQUIRE(!cr);
  CHECK(code_of(cr.error()) == errc::cancelled);
  auto st = trainer.cl().stats();
  REQUIRE(st);
  CHECK(st->completed >= 3);
  trainer.stop();
  a.stop();
  b.stop();
}

TEST_CASE("cluster: usage crosses the nodes: results and merged stats equal the emulator's "
          "bill",
          "[cluster][usage]") {
  emulator::server emu{emulator_with_queue(0ms)};
  test_node a{emu};
  test_node b{emu};
  test_trainer trainer{{local(a.port()), local(b.port())}, toy_config()};
  REQUIRE(trainer.cl().wait_ready(2, 30s));
  uint64_t in = 0;
  uint64_t out = 0;
  for (int i = 0; i < 4; ++i) {
    auto fut = trainer.cl().sample_group(numbered_prompt(20 + i), 2);
    auto gr = get(fut);
    REQUIRE(gr);
    for (auto& m : gr->members) {
      REQUIRE(m.ok());
      REQUIRE(m.result->usage);
      in += static_cast<uint64_t>(m.result->usage->input_tokens);
      out += static_cast<uint64_t>(m.result->usage->output_tokens);
    }
  }
  auto bill = emu.snapshot();
  CHECK(bill.billed_input_tokens == in);
  CHECK(bill.billed_output_tokens == out);
  auto st = trainer.cl().stats();
  REQUIRE(st);
  uint64_t samples = 0;
  uint64_t stats_in = 0;
  uint64_t stats_out = 0;
  for (auto& u : st->usage) {
    samples += u.samples;
    stats_in += u.input_tokens;
    stats_out += u.output_tokens;
  }
  CHECK(samples == 8);
  CHECK(stats_in == in);
  CHECK(stats_out == out);
  trainer.stop();
  a.stop();
  b.stop();
}

// -- refused peers ------------------------------------------------------------------------

TEST_CASE("cluster: a node publishing another interface is refused", "[cluster]") {
  emulator::server emu{test_emulator_options()};
  test_node good{emu};
  // A second system publishes something that is not a sail service.
  node_config cfg;
  configure_test_node(cfg);
  caf::actor_system sys{cfg};
  // (One spawn argument: CAF 0.17.6 trips UBSan on argument-less spawns.)
  auto stats_only = sys.spawn(
    [](int32_t) -> caf::typed_actor<caf::replies_to<atom::stats>::with<
                  completer_stats>>::behavior_type {
      return {[](atom::stats) { return completer_stats{}; }};
    },
    int32_t{0});
  auto port = sys.middleman().publish(stats_only, 0, "127.0.0.1");
  REQUIRE(port);
  {
    test_trainer trainer{{local(*port), local(good.port())}, toy_config()};
    REQUIRE(trainer.cl().wait_for(
      [](auto& xs) { return xs[0].failed_attempts >= 2 && xs[1].state == node_state::ready; },
      30s));
    auto status = trainer.cl().status();
    CHECK(status[0].connects == 0);
    CHECK(status[0].last_error.find("unexpected_actor_messaging_interface") != std::string::npos);
    auto rs = run_samples(trainer.cl(), 10);
    require_all_ok(rs);
    CHECK(trainer.cl().status()[1].completed == 10);
    trainer.stop();
  }
  caf::anon_send_exit(stats_only, caf::exit_reason::user_shutdown);
  good.stop();
}

TEST_CASE("cluster: a node with another app identifier is refused", "[cluster]") {
  emulator::server emu{test_emulator_options()};
  test_node::settings other;
  other.app_id = "sail-tinker.v0";
  test_node old_node{emu, other};
  {
    test_trainer trainer{{local(old_node.port())},
                         toy_config(),
                         [](cluster_options& o) { o.queue_timeout = 1s; }};
    REQUIRE(trainer.cl().wait_for([](auto& xs) { return xs[0].failed_attempts >= 2; }, 30s));
    CHECK(trainer.cl().status()[0].connects == 0);
    auto f = trainer.cl().sample(numbered_prompt(1));
    auto r = get(f);
    REQUIRE(!r);
    CHECK(code_of(r.error()) == errc::node_down);
    trainer.stop();
  }
  old_node.stop();
}

// -- mutual TLS -----------------------------------------------------------------------

TEST_CASE("cluster: mutual TLS with a cluster CA", "[cluster][tls]") {
  auto certs = make_cluster_certs(3);
  struct cleanup {
    cluster_certs& c;
    ~cleanup() { remove_cluster_certs(c); }
  } cleanup_certs{certs};
  auto peer = [&](size_t i) { return tls_files{certs.peers[i].cert, certs.peers[i].key, certs.ca}; };
  emulator::server emu{test_emulator_options()};
  test_node::settings tls_node;
  tls_node.tls = peer(0);
  test_node node{emu, tls_node};
  REQUIRE(node.service().tls());
  auto refused = [](test_trainer& t) {
    return t.cl().wait_for([](auto& xs) { return xs[0].failed_attempts >= 2; }, 60s)
           && t.cl().status()[0].connects == 0;
  };
  SECTION("a trainer with a certificate of the cluster CA connects") {
    test_trainer trainer{{local(node.port())}, toy_config(), {}, peer(1)};
    REQUIRE(trainer.cl().wait_ready(1, 30s));
    auto rs = run_samples(trainer.cl(), 5);
    require_all_ok(rs);
    check_results_match_model(emu, rs);
    trainer.stop();
  }
  SECTION("a trainer without a certificate cannot connect") {
    test_trainer trainer{{local(node.port())},
                         toy_config(),
                         [](cluster_options& o) { o.security = transport_security::tls; }};
    CHECK(refused(trainer));
    trainer.stop();
  }
  SECTION("a trainer speaking plain BASP cannot connect") {
    test_trainer trainer{{local(node.port())}, toy_config()};
    CHECK(refused(trainer));
    trainer.stop();
  }
  SECTION("a trainer with a certificate of another CA cannot connect") {
    tls_files rogue{certs.rogue.cert, certs.rogue.key, certs.rogue_ca};
    test_trainer trainer{{local(node.port())}, toy_config(), {}, rogue};
    CHECK(refused(trainer));
    trainer.stop();
  }
  SECTION("a node with a certificate of another CA is refused by the trainer") {
    test_node::settings rogue_node;
    rogue_node.tls = tls_files{certs.rogue.cert, certs.rogue.key, certs.ca};
    test_node rogue{emu, rogue_node};
    test_trainer trainer{{local(rogue.port())}, toy_config(), {}, peer(2)};
    CHECK(refused(trainer));
    trainer.stop();
    rogue.stop();
  }
  node.stop();
}

TEST_CASE("service: a node whose worker pool ended answers its counters with node_down",
          "[cluster][service][supervision]") {
  // Nothing restarts a node's pool (docs/architecture.md, "Supervision"):
  // the node's counters -- what /metrics serves -- name that, instead of
  // CAF's "request receiver down", so the failed scrape says why.
  emulator::server emu{test_emulator_options()};
  test_node node{emu};
  REQUIRE(node.service().stats());
  {
    caf::scoped_actor self{node.system()};
    self->monitor(node.rt().pool());
    self->send_exit(node.rt().pool(), caf::exit_reason::kill);
    self->receive([](caf::down_msg&) {});
  }
  auto s = node.service().stats();
  REQUIRE_FALSE(s);
  CHECK(s.error() == errc::node_down);
  CHECK_THAT(render(s.error()), Catch::Contains("worker pool of this node ended"));
  // The node still stops (its runtime's shutdown skips the dead pool).
  node.stop();
}

TEST_CASE("cluster: a node whose worker pool ended is skipped by the samples it refused",
          "[cluster][supervision]") {
  // Its completers answer node_down at once, so by load alone it always looks
  // the least busy; a sample it refused goes to another node (same key), and
  // bounces off it at most once.
  emulator::server emu{emulator_with_queue(20ms)};
  test_node broken{emu};
  test_node healthy{emu};
  test_trainer trainer{{local(broken.port()), local(healthy.port())}, toy_config()};
  REQUIRE(trainer.cl().wait_ready(2, 30s));
  {
    caf::scoped_actor self{broken.system()};
    self->monitor(broken.rt().pool());
    self->send_exit(broken.rt().pool(), caf::exit_reason::kill);
    self->receive([](caf::down_msg&) {});
  }
  constexpr int n = 40;
  auto rs = run_samples(trainer.cl(), n);
  require_all_ok(rs);
  check_results_match_model(emu, rs);
  auto status = trainer.cl().status();
  CHECK(status[0].completed == 0);
  CHECK(status[0].rerouted <= static_cast<uint64_t>(n));
  CHECK(status[1].completed == static_cast<uint64_t>(n));
  auto st = emu.snapshot();
  CHECK(st.inference_runs.size() == n);
  CHECK(st.max_runs_per_key == 1);
  trainer.stop();
  healthy.stop();
  broken.stop();
}
