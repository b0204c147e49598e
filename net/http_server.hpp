// An asynchronous HTTP/1.1 server on Boost.Beast (plain, or TLS from a
// certificate and key file): keep-alive, bounded request
// header and body size, per-connection read timeout, graceful stop, and
// handlers that answer later (at once, from anywhere, or after a delay).
// Used by the emulator, /metrics and the webhook receiver.
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

/// A response plus delivery instructions.
struct http_server_reply {
  http_server_response response;
  /// Wait this long (without blocking a thread) before answering.
  std::chrono::milliseconds delay{0};
  /// Close the connection after this response.
  bool close = false;
};

/// Extension point for an answer that is not one well-formed response (the
/// emulator's fault injection, emulator/faults.cpp); see
/// http_server_context::respond_raw. Runs on the connection's strand with
/// the response as it would have been sent (version, Server, Connection:
/// close and Content-Length filled in) and the TCP socket (beneath TLS, if
/// any); returns the bytes to send instead, as they are (through TLS, if
/// any). The connection then closes -- after those bytes, or at once if there
/// are none -- and is not read again.
using http_raw_answer = std::function<std::string(const http_server_response& prepared,
                                                  boost::asio::ip::tcp::socket& socket)>;

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

  /// Answers with delivery instructions (delay, close).
  void respond(http_server_reply reply);

  /// True until answered.
  bool pending() const noexcept { return session_ != nullptr; }

protected:
  /// Answers through `raw` instead of writing reply.response (after
  /// reply.delay). Protected: only a context subclass reaches it (the
  /// emulator's, emulator/faults.cpp); handlers of the server get a plain
  /// context, so nothing a request carries can make the server use it.
  void respond_raw(http_server_reply reply, http_raw_answer raw);

private:
  void deliver(http_server_reply reply, http_raw_answer raw);

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
