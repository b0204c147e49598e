#include "sail_tinker/net/webhook_receiver.hpp"

#include <array>

#include <boost/asio/ip/address.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/url/parse.hpp>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/http_server.hpp"
#include "sail_tinker/net/webhook_delivery.hpp"

namespace sail {

namespace http = boost::beast::http;

namespace {

bool is_token_char(char c) noexcept {
  auto u = static_cast<unsigned char>(c);
  return (u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9')
         || c == '_' || c == '-' || c == '.' || c == '~' || c == '+' || c == '/'
         || c == '=';
}

/// What every exchange of one receiver shares (immutable after start).
struct receiver_shared {
  std::string path;
  webhook_token_digest token_digest;
  webhook_receiver::delivery_sink on_delivery;
  webhook_receiver::rejection_sink on_rejection;
};

/// One delivery: judge it (route -> authenticate -> parse,
/// webhook_delivery.hpp), then hand it over or fail().
class delivery_exchange {
public:
  delivery_exchange(const receiver_shared& shared, http_server_context&& ctx)
    : shared_(shared), ctx_(std::move(ctx)) {
    // nop
  }

  void run() {
    auto v = judge_webhook_delivery(ctx_.request(), shared_.path, shared_.token_digest);
    if (v.rejection)
      return fail(std::move(v));
    hand_over(std::move(v));
  }

private:
  void hand_over(webhook_verdict v) {
    webhook_delivery d;
    d.response_id = std::move(v.response_id);
    d.parsed = std::move(v.parsed);
    d.body = std::move(ctx_.request().body());
    d.received_at = ctx_.received_at();
    // The sink only queues it (a message to the pool): what it makes of it
    // (result, duplicate, unknown) is 200 in every case, so Sail's 30 s
    // attempt timeout never waits on the pool. Handed on before answering,
    // so counters are current when Sail sees the answer.
    if (shared_.on_delivery)
      shared_.on_delivery(std::move(d));
    respond(std::move(v));
  }

  void fail(webhook_verdict v) {
    if (shared_.on_rejection)
      shared_.on_rejection(*v.rejection);
    respond(std::move(v));
  }

  void respond(webhook_verdict v) {
    http_server_response res{v.status, 11};
    res.set(http::field::content_type, "application/json");
    if (v.status == http::status::unauthorized)
      res.set(http::field::www_authenticate, "Bearer");
    if (v.status == http::status::method_not_allowed)
      res.set(http::field::allow, "POST");
    res.body() = std::move(v.answer);
    ctx_.respond(std::move(res));
  }

  const receiver_shared& shared_;
  http_server_context ctx_;
};

caf::expected<std::string> derive_public_url(const webhook_options& o, uint16_t port) {
  if (!o.public_url.empty())
    return o.public_url;
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(o.host, ec);
  if (!ec && addr.is_unspecified())
    return invalid_argument("webhook.public-url",
                            "a listener on every interface (" + o.host
                              + ") needs the public URL Sail calls");
  std::string host = o.host;
  if (!ec && addr.is_v6())
    host = "[" + host + "]";
  auto scheme = o.tls_certificate_file.empty() ? "http://" : "https://";
  return scheme + host + ":" + std::to_string(port) + o.path;
}

caf::error check_public_url(std::string_view url, std::string field) {
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed || (parsed->scheme() != "http" && parsed->scheme() != "https")
      || parsed->host().empty() || parsed->has_fragment() || parsed->has_userinfo())
    return invalid_argument(std::move(field),
                            "the public URL must be an absolute http(s) URL without "
                            "user info or fragment");
  return caf::none;
}

} // namespace

std::string make_webhook_token() {
  std::array<unsigned char, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1)
    throw std::runtime_error("RAND_bytes failed");
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "whk_";
  for (auto b : bytes) {
    out += hex[b >> 4];
    out += hex[b & 0xf];
  }
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return out;
}

caf::error validate_webhook_token(std::string_view token, std::string field) {
  constexpr std::string_view prefix = "whk_";
  bool ok = token.size() >= prefix.size() + 16 && token.size() <= 256
            && token.substr(0, prefix.size()) == prefix;
  for (char c : token)
    ok = ok && is_token_char(c);
  if (!ok)
    return invalid_argument(std::move(field),
                            "a webhook token is \"whk_\" followed by 16 to 252 token "
                            "characters (letters, digits, _-.~+/=), e.g. "
                            "whk_$(openssl rand -hex 32)");
  return caf::none;
}

bool is_loopback_host(std::string_view host) {
  if (host == "localhost")
    return true;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(std::string{host}, ec);
  return !ec && addr.is_loopback();
}

caf::error webhook_options::validate(const std::string& prefix) const {
  if (path.empty() || path.front() != '/')
    return invalid_argument(prefix + "path", "the webhook path must start with '/'");
  if (body_limit == 0)
    return invalid_argument(prefix + "body-limit", "must be > 0");
  bool tls = !tls_certificate_file.empty() || !tls_key_file.empty();
  if (!tls && !allow_plaintext && !is_loopback_host(host))
    return invalid_argument(prefix + "insecure-plaintext",
                            "a plaintext webhook listener off loopback (" + host + ") needs "
                              + prefix + "certificate and " + prefix + "key, or " + prefix
                              + "insecure-plaintext (TLS terminated in front of it on a "
                                "trusted network)");
  if (!public_url.empty())
    if (auto err = check_public_url(public_url, prefix + "public-url"))
      return err;
  if (!token.empty())
    return validate_webhook_token(token, prefix + "token");
  return caf::none;
}

webhook_receiver::webhook_receiver(webhook_options opts) : opts_(std::move(opts)) {
  // nop
}

webhook_receiver::~webhook_receiver() {
  stop();
}

uint16_t webhook_receiver::port() const noexcept {
  return server_ ? server_->port() : 0;
}

void webhook_receiver::stop() {
  if (server_)
    server_->stop();
}

caf::expected<std::unique_ptr<webhook_receiver>>
webhook_receiver::start(boost::asio::io_context& ioc, webhook_options opts,
                        delivery_sink on_delivery, rejection_sink on_rejection) {
  if (auto err = opts.validate())
    return err;
  if (opts.token.empty())
    opts.token = make_webhook_token();
  auto shared = std::make_shared<receiver_shared>();
  shared->path = opts.path;
  shared->token_digest = digest_webhook_token(opts.token);
  shared->on_delivery = std::move(on_delivery);
  shared->on_rejection = on_rejection;
  http_server_options hopts;
  hopts.host = opts.host;
  hopts.port = opts.port;
  hopts.body_limit = opts.body_limit;
  hopts.read_timeout = opts.read_timeout;
  hopts.tls_certificate_file = opts.tls_certificate_file;
  hopts.tls_key_file = opts.tls_key_file;
  hopts.server_name.clear();
  if (on_rejection)
    hopts.on_refused = [on_rejection](unsigned status) {
      on_rejection(status == 400 ? webhook_rejection::malformed
                                 : webhook_rejection::too_large);
    };
  std::unique_ptr<webhook_receiver> rx{new webhook_receiver(opts)};
  rx->server_ = std::make_unique<http_server>(
    ioc, std::move(hopts),
    [shared](http_server_context&& ctx) { delivery_exchange{*shared, std::move(ctx)}.run(); });
  if (auto err = rx->server_->start())
    return err;
  auto url = derive_public_url(opts, rx->server_->port());
  if (!url) {
    rx->stop();
    return std::move(url.error());
  }
  rx->endpoint_ = webhook_endpoint{std::move(*url), opts.token};
  return rx;
}

} // namespace sail
