#include "sail_tinker/net/http_server.hpp"

#include <condition_variable>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "sail_tinker/messages/error.hpp"

namespace sail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

namespace detail {

// State shared by the server object, its acceptor loop and its sessions; it
// outlives the server object while handlers still reference it.
struct http_server_shared : std::enable_shared_from_this<http_server_shared> {
  http_server_shared(asio::io_context& io, http_server_options o,
                     http_server_handler h)
    : ioc(io),
      opts(std::move(o)),
      handler(std::move(h)),
      acceptor(asio::make_strand(io)),
      backoff(acceptor.get_executor()) {
    // nop
  }

  asio::io_context& ioc;
  http_server_options opts;
  http_server_handler handler;
  /// Set by start() when the options name a certificate and key.
  std::unique_ptr<ssl::context> tls;
  tcp::acceptor acceptor;
  asio::steady_timer backoff;
  uint16_t port = 0;
  std::atomic<uint64_t> accepted{0};
  std::atomic<bool> stopping{false};
  // Set before the io_context stops: nothing may be posted any more.
  std::atomic<bool> halted{false};

  std::mutex mtx;
  std::condition_variable cv;
  std::unordered_map<uint64_t, std::weak_ptr<http_session>> sessions;
  uint64_t next_id = 0;

  void unregister(uint64_t id) {
    std::lock_guard guard{mtx};
    sessions.erase(id);
    cv.notify_all();
  }

  void do_accept();
};

// What contexts and the server see of a connection, plain or TLS.
class http_session : public std::enable_shared_from_this<http_session> {
public:
  http_session(std::shared_ptr<http_server_shared> sh, uint64_t id)
    : shared_(std::move(sh)), id_(id) {
    // nop
  }

  virtual ~http_session() = default;

  uint64_t id() const noexcept {
    return id_;
  }

  const tcp::endpoint& remote() const noexcept {
    return remote_;
  }

  const std::shared_ptr<http_server_shared>& shared() const noexcept {
    return shared_;
  }

  virtual void start() = 0;
  virtual asio::any_io_executor executor() = 0;

  // -- called on the strand -----------------------------------------------------

  /// `raw` empty: write reply.response; else see http_raw_answer.
  virtual void deliver(http_server_reply reply, http_raw_answer raw) = 0;
  virtual void on_stop() = 0;
  virtual void force_close() = 0;

protected:
  std::shared_ptr<http_server_shared> shared_;
  uint64_t id_;
  tcp::endpoint remote_;
};

// One connection: [TLS handshake ->] read header -> (100-continue) -> read
// body -> handler -> write -> read the next request, or close. Stream is
// beast::tcp_stream or beast::ssl_stream<beast::tcp_stream>.
template <class Stream>
class basic_http_session final : public http_session {
public:
  static constexpr bool is_tls = !std::is_same_v<Stream, beast::tcp_stream>;

  template <class... Args>
  basic_http_session(tcp::socket socket, std::shared_ptr<http_server_shared> sh,
                     uint64_t id, Args&... args)
    : http_session(std::move(sh), id),
      stream_(std::move(socket), args...),
      timer_(lowest().get_executor()) {
    beast::error_code ec;
    remote_ = lowest().socket().remote_endpoint(ec);
  }

  ~basic_http_session() override {
    // Normally unregistered by close(); this covers an unexpected path.
    if (!closed_)
      shared_->unregister(id_);
  }

  void start() override {
    asio::dispatch(lowest().get_executor(), [self = shared_self()] {
      if constexpr (is_tls)
        self->do_handshake();
      else
        self->do_read();
    });
  }

  asio::any_io_executor executor() override {
    return lowest().get_executor();
  }

  // -- called on the strand -----------------------------------------------------

  void deliver(http_server_reply reply, http_raw_answer raw) override {
    if (closed_ || !busy_)
      return;
    if (reply.delay.count() > 0) {
      auto delay = reply.delay;
      reply.delay = std::chrono::milliseconds{0};
      auto held = std::make_shared<std::pair<http_server_reply, http_raw_answer>>(
        std::move(reply), std::move(raw));
      timer_.expires_after(delay);
      timer_.async_wait(asio::bind_executor(
        lowest().get_executor(),
        [self = shared_self(), held](beast::error_code ec) {
          if (ec || self->closed_)
            return;
          self->send(std::move(held->first), std::move(held->second));
        }));
      return;
    }
    send(std::move(reply), std::move(raw));
  }

  void on_stop() override {
    if (closed_)
      return;
    // An idle connection (waiting for the next request) closes now; a busy
    // one closes after its answer has been written.
    if (!busy_)
      close();
  }

  void force_close() override {
    close();
  }

private:
  std::shared_ptr<basic_http_session> shared_self() {
    return std::static_pointer_cast<basic_http_session>(shared_from_this());
  }

  beast::tcp_stream& lowest() {
    return beast::get_lowest_layer(stream_);
  }

  void do_handshake() {
    if constexpr (is_tls) {
      lowest().expires_after(shared_->opts.handshake_timeout);
      stream_.async_handshake(ssl::stream_base::server,
                              [self = shared_self()](beast::error_code ec) {
                                if (ec)
                                  return self->close();
                                self->do_read();
                              });
    }
  }

  void do_read() {
    if (closed_)
      return;
    if (shared_->stopping) {
      close();
      return;
    }
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(shared_->opts.header_limit));
    parser_->body_limit(shared_->opts.body_limit);
    lowest().expires_after(shared_->opts.read_timeout);
    http::async_read_header(
      stream_, buffer_, *parser_,
      [self = shared_self()](beast::error_code ec, size_t) {
        self->on_header(ec);
      });
  }

  void on_header(beast::error_code ec) {
    if (ec)
      return on_read_error(ec);
    if (parser_->is_done())
      return on_request();
    auto& req = parser_->get();
    auto expect = req[http::field::expect];
    if (beast::iequals(expect, "100-continue")) {
      static constexpr std::string_view interim = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(stream_, asio::buffer(interim.data(), interim.size()),
                        [self = shared_self()](beast::error_code ec,
                                                    size_t) {
                          if (ec)
                            return self->close();
                          self->read_body();
                        });
      return;
    }
    read_body();
  }

  void read_body() {
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_self()](beast::error_code ec, size_t) {
                       if (ec)
                         return self->on_read_error(ec);
                       self->on_request();
                     });
  }

  void on_read_error(beast::error_code ec) {
    if (closed_)
      return;
    if (ec == http::error::body_limit) {
      return send_error_and_close(http::status::payload_too_large,
                                  "request body too large");
    }
    if (ec == http::error::header_limit) {
      return send_error_and_close(
        http::status::request_header_fields_too_large,
        "request header too large");
    }
    if (ec.category() == beast::error_code{http::error::end_of_stream}.category()
        && ec != http::error::end_of_stream && ec != http::error::partial_message
        && !shared_->stopping) {
      return send_error_and_close(http::status::bad_request,
                                  "malformed request");
    }
    // end of stream, timeout, reset, cancelled: just close.
    close();
  }

  void send_error_and_close(http::status status, std::string_view message) {
    busy_ = true;
    if (shared_->opts.on_refused)
      shared_->opts.on_refused(static_cast<unsigned>(status));
    http_server_reply reply;
    reply.response.result(status);
    reply.response.set(http::field::content_type, "application/json");
    reply.response.body() = std::string{R"({"error":{"message":")"}
                            + std::string{message}
                            + R"(","type":"invalid_request_error","param":null,"code":null}})";
    reply.close = true;
    req_version_ = 11;
    keep_alive_ = false;
    linger_on_close_ = true;
    send(std::move(reply), {});
  }

  void on_request() {
    busy_ = true;
    auto req = parser_->release();
    parser_.reset();
    req_version_ = req.version();
    keep_alive_ = req.keep_alive();
    http_server_context ctx{shared_from_this(), std::move(req)};
    try {
      shared_->handler(std::move(ctx));
    } catch (...) {
      if (ctx.pending()) {
        http_server_response res{http::status::internal_server_error, 11};
        res.set(http::field::content_type, "text/plain");
        res.body() = "handler failed";
        ctx.respond(std::move(res));
      }
    }
  }

  void send(http_server_reply reply, http_raw_answer raw) {
    if (closed_)
      return;
    auto& res = reply.response;
    res.version(req_version_ == 10 ? 10 : 11);
    if (!shared_->opts.server_name.empty()
        && res.find(http::field::server) == res.end())
      res.set(http::field::server, shared_->opts.server_name);
    bool close_after = reply.close || !keep_alive_ || shared_->stopping
                       || static_cast<bool>(raw);
    res.keep_alive(!close_after);
    res.prepare_payload();
    lowest().expires_after(shared_->opts.write_timeout);
    if (raw) {
      raw_ = raw(res, lowest().socket());
      if (raw_.empty())
        return close();
      asio::async_write(stream_, asio::buffer(raw_),
                        [self = shared_self()](beast::error_code, size_t) {
                          self->graceful_close();
                        });
      return;
    }
    out_ = std::make_shared<http_server_response>(std::move(res));
    http::async_write(stream_, *out_,
                      [self = shared_self(),
                       close_after](beast::error_code ec, size_t) {
                        self->out_.reset();
                        if (ec)
                          return self->close();
                        self->busy_ = false;
                        if (close_after)
                          return self->graceful_close();
                        self->do_read();
                      });
  }

  // Half-closes and, after an error answer, drains what the peer still sends
  // (bounded) so that it reads the answer instead of a reset.
  void graceful_close() {
    if (closed_)
      return;
    if constexpr (is_tls) {
      // close_notify, bounded; the peer has its answer either way.
      lowest().expires_after(std::chrono::seconds{1});
      stream_.async_shutdown([self = shared_self()](beast::error_code) { self->close(); });
      return;
    }
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec || !linger_on_close_)
      return close();
    drain_budget_ = 16 * 1024 * 1024;
    lowest().expires_after(std::chrono::seconds{1});
    drain();
  }

  void drain() {
    stream_.async_read_some(
      asio::buffer(scratch_, sizeof(scratch_)),
      [self = shared_self()](beast::error_code ec, size_t n) {
        if (ec || n >= self->drain_budget_)
          return self->close();
        self->drain_budget_ -= n;
        self->drain();
      });
  }

  void close() {
    if (closed_)
      return;
    closed_ = true;
    busy_ = false;
    timer_.cancel();
    beast::error_code ec;
    lowest().socket().close(ec);
    shared_->unregister(id_);
  }

  Stream stream_;
  asio::steady_timer timer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool busy_ = false;
  bool closed_ = false;
  bool keep_alive_ = true;
  bool linger_on_close_ = false;
  unsigned req_version_ = 11;
  std::shared_ptr<http_server_response> out_;
  std::string raw_;
  size_t drain_budget_ = 0;
  char scratch_[4096];
};

void http_server_shared::do_accept() {
  acceptor.async_accept(
    asio::make_strand(ioc),
    [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !self->acceptor.is_open())
        return;
      if (!ec) {
        std::shared_ptr<http_session> session;
        {
          std::lock_guard guard{self->mtx};
          if (!self->stopping) {
            auto id = ++self->next_id;
            beast::error_code ignored;
            socket.set_option(tcp::no_delay{true}, ignored);
            if (self->tls)
              session = std::make_shared<
                basic_http_session<beast::ssl_stream<beast::tcp_stream>>>(
                std::move(socket), self, id, *self->tls);
            else
              session = std::make_shared<basic_http_session<beast::tcp_stream>>(
                std::move(socket), self, id);
            self->sessions.emplace(id, session);
            self->accepted.fetch_add(1, std::memory_order_relaxed);
          }
        }
        if (session)
          session->start();
        else {
          beast::error_code ignored;
          socket.close(ignored);
        }
      }
      if (self->stopping)
        return;
      if (ec) {
        // Transient accept errors (EMFILE, ...) must not end the loop: retry
        // after a short pause instead of spinning.
        self->backoff.expires_after(std::chrono::milliseconds{10});
        self->backoff.async_wait([self](beast::error_code) {
          if (!self->stopping)
            self->do_accept();
        });
        return;
      }
      self->do_accept();
    });
}

} // namespace detail

// -- http_server_context ------------------------------------------------------------

http_server_context::http_server_context(
  std::shared_ptr<detail::http_session> session, http_server_request req)
  : session_(std::move(session)),
    req_(std::move(req)),
    received_at_(std::chrono::steady_clock::now()) {
  // nop
}

http_server_context::http_server_context(http_server_context&& other) noexcept
  : session_(std::move(other.session_)),
    req_(std::move(other.req_)),
    received_at_(other.received_at_) {
  other.session_.reset();
}

http_server_context&
http_server_context::operator=(http_server_context&& other) noexcept {
  if (this != &other) {
    if (session_) {
      // Answer the request this context held before being overwritten.
      http_server_response res{http::status::internal_server_error, 11};
      res.body() = "request dropped";
      respond(std::move(res));
    }
    session_ = std::move(other.session_);
    other.session_.reset();
    req_ = std::move(other.req_);
    received_at_ = other.received_at_;
  }
  return *this;
}

http_server_context::~http_server_context() {
  if (session_ && !session_->shared()->halted) {
    http_server_response res{http::status::internal_server_error, 11};
    res.set(http::field::content_type, "text/plain");
    res.body() = "request dropped by the handler";
    respond(std::move(res));
  }
}

asio::ip::tcp::endpoint http_server_context::remote_endpoint() const {
  return session_ ? session_->remote() : tcp::endpoint{};
}

uint64_t http_server_context::connection_id() const noexcept {
  return session_ ? session_->id() : 0;
}

asio::any_io_executor http_server_context::executor() const {
  return session_ ? session_->executor() : asio::any_io_executor{};
}

void http_server_context::respond(http_server_response res) {
  http_server_reply reply;
  reply.response = std::move(res);
  respond(std::move(reply));
}

void http_server_context::respond(http_server_reply reply) {
  deliver(std::move(reply), {});
}

void http_server_context::respond_raw(http_server_reply reply, http_raw_answer raw) {
  deliver(std::move(reply), std::move(raw));
}

void http_server_context::deliver(http_server_reply reply, http_raw_answer raw) {
  auto session = std::move(session_);
  session_.reset();
  if (!session || session->shared()->halted)
    return;
  auto ex = session->executor();
  asio::dispatch(ex, [session = std::move(session), reply = std::move(reply),
                      raw = std::move(raw)]() mutable {
    session->deliver(std::move(reply), std::move(raw));
  });
}

// -- http_server --------------------------------------------------------------------

http_server::http_server(asio::io_context& ioc, http_server_options opts,
                         http_server_handler handler)
  : ioc_(&ioc),
    shared_(std::make_shared<detail::http_server_shared>(ioc, std::move(opts),
                                                         std::move(handler))) {
  // nop
}

http_server::http_server(http_server_options opts, http_server_handler handler)
  : own_ioc_(std::make_unique<asio::io_context>(
    static_cast<int>(std::max<size_t>(opts.threads, 1)))),
    ioc_(own_ioc_.get()),
    shared_(std::make_shared<detail::http_server_shared>(
      *own_ioc_, std::move(opts), std::move(handler))) {
  // nop
}

http_server::~http_server() {
  stop();
}

caf::error http_server::start() {
  if (started_)
    return make_error(errc::invalid_argument, "http_server already started");
  auto& opts = shared_->opts;
  auto where = opts.host + ":" + std::to_string(opts.port);
  if (opts.tls_certificate_file.empty() != opts.tls_key_file.empty())
    return invalid_argument(opts.tls_key_file.empty() ? "tls_key_file" : "tls_certificate_file",
                            "TLS needs both a certificate chain and a private key");
  if (!opts.tls_certificate_file.empty()) {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2
                     | ssl::context::no_sslv3 | ssl::context::no_tlsv1
                     | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
    beast::error_code ec;
    ctx->use_certificate_chain_file(opts.tls_certificate_file, ec);
    if (ec)
      return invalid_argument("tls_certificate_file",
                              "cannot load the TLS certificate chain: " + ec.message());
    ctx->use_private_key_file(opts.tls_key_file, ssl::context::pem, ec);
    if (ec)
      return invalid_argument("tls_key_file", "cannot load the TLS private key: " + ec.message());
    shared_->tls = std::move(ctx);
  }
  beast::error_code ec;
  tcp::endpoint endpoint;
  auto addr = asio::ip::make_address(opts.host, ec);
  if (!ec) {
    endpoint = tcp::endpoint{addr, opts.port};
  } else {
    tcp::resolver resolver{*ioc_};
    auto results = resolver.resolve(opts.host, std::to_string(opts.port), ec);
    if (ec || results.empty())
      return make_error(errc::transport_error,
                        "cannot resolve " + where + ": " + ec.message(),
                        "host");
    endpoint = results.begin()->endpoint();
  }
  auto& acc = shared_->acceptor;
  auto fail = [&](const char* what) {
    beast::error_code ignored;
    acc.close(ignored);
    return make_error(errc::transport_error,
                      std::string{what} + " " + where + ": " + ec.message(),
                      "port");
  };
  acc.open(endpoint.protocol(), ec);
  if (ec)
    return fail("cannot open");
  acc.set_option(asio::socket_base::reuse_address{true}, ec);
  acc.bind(endpoint, ec);
  if (ec)
    return fail("cannot bind");
  acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return fail("cannot listen on");
  shared_->port = acc.local_endpoint(ec).port();
  started_ = true;
  asio::dispatch(acc.get_executor(), [sh = shared_] { sh->do_accept(); });
  if (own_ioc_) {
    auto n = std::max<size_t>(opts.threads, 1);
    threads_.reserve(n);
    auto guard = std::make_shared<
      asio::executor_work_guard<asio::io_context::executor_type>>(
      own_ioc_->get_executor());
    for (size_t i = 0; i < n; ++i)
      threads_.emplace_back([ioc = own_ioc_.get(), guard] { ioc->run(); });
    // The threads keep the guard alive; stop() stops the io_context.
  }
  return {};
}

uint16_t http_server::port() const noexcept {
  return shared_->port;
}

uint64_t http_server::connections_accepted() const noexcept {
  return shared_->accepted.load(std::memory_order_relaxed);
}

uint64_t http_server::connections_open() const noexcept {
  std::lock_guard guard{shared_->mtx};
  return shared_->sessions.size();
}

void http_server::stop() {
  if (stopped_.exchange(true))
    return;
  auto& sh = *shared_;
  if (started_) {
    std::vector<std::shared_ptr<detail::http_session>> sessions;
    {
      std::lock_guard guard{sh.mtx};
      sh.stopping = true;
      for (auto& [id, weak] : sh.sessions)
        if (auto s = weak.lock())
          sessions.push_back(std::move(s));
    }
    asio::post(sh.acceptor.get_executor(), [s = shared_] {
      beast::error_code ignored;
      s->acceptor.close(ignored);
      s->backoff.cancel();
    });
    for (auto& s : sessions)
      asio::post(s->executor(), [s] { s->on_stop(); });
    sessions.clear();
    auto drained = [&] { return sh.sessions.empty(); };
    std::unique_lock lock{sh.mtx};
    if (!sh.cv.wait_for(lock, sh.opts.drain_timeout, drained)) {
      for (auto& [id, weak] : sh.sessions)
        if (auto s = weak.lock())
          sessions.push_back(std::move(s));
      lock.unlock();
      for (auto& s : sessions)
        asio::post(s->executor(), [s] { s->force_close(); });
      sessions.clear();
      lock.lock();
      sh.cv.wait_for(lock, std::chrono::seconds{1}, drained);
    }
  } else {
    std::lock_guard guard{sh.mtx};
    sh.stopping = true;
  }
  sh.halted = true;
  if (own_ioc_) {
    own_ioc_->stop();
    for (auto& t : threads_)
      if (t.joinable())
        t.join();
    threads_.clear();
  }
}

} // namespace sail
