// The receiver of Sail's completion webhooks (docs.sailresearch.com/
// webhooks): on completion Sail POSTs the same JSON as GET
// /v1/responses/{id} to metadata.completion_webhook with "Authorization:
// Bearer <metadata.webhook_token>", retries up to 3 times on a non-2xx answer
// or a network error, and may deliver more than once.
//
// One exchange per delivery (delivery_exchange in the .cpp, in the shape of
// Beast's examples: judge (route -> authenticate -> parse, the pure
// judge_webhook_delivery of webhook_delivery.hpp) -> hand over -> answer,
// one fail() funnel):
//   - not POST <path>                  405 / 404, counted as rejected
//   - wrong or missing Bearer token    401, nothing else happens (constant-time
//                                      comparison of SHA-256 digests)
//   - body over body_limit             413 (by the HTTP server), rejected
//   - body without a response id       400 with the decoder's typed error
//                                      (inference_error), rejected
//   - otherwise                        200, and the delivery goes to the sink
// The sink (the worker pool) decides what a delivery means: the result of a
// sample it is polling, a duplicate, or an unknown id. All of those answer
// 200, so Sail stops retrying.
//
// The token never reaches logs, errors or the sink: generated tokens look
// like "whk_<64 hex digits>" and redact_secrets() hides that shape.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <caf/expected.hpp>

#include "sail_tinker/messages/types.hpp"
#include "sail_tinker/net/webhook_delivery.hpp"

namespace sail {

class http_server;

/// Configuration of the webhook receiver of one runtime (one node).
struct webhook_options {
  /// Off by default: samples then carry no completion_webhook.
  bool enabled = false;
  /// Listen address; port 0 picks a free port.
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  /// Request path of deliveries.
  std::string path = "/sail/webhook";
  /// The URL Sail calls (metadata.completion_webhook): what reaches this
  /// listener from Sail, through NAT or a load balancer. Empty: derived
  /// from the bound address (only when it is a specific address).
  std::string public_url;
  /// TLS from a PEM certificate chain and key (both or neither).
  std::string tls_certificate_file;
  std::string tls_key_file;
  /// A plaintext listener off loopback is refused unless this is set (issue
  /// 14: e.g. TLS terminated by a load balancer on a private network).
  bool allow_plaintext = false;
  /// The Bearer token deliveries must carry. Empty: a random one is made at
  /// start. Must look like "whk_" + at least 16 token characters.
  std::string token;
  /// Largest delivery body (the same JSON as a poll's answer).
  uint64_t body_limit = 16 * 1024 * 1024;
  /// Time to receive one delivery.
  std::chrono::milliseconds read_timeout{30'000};

  /// The listener's rules: the path starts with '/', a positive body limit,
  /// TLS or loopback (or allow_plaintext), a well-formed public URL and
  /// token. invalid_argument naming the option (`prefix` + "path", ...).
  caf::error validate(const std::string& prefix = "webhook.") const;
};

/// A delivery that passed the checks (local only; never crosses nodes).
struct webhook_delivery {
  std::string response_id;
  std::string body;
  /// `body` parsed (by judge_webhook_delivery): never parsed again.
  std::shared_ptr<const parsed_body> parsed;
  std::chrono::steady_clock::time_point received_at;
};

/// A fresh token: "whk_" + 64 hex digits from OpenSSL's RAND_bytes.
std::string make_webhook_token();

/// Checks a configured token (invalid_argument naming `field`).
caf::error validate_webhook_token(std::string_view token, std::string field);

/// True if `host` is a loopback address or "localhost".
bool is_loopback_host(std::string_view host);

class webhook_receiver {
public:
  using delivery_sink = std::function<void(webhook_delivery)>;
  using rejection_sink = std::function<void(webhook_rejection)>;

  /// Validates the options, binds and serves on `ioc` (which the caller
  /// runs). Both sinks run on an io_context thread and must not block.
  /// invalid_argument naming the option for bad options; transport_error if
  /// the address cannot be bound.
  static caf::expected<std::unique_ptr<webhook_receiver>>
  start(boost::asio::io_context& ioc, webhook_options opts, delivery_sink on_delivery,
        rejection_sink on_rejection = nullptr);

  ~webhook_receiver();
  webhook_receiver(const webhook_receiver&) = delete;
  webhook_receiver& operator=(const webhook_receiver&) = delete;

  /// The URL and token samples carry.
  const webhook_endpoint& endpoint() const noexcept {
    return endpoint_;
  }

  /// The bound port.
  uint16_t port() const noexcept;

  bool tls() const noexcept {
    return !opts_.tls_certificate_file.empty();
  }

  /// Stops listening (bounded); idempotent. Not from an io_context thread.
  void stop();

private:
  explicit webhook_receiver(webhook_options opts);

  webhook_options opts_;
  webhook_endpoint endpoint_;
  std::unique_ptr<http_server> server_;
};

} // namespace sail
