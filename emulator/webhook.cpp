// Completion webhooks: the emulator's own minimal Beast client (plain http
// only), retried up to options::webhook_retries times, best effort.
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>

#include "sail_tinker/emulator/emulator_impl.hpp"

namespace sail::emulator {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

class webhook_call : public std::enable_shared_from_this<webhook_call> {
public:
  webhook_call(asio::io_context& ioc, std::chrono::milliseconds timeout,
               std::function<void(bool)> done)
    : resolver_(asio::make_strand(ioc)),
      stream_(resolver_.get_executor()),
      timeout_(timeout),
      done_(std::move(done)) {
    // nop
  }

  void start(const std::string& url, const std::string& token,
             std::string body) {
    auto parsed = boost::urls::parse_uri(url);
    if (!parsed || parsed->scheme() != "http")
      return finish(false);
    host_ = std::string{parsed->encoded_host()};
    if (host_.size() > 2 && host_.front() == '[')
      host_ = host_.substr(1, host_.size() - 2);
    port_ = parsed->has_port() ? std::string{parsed->port()} : "80";
    std::string target{parsed->encoded_path()};
    if (target.empty())
      target = "/";
    if (parsed->has_query())
      target += "?" + std::string{parsed->encoded_query()};
    req_ = {http::verb::post, target, 11};
    req_.set(http::field::host, std::string{parsed->encoded_authority()});
    req_.set(http::field::content_type, "application/json");
    req_.set(http::field::user_agent, "sail-tinker-emulator-webhook");
    if (!token.empty())
      req_.set(http::field::authorization, "Bearer " + token);
    req_.keep_alive(false);
    req_.body() = std::move(body);
    req_.prepare_payload();
    resolver_.async_resolve(
      host_, port_,
      [self = shared_from_this()](beast::error_code ec,
                                  tcp::resolver::results_type results) {
        if (ec)
          return self->finish(false);
        self->stream_.expires_after(self->timeout_);
        self->stream_.async_connect(
          results, [self](beast::error_code ec, const tcp::endpoint&) {
            if (ec)
              return self->finish(false);
            self->stream_.expires_after(self->timeout_);
            http::async_write(self->stream_, self->req_,
                              [self](beast::error_code ec, size_t) {
                                if (ec)
                                  return self->finish(false);
                                self->read();
                              });
          });
      });
  }

private:
  void read() {
    http::async_read(stream_, buffer_, res_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->finish(!ec && self->res_.result_int() >= 200
                                    && self->res_.result_int() < 300);
                     });
  }

  void finish(bool ok) {
    beast::error_code ignored;
    stream_.socket().close(ignored);
    if (done_) {
      auto f = std::move(done_);
      done_ = nullptr;
      f(ok);
    }
  }

  tcp::resolver resolver_;
  beast::tcp_stream stream_;
  std::chrono::milliseconds timeout_;
  std::function<void(bool)> done_;
  std::string host_;
  std::string port_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
  beast::flat_buffer buffer_;
};

} // namespace

void server::impl::schedule_webhook(record_ptr rec) {
  auto timer = std::make_shared<asio::steady_timer>(ioc, rec->done);
  timer->async_wait([this, timer, rec](boost::system::error_code ec) {
    if (!ec)
      send_webhook(rec, 0);
  });
}

void server::impl::send_webhook(record_ptr rec, int attempt) {
  {
    std::lock_guard guard{mtx};
    ++st.webhooks.attempts;
    st_changed.notify_all();
  }
  auto body = boost::json::serialize(render(*rec, steady::now(), false));
  auto call = std::make_shared<webhook_call>(
    ioc, opts.webhook_timeout, [this, rec, attempt](bool ok) {
      if (ok) {
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
      auto timer = std::make_shared<asio::steady_timer>(
        ioc, opts.webhook_retry_delay);
      timer->async_wait([this, timer, rec,
                         attempt](boost::system::error_code ec) {
        if (!ec)
          send_webhook(rec, attempt + 1);
      });
    });
  call->start(rec->webhook_url, rec->webhook_token, std::move(body));
}

} // namespace sail::emulator
