// An asynchronous HTTP/1.1 server on Boost.Beast (plain, or TLS from a
// certificate and key file): keep-alive, bounded request
// header and body size, per-connection read timeout, graceful stop, and
// handlers that answer later (and can ask for faults: reset, truncated body,
// delay). Used by the emulator, and later by /metrics and webhook receivers.
//
// Two ways to run it:
//   - on an io_context the caller owns and runs:
//       sail::http_server srv{ioc, opts, handler};
//   - on its own io_context with opts.threads threads:
//       sail::http_server srv{opts, handler};
// then `if (auto err = srv.start()) ...; srv.port();` and finally srv.stop()
// (the destructor stops as well).
//
// A handler runs on the connection's strand and must not block. It receives
// an http_server_context by rvalue; it may answer at once or move the context
// anywhere (a timer's completion, another thread) and answer later. One
// request per connection is in progress at a time (pipelined requests wait).
// A context destroyed without an answer answers 500.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <caf/error.hpp>

namespace sail {

namespace detail {
class http_session;
struct http_server_shared;
} // namespace detail

using http_server_request
  = boost::beast::http::request<boost::beast::http::string_body>;
using http_server_response
  = boost::beast::http::response<boost::beast::http::string_body>;

struct http_server_options {
  /// Address to bind; port 0 picks a free port (see http_server::port()).
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  /// Largest request header (431 and close beyond it).
  size_t header_limit = 16 * 1024;
  /// Largest request body (413 and close beyond it).
  uint64_t body_limit = 1024 * 1024;
  /// Time to receive a complete request on a connection (also the keep-alive
  /// idle timeout); the connection closes when it expires.
  std::chrono::milliseconds read_timeout{30'000};
  /// Time to send one response.
  std::chrono::milliseconds write_timeout{30'000};
  /// How long stop() lets in-flight requests finish before closing them.
  std::chrono::milliseconds drain_timeout{2'000};
  /// Threads of the server's own io_context (only for the owning
  /// constructor).
  size_t threads = 1;
  /// Value of the Server header (empty: none).
  std::string server_name = "sail-tinker";
  /// TLS: a PEM certificate chain and its private key. Both empty: plain
  /// HTTP; one without the other: start() fails with invalid_argument.
  std::string tls_certificate_file;
  std::string tls_key_file;
  /// Time to complete the TLS handshake of a new connection.
  std::chrono::milliseconds handshake_timeout{10'000};
  /// Called with the status when the server itself refuses a request (400
  /// malformed, 413 body too large, 431 header too large) without asking
  /// the handler; runs on the connection's strand, must not block.
  std::function<void(unsigned)> on_refused;
};

/// A fault the handler can ask for instead of a normal answer.
enum class http_server_fault : uint8_t {
  none,
  /// Close the connection abruptly (SO_LINGER 0: the peer sees a reset); no
  /// response is sent.
  reset,
  /// Send the header with the full Content-Length but only `truncate_at`
  /// bytes of the body, then close.
  truncate_body,
};

/// A response plus delivery instructions.
struct http_server_reply {
  http_server_response response;
  http_server_fault fault = http_server_fault::none;
  /// Body bytes actually sent with truncate_body (clamped to the body size
  /// minus one, so the body is always short).
  size_t truncate_at = 0;
  /// Wait this long (without blocking a thread) before answering.
  std::chrono::milliseconds delay{0};
  /// Close the connection after this response.
  bool close = false;
};

/// One request being handled. Move-only; answer exactly once.
class http_server_context {
public:
  http_server_context(std::shared_ptr<detail::http_session> session,
                      http_server_request req);
  http_server_context(http_server_context&&) noexcept;
  http_server_context& operator=(http_server_context&&) noexcept;
  http_server_context(const http_server_context&) = delete;
  http_server_context& operator=(const http_server_context&) = delete;

  /// Answers 500 if the request was never answered.
  ~http_server_context();

  http_server_request& request() noexcept { return req_; }
  const http_server_request& request() const noexcept { return req_; }

  /// The peer's address.
  boost::asio::ip::tcp::endpoint remote_endpoint() const;

  /// Sequence number of the connection (1, 2, ... per server).
  uint64_t connection_id() const noexcept;

  /// When the request was completely received.
  std::chrono::steady_clock::time_point received_at() const noexcept {
    return received_at_;
  }

  /// The connection's strand (e.g. for timers of a delayed answer).
  boost::asio::any_io_executor executor() const;

  /// Answers. Version, keep-alive and Content-Length are filled in. Later
  /// calls are ignored.
  void respond(http_server_response res);

  /// Answers with delivery instructions (faults, delay).
  void respond(http_server_reply reply);

  /// Resets the connection without an answer.
  void reset_connection();

  /// True until answered.
  bool pending() const noexcept { return session_ != nullptr; }

private:
  std::shared_ptr<detail::http_session> session_;
  http_server_request req_;
  std::chrono::steady_clock::time_point received_at_;
};

using http_server_handler = std::function<void(http_server_context&&)>;

class http_server {
public:
  /// Runs on `ioc`, which the caller runs.
  http_server(boost::asio::io_context& ioc, http_server_options opts,
              http_server_handler handler);

  /// Runs on its own io_context with opts.threads threads (started by
  /// start()).
  http_server(http_server_options opts, http_server_handler handler);

  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// Stops.
  ~http_server();

  /// Loads the TLS files (invalid_argument naming the option), binds,
  /// listens and starts accepting; transport_error on failure.
  caf::error start();

  /// The bound port (0 before start()).
  uint16_t port() const noexcept;

  /// Connections accepted so far.
  uint64_t connections_accepted() const noexcept;

  /// Connections currently open.
  uint64_t connections_open() const noexcept;

  /// Graceful stop: stop accepting, close idle connections, let in-flight
  /// requests finish (bounded by drain_timeout), then close the rest; joins
  /// the server's own threads. Idempotent and bounded. Do not call it from a
  /// thread running the server's io_context.
  void stop();

private:
  std::unique_ptr<boost::asio::io_context> own_ioc_;
  boost::asio::io_context* ioc_;
  std::shared_ptr<detail::http_server_shared> shared_;
  std::vector<std::thread> threads_;
  std::atomic<bool> started_{false};
  std::atomic<bool> stopped_{false};
};

} // namespace sail
