#include "support/cluster_fixture.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <caf/scoped_actor.hpp>

#include "sail_tinker/messages/error.hpp"
#include "support/stack_fixture.hpp"

namespace sail::test {

void configure_test_node(node_config& cfg, const tls_files& tls,
                         std::optional<std::string> app_id) {
  cfg.set("middleman.heartbeat-interval", caf::timespan{std::chrono::milliseconds(200)});
  cfg.set("middleman.connection-timeout", caf::timespan{std::chrono::seconds(1)});
  if (app_id)
    cfg.set("middleman.app-identifiers", std::vector<std::string>{*app_id});
  // CAF's OpenSSL module reads the config members; tls_configured() reads both.
  if (!tls.cert.empty()) {
    cfg.openssl_certificate = tls.cert;
    cfg.set("openssl.certificate", tls.cert);
  }
  if (!tls.key.empty()) {
    cfg.openssl_key = tls.key;
    cfg.set("openssl.key", tls.key);
  }
  if (!tls.cafile.empty()) {
    cfg.openssl_cafile = tls.cafile;
    cfg.set("openssl.cafile", tls.cafile);
  }
}

// -- test_node ------------------------------------------------------------------

test_node::test_node(emulator::server& emu, settings s) {
  configure_test_node(cfg_, s.tls, s.app_id);
  sys_ = std::make_unique<caf::actor_system>(cfg_);
  auto opts = test_runtime_options(emu);
  opts.pool.workers = s.workers;
  if (s.tweak)
    s.tweak(opts);
  auto started = runtime::start(*sys_, std::move(opts));
  if (!started)
    throw std::runtime_error("runtime did not start: " + render(started.error()));
  rt_ = std::move(*started);
  service_options so;
  so.host = "127.0.0.1";
  so.port = 0;
  so.security = s.security;
  auto svc = service_node::start(*rt_, so);
  if (!svc) {
    rt_->shutdown();
    throw std::runtime_error("service did not start: " + render(svc.error()));
  }
  svc_ = std::move(*svc);
}

test_node::~test_node() {
  stop();
}

uint16_t test_node::port() const {
  return svc_ ? svc_->port() : 0;
}

completer_stats test_node::stats() {
  auto s = svc_->stats();
  if (!s)
    throw std::runtime_error("node stats: " + render(s.error()));
  return *s;
}

void test_node::stop() {
  if (svc_)
    svc_->shutdown();
  if (rt_)
    rt_->shutdown();
  svc_.reset();
  rt_.reset();
  sys_.reset();
}

// -- test_trainer ---------------------------------------------------------------

completer_config toy_config(int64_t max_tokens) {
  return stack_fixture::config(max_tokens);
}

sample_request numbered_prompt(int64_t i) {
  sample_request req;
  req.prompt.tokens = {i % 50 + 1, (i * 7) % 50 + 1, 3};
  return req;
}

emulator::options emulator_with_queue(std::chrono::milliseconds queued) {
  auto opts = test_emulator_options();
  opts.threads = 2;
  opts.latency.priority.queued = queued;
  return opts;
}

size_t post_arrivals(const emulator::stats& st) {
  size_t n = 0;
  for (auto& [key, xs] : st.arrivals)
    n += xs.size();
  return n;
}

bool wait_for_post_arrivals(const emulator::server& emu, size_t n) {
  return emu.wait_until([n](const emulator::stats& st) { return post_arrivals(st) >= n; },
                        std::chrono::seconds(60));
}

cluster_options test_cluster_options(std::vector<node_address> nodes, completer_config cfg) {
  cluster_options opts;
  opts.nodes = std::move(nodes);
  opts.config = std::move(cfg);
  opts.connect_timeout = std::chrono::seconds(2);
  opts.obtain_timeout = std::chrono::seconds(5);
  opts.retry_min = std::chrono::milliseconds(50);
  opts.retry_max = std::chrono::milliseconds(500);
  opts.request_timeout = std::chrono::seconds(120);
  opts.queue_timeout = std::chrono::seconds(60);
  opts.seed = 5;
  return opts;
}

test_trainer::test_trainer(std::vector<node_address> nodes, completer_config cfg,
                           const std::function<void(cluster_options&)>& tweak,
                           const tls_files& tls, std::optional<std::string> app_id) {
  configure_test_node(cfg_, tls, std::move(app_id));
  sys_ = std::make_unique<caf::actor_system>(cfg_);
  auto opts = test_cluster_options(std::move(nodes), std::move(cfg));
  if (tweak)
    tweak(opts);
  auto c = cluster::start(*sys_, std::move(opts));
  if (!c)
    throw std::runtime_error("cluster did not start: " + render(c.error()));
  cl_ = std::move(*c);
}

test_trainer::~test_trainer() {
  stop();
}

void test_trainer::stop() {
  if (cl_)
    cl_->shutdown();
  cl_.reset();
  sys_.reset();
}

// -- tcp_relay ---------------------------------------------------------------------

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

struct session : std::enable_shared_from_this<session> {
  session(asio::io_context& io, tcp::socket client, std::atomic<bool>& frozen)
    : down(io), up(std::move(client)), frozen(frozen) {
  }

  tcp::socket down;  // to the target
  tcp::socket up;    // the accepted client
  std::atomic<bool>& frozen;
  std::array<char, 16384> buf_up{};
  std::array<char, 16384> buf_down{};

  void start(uint16_t target) {
    auto self = shared_from_this();
    down.async_connect(tcp::endpoint{asio::ip::make_address("127.0.0.1"), target},
                       [self](boost::system::error_code ec) {
                         if (ec)
                           return self->close(false);
                         self->pump(self->up, self->down, self->buf_up);
                         self->pump(self->down, self->up, self->buf_down);
                       });
  }

  void pump(tcp::socket& from, tcp::socket& to, std::array<char, 16384>& buf) {
    auto self = shared_from_this();
    from.async_read_some(asio::buffer(buf), [self, &from, &to, &buf](
                                              boost::system::error_code ec, size_t n) {
      if (ec)
        return self->close(false);
      if (self->frozen)
        return; // stop reading: the bytes stay where they are
      asio::async_write(to, asio::buffer(buf.data(), n),
                        [self, &from, &to, &buf](boost::system::error_code ec2, size_t) {
                          if (ec2)
                            return self->close(false);
                          if (!self->frozen)
                            self->pump(from, to, buf);
                        });
    });
  }

  void close(bool reset) {
    boost::system::error_code ignored;
    for (auto* s : {&up, &down}) {
      if (!s->is_open())
        continue;
      if (reset)
        s->set_option(asio::socket_base::linger(true, 0), ignored);
      s->close(ignored);
    }
  }
};

} // namespace

struct tcp_relay::impl {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  tcp::acceptor acceptor{io};
  uint16_t target = 0;
  uint16_t port = 0;
  std::atomic<bool> frozen{false};
  std::vector<std::weak_ptr<session>> sessions;
  std::thread thread;

  void accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec)
        return;
      if (frozen) {
        // A stopped process: the kernel accepted, nobody answers.
        auto parked = std::make_shared<session>(io, std::move(s), frozen);
        sessions.push_back(parked);
        parked_.push_back(parked);
      } else {
        auto ss = std::make_shared<session>(io, std::move(s), frozen);
        sessions.push_back(ss);
        ss->start(target);
      }
      accept();
    });
  }

  void close_all(bool reset) {
    boost::system::error_code ignored;
    acceptor.close(ignored);
    for (auto& w : sessions)
      if (auto s = w.lock())
        s->close(reset);
    parked_.clear();
  }

  /// Sessions accepted while frozen (kept open, never served).
  std::vector<std::shared_ptr<session>> parked_;
  /// Frozen sessions are kept alive here (their reads no longer hold them).
  std::vector<std::shared_ptr<session>> held_;

  template <class F>
  void run_sync(F f) {
    std::promise<void> done;
    asio::post(io, [&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }
};

tcp_relay::tcp_relay(uint16_t target) : impl_(std::make_shared<impl>()) {
  impl_->target = target;
  tcp::endpoint ep{asio::ip::make_address("127.0.0.1"), 0};
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen();
  impl_->port = impl_->acceptor.local_endpoint().port();
  impl_->accept();
  impl_->thread = std::thread([p = impl_.get()] { p->io.run(); });
}

tcp_relay::~tcp_relay() {
  impl_->run_sync([p = impl_.get()] {
    p->close_all(false);
    p->held_.clear();
  });
  impl_->guard.reset();
  impl_->io.stop();
  impl_->thread.join();
}

uint16_t tcp_relay::port() const {
  return impl_->port;
}

void tcp_relay::cut() {
  impl_->run_sync([p = impl_.get()] { p->close_all(true); });
}

void tcp_relay::freeze() {
  impl_->run_sync([p = impl_.get()] {
    p->frozen = true;
    for (auto& w : p->sessions)
      if (auto s = w.lock())
        p->held_.push_back(s);
  });
}

} // namespace sail::test
