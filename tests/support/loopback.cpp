#include "support/loopback.hpp"

#include <cctype>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace sail::test {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

loopback_server::loopback_server(handler h)
  : acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}), handler_(std::move(h)) {
  port_ = acceptor_.local_endpoint().port();
  asio::co_spawn(
    io_,
    [this]() -> asio::awaitable<void> {
      for (;;) {
        boost::system::error_code ec;
        auto sock = co_await acceptor_.async_accept(
          asio::redirect_error(asio::use_awaitable, ec));
        if (ec)
          co_return;
        auto index = accepted_.fetch_add(1);
        asio::co_spawn(io_, handler_(std::move(sock), index), asio::detached);
      }
    },
    asio::detached);
  thread_ = std::thread{[this] { io_.run(); }};
}

loopback_server::~loopback_server() {
  io_.stop();
  if (thread_.joinable())
    thread_.join();
}

std::string loopback_server::base_url() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}

namespace {

size_t content_length(const std::string& head) {
  std::string lower;
  for (char c : head)
    lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto pos = lower.find("\r\ncontent-length:");
  if (pos == std::string::npos)
    return 0;
  return static_cast<size_t>(std::stoul(lower.substr(pos + 17)));
}

} // namespace

asio::awaitable<bool> read_http_request(tcp::socket& sock, std::string& buf,
                                        std::string* method, std::string* target,
                                        std::string* head_out) {
  char chunk[4096];
  boost::system::error_code ec;
  size_t end = 0;
  while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
    auto n = co_await sock.async_read_some(asio::buffer(chunk),
                                           asio::redirect_error(asio::use_awaitable,
                                                                ec));
    if (ec)
      co_return false;
    buf.append(chunk, n);
  }
  auto head = buf.substr(0, end + 4);
  auto len = content_length(head);
  while (buf.size() < end + 4 + len) {
    auto n = co_await sock.async_read_some(asio::buffer(chunk),
                                           asio::redirect_error(asio::use_awaitable,
                                                                ec));
    if (ec)
      co_return false;
    buf.append(chunk, n);
  }
  buf.erase(0, end + 4 + len);
  auto sp1 = head.find(' ');
  auto sp2 = head.find(' ', sp1 + 1);
  if (method != nullptr)
    *method = head.substr(0, sp1);
  if (target != nullptr)
    *target = head.substr(sp1 + 1, sp2 - sp1 - 1);
  if (head_out != nullptr)
    *head_out = head;
  co_return true;
}

asio::awaitable<bool> write_all(tcp::socket& sock, std::string text) {
  boost::system::error_code ec;
  co_await asio::async_write(sock, asio::buffer(text),
                             asio::redirect_error(asio::use_awaitable, ec));
  co_return !ec;
}

asio::awaitable<void> drain(tcp::socket& sock) {
  char chunk[4096];
  boost::system::error_code ec;
  for (;;) {
    co_await sock.async_read_some(asio::buffer(chunk),
                                  asio::redirect_error(asio::use_awaitable, ec));
    if (ec)
      co_return;
  }
}

std::string http_reply(unsigned status, const std::string& body,
                       const std::string& extra_headers) {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: "
         + std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" + body;
}

} // namespace sail::test
