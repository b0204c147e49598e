// Absolute http(s) URLs split into what the HTTP client needs to connect and
// to send a request.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <caf/expected.hpp>

namespace sail {

/// An absolute http or https URL, parsed.
struct parsed_url {
  /// "http" or "https" (lower case).
  std::string scheme;
  /// Host without IPv6 brackets, lower case for names.
  std::string host;
  /// Explicit port or the scheme's default.
  uint16_t port = 0;
  /// Origin-form request target: path (at least "/") plus "?query".
  std::string target;
  /// True for https.
  bool tls = false;
  /// True when `host` is an IPv4 or IPv6 literal.
  bool host_is_ip = false;
  /// Decoded "user:password" from the URL, empty if none. A secret: never
  /// log it (used for Proxy-Authorization only).
  std::string userinfo;

  /// Value of the Host header: host (bracketed for IPv6), ":port" only when
  /// the port is not the scheme's default.
  std::string host_header() const;

  /// "host:port" (bracketed for IPv6), as used by CONNECT.
  std::string authority() const;

  /// "scheme://host:port", the key of a connection pool.
  std::string origin() const;

  /// "scheme://authority" + target: the absolute-form request target.
  std::string absolute() const;
};

/// Parses an absolute http(s) URL. Errors are invalid_argument naming `field`;
/// the URL appears in messages only through redact_url.
caf::expected<parsed_url> parse_http_url(std::string_view url,
                                         std::string field = "url");

/// True when parse_http_url accepts `text`: an absolute URL, scheme http or
/// https (any case), a non-empty host (name, IPv4 or IPv6 literal), a port
/// other than 0, a path that is empty or starts with '/'. The one URL rule of
/// the tree: configuration (a signed LoRA URL, a pinned webhook), Tinker's
/// archive answers and the emulator's completion_webhook all use it, so any
/// URL it accepts is one the HTTP client can fetch.
bool is_http_url(std::string_view text);

/// Resolves `ref` (e.g. a Location header) against the absolute URL `base`.
caf::expected<std::string> resolve_url(std::string_view base,
                                       std::string_view ref);

} // namespace sail
