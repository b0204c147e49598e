#include "support/sync_http.hpp"

#include <optional>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>

namespace sail::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

boost::json::value sync_result::json() const {
  boost::system::error_code ec;
  auto v = boost::json::parse(response.body(), ec);
  if (ec)
    return nullptr;
  return v;
}

std::string sync_result::header(std::string_view name) const {
  auto i = response.find(beast::string_view{name.data(), name.size()});
  if (i == response.end())
    return {};
  return std::string{i->value()};
}

struct sync_http::impl {
  std::string host;
  uint16_t port;
  std::chrono::milliseconds timeout;
  asio::io_context ioc;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;

  beast::error_code connect() {
    stream.emplace(ioc);
    buffer.clear();
    beast::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (ec)
      return ec;
    stream->expires_after(timeout);
    stream->async_connect(tcp::endpoint{addr, port},
                          [&](beast::error_code e) { ec = e; });
    ioc.restart();
    ioc.run();
    if (ec)
      stream.reset();
    return ec;
  }

  // Runs one exchange: writes `write` (a callable starting the async write),
  // then reads a response.
  template <class StartWrite>
  sync_result exchange(StartWrite start_write) {
    sync_result result;
    beast::error_code ec;
    stream->expires_after(timeout);
    start_write([&](beast::error_code e, size_t) {
      if (e) {
        ec = e;
        return;
      }
      auto parser = std::make_shared<http::response_parser<http::string_body>>();
      parser->body_limit(256 * 1024 * 1024);
      http::async_read(*stream, buffer, *parser,
                       [&, parser](beast::error_code e2, size_t) {
                         ec = e2;
                         if (!e2)
                           result.response = parser->release();
                       });
    });
    ioc.restart();
    ioc.run();
    result.ec = ec;
    if (ec || !result.response.keep_alive()) {
      beast::error_code ignored;
      stream->socket().close(ignored);
      stream.reset();
    }
    return result;
  }
};

sync_http::sync_http(std::string host, uint16_t port,
                     std::chrono::milliseconds timeout)
  : impl_(std::make_unique<impl>()) {
  impl_->host = std::move(host);
  impl_->port = port;
  impl_->timeout = timeout;
}

sync_http::~sync_http() {
  close();
}

bool sync_http::connected() const noexcept {
  return impl_->stream.has_value();
}

void sync_http::close() {
  if (impl_->stream) {
    beast::error_code ignored;
    impl_->stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
    impl_->stream->socket().close(ignored);
    impl_->stream.reset();
  }
}

sync_result sync_http::request(http::verb method, std::string target,
                               std::string body, const header_list& headers) {
  if (!impl_->stream) {
    if (auto ec = impl_->connect()) {
      sync_result r;
      r.ec = ec;
      return r;
    }
    ++connects_;
  }
  auto req = std::make_shared<http::request<http::string_body>>(
    method, target, 11);
  req->set(http::field::host, impl_->host + ":" + std::to_string(impl_->port));
  req->set(http::field::user_agent, "sail-tinker-test");
  for (auto& [k, v] : headers)
    req->set(k, v);
  if (!body.empty() && req->find(http::field::content_type) == req->end())
    req->set(http::field::content_type, "application/json");
  req->body() = std::move(body);
  req->prepare_payload();
  return impl_->exchange([&, req](auto on_written) {
    http::async_write(*impl_->stream, *req,
                      [req, on_written](beast::error_code ec, size_t n) {
                        on_written(ec, n);
                      });
  });
}

sync_result sync_http::raw(const std::string& bytes) {
  if (!impl_->stream) {
    if (auto ec = impl_->connect()) {
      sync_result r;
      r.ec = ec;
      return r;
    }
    ++connects_;
  }
  return impl_->exchange([&](auto on_written) {
    asio::async_write(*impl_->stream, asio::buffer(bytes), on_written);
  });
}

sync_result http_call(uint16_t port, http::verb method, std::string target,
                      std::string body, const header_list& headers) {
  sync_http client{"127.0.0.1", port};
  return client.request(method, std::move(target), std::move(body), headers);
}

} // namespace sail::test
