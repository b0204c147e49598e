// A minimal blocking HTTP/1.1 client for tests (Beast). Every call is bounded
// by a timeout; transport failures come back as an error_code, not as an
// exception, so tests can assert on resets and truncated bodies.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json/value.hpp>

namespace sail::test {

using header_list = std::vector<std::pair<std::string, std::string>>;

struct sync_result {
  boost::beast::error_code ec;  ///< transport or parse failure
  boost::beast::http::response<boost::beast::http::string_body> response;

  bool ok() const noexcept {
    return !ec;
  }
  int status() const noexcept {
    return static_cast<int>(response.result_int());
  }
  const std::string& body() const noexcept {
    return response.body();
  }
  /// The body parsed as JSON (null if it does not parse).
  boost::json::value json() const;
  /// A header value ("" if absent).
  std::string header(std::string_view name) const;
};

/// One connection, reused across requests while the server keeps it alive;
/// reconnects when it is closed.
class sync_http {
public:
  sync_http(std::string host, uint16_t port,
            std::chrono::milliseconds timeout = std::chrono::seconds{10});
  ~sync_http();

  sync_result request(boost::beast::http::verb method, std::string target,
                      std::string body = {}, const header_list& headers = {});

  sync_result get(std::string target, const header_list& headers = {}) {
    return request(boost::beast::http::verb::get, std::move(target), {},
                   headers);
  }

  sync_result post(std::string target, std::string body,
                   const header_list& headers = {}) {
    return request(boost::beast::http::verb::post, std::move(target),
                   std::move(body), headers);
  }

  /// Sends raw bytes and reads one response (for malformed requests).
  sync_result raw(const std::string& bytes);

  /// True while a connection is open.
  bool connected() const noexcept;

  /// Number of TCP connections opened so far.
  int connects() const noexcept {
    return connects_;
  }

  void close();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
  int connects_ = 0;
};

/// One request on a fresh connection.
sync_result http_call(uint16_t port, boost::beast::http::verb method,
                      std::string target, std::string body = {},
                      const header_list& headers = {});

} // namespace sail::test
