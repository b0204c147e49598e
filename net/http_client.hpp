// Asynchronous HTTP/1.1 client (Boost.Beast + Asio + OpenSSL) with a bounded
// keep-alive connection pool per origin, TLS with verification, per-phase
// timeouts capped by a per-call deadline, response size limits and
// HTTP(S)_PROXY support.
//
// The client runs on an io_context owned by the application (any number of
// threads may run it); it never blocks the caller. Every request completes
// exactly once, through its callback, on an io_context thread -- never inline
// in async_request. Retries beyond the single stale-connection retry are
// decided by the caller with net/retry_policy.hpp (the one retry path).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http/verb.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "sail_tinker/messages/types.hpp"
#include "sail_tinker/net/proxy.hpp"

namespace sail {


/// One HTTP request.
struct http_request {
  boost::beast::http::verb method = boost::beast::http::verb::get;
  /// Absolute http(s) URL.
  std::string url;
  std::vector<http_header> headers;
  std::string body;
  /// Cap on the whole call, queueing included (0 = none).
  caf::timespan deadline{0};
  /// Follow 301/302/303/307/308 (at most http_client_options::max_redirects).
  bool follow_redirects = false;
};

/// One HTTP response, whatever its status.
struct http_response {
  unsigned status = 0;
  std::vector<http_header> headers;
  std::string body;

  /// Value of the first header named `name` (case-insensitive), or "".
  std::string header(std::string_view name) const;
};

/// Per-phase timeouts; each is capped by the remaining per-call deadline.
/// Expiry yields errc::timeout naming the phase.
struct http_timeouts {
  /// Name resolution plus TCP connect (plus the proxy's CONNECT reply).
  caf::timespan connect = std::chrono::seconds(10);
  caf::timespan tls_handshake = std::chrono::seconds(10);
  /// Sending the whole request.
  caf::timespan write = std::chrono::seconds(30);
  /// Receiving the whole response (header and body).
  caf::timespan read = std::chrono::seconds(60);
};

/// Response size limits; exceeding one is a transport_error and the
/// connection is discarded.
struct http_limits {
  uint32_t max_header_bytes = 64 * 1024;
  uint64_t max_body_bytes = 64ull * 1024 * 1024;
};

struct tls_options {
  /// PEM file with extra trusted CAs (in addition to the system store).
  std::string ca_file;
  /// Disables peer and hostname verification. Never the default.
  bool insecure_skip_verify = false;
};

struct http_client_options {
  http_timeouts timeouts;
  http_limits limits;
  /// Connections per origin (scheme + host + port + proxy), busy or idle.
  uint32_t max_connections_per_origin = 16;
  /// Requests waiting for a connection per origin; beyond -> overloaded.
  uint32_t max_queued_per_origin = 1024;
  /// Idle keep-alive connections are closed after this long.
  caf::timespan idle_timeout = std::chrono::seconds(30);
  tls_options tls;
  /// Proxies; the default is direct. Use proxy_settings::from_env() to honour
  /// the environment.
  proxy_settings proxy;
  /// Sent unless the request carries its own User-Agent.
  std::string user_agent = "sail-tinker/0.1";
  uint32_t max_redirects = 5;

  /// invalid_argument naming the option (`prefix` + "connect-timeout", ...)
  /// if out of range.
  caf::error validate(const std::string& prefix = "http.") const;
};

/// Counters, for tests and metrics.
struct http_client_stats {
  uint64_t requests = 0;            ///< requests written to a connection
  uint64_t connections_opened = 0;  ///< successful connects (+TLS)
  uint64_t stale_retries = 0;       ///< dead pooled connection -> retried once
};

class http_client {
public:
  using callback = std::function<void(caf::expected<http_response>)>;

  /// Builds a client; fails with invalid_argument (field "tls.ca_file") when
  /// the CA file cannot be loaded, or for nonsensical options.
  static caf::expected<http_client> make(boost::asio::io_context& ctx,
                                         http_client_options opts = {});

  http_client(http_client&&) noexcept;
  http_client& operator=(http_client&&) noexcept;
  ~http_client();

  /// Starts a request. `done` runs exactly once on an io_context thread:
  /// with the response (any status), or with an error: invalid_argument for
  /// a bad URL, timeout naming the phase, overloaded when the origin's queue
  /// is full, transport_error for connection/TLS/protocol failures and
  /// oversize responses.
  void async_request(http_request req, callback done);

  /// Closes idle pooled connections (busy ones finish their request).
  void close_idle();

  http_client_stats stats() const;

  const http_client_options& options() const noexcept;

  /// Executor of the io_context the client runs on.
  boost::asio::any_io_executor get_executor() const;

  struct impl;

private:
  explicit http_client(std::shared_ptr<impl> ptr);
  std::shared_ptr<impl> impl_;
};

/// True for methods that may be replayed on a fresh connection: GET, HEAD,
/// PUT, DELETE, OPTIONS, or any request with an Idempotency-Key header.
bool replay_safe(const http_request& req) noexcept;

} // namespace sail
