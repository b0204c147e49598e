// A scripted TCP server on 127.0.0.1 for client tests: every accepted
// connection runs a user coroutine on the server's own io_context thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace sail::test {

class loopback_server {
public:
  /// Handler of one connection; `index` counts accepted connections from 0.
  using handler = std::function<boost::asio::awaitable<void>(
    boost::asio::ip::tcp::socket sock, size_t index)>;

  explicit loopback_server(handler h);

  loopback_server(const loopback_server&) = delete;
  loopback_server& operator=(const loopback_server&) = delete;

  /// Stops the io_context, joins its thread; pending handlers are destroyed.
  ~loopback_server();

  uint16_t port() const noexcept {
    return port_;
  }

  /// "http://127.0.0.1:<port>"
  std::string base_url() const;

  size_t accepted() const noexcept {
    return accepted_.load();
  }

  boost::asio::io_context& context() noexcept {
    return io_;
  }

private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  handler handler_;
  uint16_t port_ = 0;
  std::atomic<size_t> accepted_{0};
  std::thread thread_;
};

/// Reads one HTTP request head+body from `sock` (using `buf` for leftovers);
/// returns false on EOF or error. `target` and `method` receive the request
/// line's parts when not null.
boost::asio::awaitable<bool> read_http_request(boost::asio::ip::tcp::socket& sock,
                                               std::string& buf,
                                               std::string* method = nullptr,
                                               std::string* target = nullptr,
                                               std::string* head = nullptr);

/// Writes `text` entirely; false on error.
boost::asio::awaitable<bool> write_all(boost::asio::ip::tcp::socket& sock,
                                       std::string text);

/// Reads until the peer closes or an error occurs.
boost::asio::awaitable<void> drain(boost::asio::ip::tcp::socket& sock);

/// "HTTP/1.1 <status> X\r\nContent-Length: n\r\n<extra>\r\n<body>".
std::string http_reply(unsigned status, const std::string& body,
                       const std::string& extra_headers = {});

} // namespace sail::test
