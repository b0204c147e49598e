// Completion webhooks: the emulator's own minimal Beast client (http, and
// https verified against options::webhook_ca_file or the system's CAs),
// retried up to options::webhook_retries times, best effort; the webhook
// faults of fault_settings (drop, duplicate, delay).
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>
#include <openssl/ssl.h>

#include "sail_tinker/emulator/emulator_impl.hpp"

namespace sail::emulator {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

namespace {

/// Where one delivery goes.
struct webhook_target {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target;
  std::string authority;
};

std::optional<webhook_target> parse_target(const std::string& url) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed || (parsed->scheme() != "http" && parsed->scheme() != "https"))
    return std::nullopt;
  webhook_target t;
  t.tls = parsed->scheme() == "https";
  t.host = std::string{parsed->encoded_host()};
  if (t.host.size() > 2 && t.host.front() == '[')
    t.host = t.host.substr(1, t.host.size() - 2);
  t.port = parsed->has_port() ? std::string{parsed->port()} : (t.tls ? "443" : "80");
  t.target = std::string{parsed->encoded_path()};
  if (t.target.empty())
    t.target = "/";
  if (parsed->has_query())
    t.target += "?" + std::string{parsed->encoded_query()};
  t.authority = std::string{parsed->encoded_authority()};
  return t;
}

/// One delivery attempt, in the shape of Beast's http_client_async example:
/// resolve -> connect -> (handshake) -> write -> read, one finish().
/// `done` receives the answer's status, 0 when there was none.
template <class Stream>
class webhook_call : public std::enable_shared_from_this<webhook_call<Stream>> {
public:
  template <class... Args>
  webhook_call(asio::io_context& ioc, std::chrono::milliseconds timeout,
               std::function<void(int)> done, Args&&... stream_args)
    : resolver_(asio::make_strand(ioc)),
      stream_(resolver_.get_executor(), std::forward<Args>(stream_args)...),
      timeout_(timeout),
      done_(std::move(done)) {
    // nop
  }

  void start(const webhook_target& t, const std::string& token, std::string body) {
    target_ = t;
    req_ = {http::verb::post, t.target, 11};
    req_.set(http::field::host, t.authority);
    req_.set(http::field::content_type, "application/json");
    req_.set(http::field::user_agent, "sail-tinker-emulator-webhook");
    if (!token.empty())
      req_.set(http::field::authorization, "Bearer " + token);
    req_.keep_alive(false);
    req_.body() = std::move(body);
    req_.prepare_payload();
    if constexpr (is_tls) {
      if (!SSL_set_tlsext_host_name(stream_.native_handle(), t.host.c_str()))
        return finish(0);
      stream_.set_verify_callback(ssl::host_name_verification(t.host));
    }
    resolver_.async_resolve(t.host, t.port,
                            [self = this->shared_from_this()](
                              beast::error_code ec, tcp::resolver::results_type rs) {
                              self->on_resolve(ec, std::move(rs));
                            });
  }

private:
  static constexpr bool is_tls = !std::is_same_v<Stream, beast::tcp_stream>;

  beast::tcp_stream& lowest() {
    return beast::get_lowest_layer(stream_);
  }

  void on_resolve(beast::error_code ec, tcp::resolver::results_type results) {
    if (ec)
      return finish(0);
    lowest().expires_after(timeout_);
    lowest().async_connect(results, [self = this->shared_from_this()](
                                      beast::error_code ec, const tcp::endpoint&) {
      self->on_connect(ec);
    });
  }

  void on_connect(beast::error_code ec) {
    if (ec)
      return finish(0);
    if constexpr (is_tls) {
      lowest().expires_after(timeout_);
      stream_.async_handshake(ssl::stream_base::client,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (ec)
                                  return self->finish(0);
                                self->write();
                              });
    } else {
      write();
    }
  }

  void write() {
    lowest().expires_after(timeout_);
    http::async_write(stream_, req_,
                      [self = this->shared_from_this()](beast::error_code ec, size_t) {
                        if (ec)
                          return self->finish(0);
                        self->read();
                      });
  }

  void read() {
    http::async_read(stream_, buffer_, res_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
                       self->finish(ec ? 0 : static_cast<int>(self->res_.result_int()));
                     });
  }

  void finish(int status) {
    beast::error_code ignored;
    lowest().socket().close(ignored);
    if (done_) {
      auto f = std::move(done_);
      done_ = nullptr;
      f(status);
    }
  }

  tcp::resolver resolver_;
  Stream stream_;
  std::chrono::milliseconds timeout_;
  std::function<void(int)> done_;
  webhook_target target_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
  beast::flat_buffer buffer_;
};

} // namespace

void server::impl::schedule_webhook(record_ptr rec) {
  if (rec->webhook_dropped) {
    std::lock_guard guard{mtx};
    ++st.webhooks.dropped;
    st_changed.notify_all();
    return;
  }
  auto deliveries = rec->webhook_twice ? 2 : 1;
  if (rec->webhook_twice) {
    std::lock_guard guard{mtx};
    ++st.webhooks.duplicated;
    st_changed.notify_all();
  }
  for (int i = 0; i < deliveries; ++i) {
    auto timer = std::make_shared<asio::steady_timer>(ioc, rec->done + rec->webhook_delay);
    timer->async_wait([this, timer, rec](boost::system::error_code ec) {
      if (!ec)
        send_webhook(rec, 0);
    });
  }
}

void server::impl::count_webhook_answer(const response_record& rec, int status) {
  std::lock_guard guard{mtx};
  ++st.webhooks.answers[status];
  if (status >= 200 && status < 300 && !rec.idempotency_key.empty()) {
    auto i = st.timings.find(rec.idempotency_key);
    if (i != st.timings.end() && i->second.webhook_ms < 0)
      i->second.webhook_ms = ms_since_start(steady::now());
  }
  st_changed.notify_all();
}

void server::impl::send_webhook(record_ptr rec, int attempt) {
  {
    std::lock_guard guard{mtx};
    ++st.webhooks.attempts;
    st_changed.notify_all();
  }
  auto target = parse_target(rec->webhook_url);
  auto done = [this, rec, attempt](int status) {
    count_webhook_answer(*rec, status);
    if (status >= 200 && status < 300) {
      std::lock_guard guard{mtx};
      ++st.webhooks.delivered;
      st_changed.notify_all();
      return;
    }
    if (attempt >= opts.webhook_retries) {
      std::lock_guard guard{mtx};
      ++st.webhooks.failed;
      st_changed.notify_all();
      return;
    }
    auto timer = std::make_shared<asio::steady_timer>(ioc, opts.webhook_retry_delay);
    timer->async_wait([this, timer, rec, attempt](boost::system::error_code ec) {
      if (!ec)
        send_webhook(rec, attempt + 1);
    });
  };
  if (!target)
    return done(0);
  auto body = boost::json::serialize(render(*rec, steady::now(), false));
  if (target->tls) {
    auto* ctx = webhook_tls_context();
    if (ctx == nullptr)
      return done(0);
    using stream_type = beast::ssl_stream<beast::tcp_stream>;
    auto call = std::make_shared<webhook_call<stream_type>>(ioc, opts.webhook_timeout,
                                                            std::move(done), *ctx);
    call->start(*target, rec->webhook_token, std::move(body));
    return;
  }
  auto call = std::make_shared<webhook_call<beast::tcp_stream>>(ioc, opts.webhook_timeout,
                                                                std::move(done));
  call->start(*target, rec->webhook_token, std::move(body));
}

ssl::context* server::impl::webhook_tls_context() {
  std::lock_guard guard{mtx};
  if (!webhook_tls) {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
    beast::error_code ec;
    if (opts.webhook_ca_file.empty())
      ctx->set_default_verify_paths(ec);
    else
      ctx->load_verify_file(opts.webhook_ca_file, ec);
    if (ec)
      return nullptr;
    ctx->set_verify_mode(ssl::verify_peer);
    webhook_tls = std::move(ctx);
  }
  return webhook_tls.get();
}

} // namespace sail::emulator
