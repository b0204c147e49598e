// Outbound proxy settings (HTTPS_PROXY / HTTP_PROXY / NO_PROXY).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "sail_tinker/net/url.hpp"

namespace sail {

/// Which proxy the HTTP client uses for which destination. Only http://
/// proxies are supported: https destinations are tunnelled with CONNECT,
/// http destinations are sent in absolute form. A proxy URL may carry
/// user:password@ for Basic Proxy-Authorization (never logged).
struct proxy_settings {
  /// Proxy URL for http destinations; empty = direct.
  std::string http_proxy;
  /// Proxy URL for https destinations; empty = direct.
  std::string https_proxy;
  /// Comma- or space-separated list of destinations reached directly:
  /// "*" (everything), host names (matching the name and its subdomains;
  /// a leading "." or "*." is accepted), IP literals, CIDR blocks
  /// ("10.0.0.0/8"), each optionally with ":port".
  std::string no_proxy;

  /// Reads http_proxy/HTTP_PROXY, https_proxy/HTTPS_PROXY and
  /// no_proxy/NO_PROXY (the lower-case variant wins when both are set).
  static proxy_settings from_env();

  /// True when `host`:`port` is excluded from proxying by no_proxy.
  bool bypass(std::string_view host, uint16_t port) const;

  /// The proxy URL to use for `dest`, or an empty string for a direct
  /// connection.
  std::string proxy_for(const parsed_url& dest) const;
};

} // namespace sail
