#include "sail_tinker/net/url.hpp"

#include <algorithm>
#include <cctype>

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>
#include <boost/url/url_view.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/redact.hpp"

namespace sail {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

uint16_t default_port(bool tls) {
  return tls ? 443 : 80;
}

std::string bracketed(const parsed_url& u) {
  if (u.host_is_ip && u.host.find(':') != std::string::npos)
    return "[" + u.host + "]";
  return u.host;
}

} // namespace

std::string parsed_url::host_header() const {
  auto h = bracketed(*this);
  // Appended piecewise: `":" + std::to_string(..)` makes GCC 12 at -O3 warn
  // about an overlapping memcpy inside char_traits (a false -Wrestrict).
  if (port != default_port(tls)) {
    h += ':';
    h += std::to_string(port);
  }
  return h;
}

std::string parsed_url::authority() const {
  auto a = bracketed(*this);
  a += ':';
  a += std::to_string(port);
  return a;
}

std::string parsed_url::origin() const {
  return scheme + "://" + authority();
}

std::string parsed_url::absolute() const {
  return scheme + "://" + host_header() + target;
}

caf::expected<parsed_url> parse_http_url(std::string_view url,
                                         std::string field) {
  auto r = boost::urls::parse_absolute_uri(url);
  if (!r)
    return invalid_argument(std::move(field),
                            "not an absolute URL: " + redact_url(url));
  auto v = *r;
  parsed_url out;
  out.scheme = lower(v.scheme());
  if (out.scheme == "https")
    out.tls = true;
  else if (out.scheme != "http")
    return invalid_argument(std::move(field),
                            "unsupported URL scheme (want http or https): "
                              + redact_url(url));
  switch (v.host_type()) {
    case boost::urls::host_type::ipv4:
      out.host = v.host_ipv4_address().to_string();
      out.host_is_ip = true;
      break;
    case boost::urls::host_type::ipv6:
      out.host = v.host_ipv6_address().to_string();
      out.host_is_ip = true;
      break;
    case boost::urls::host_type::name:
      out.host = lower(v.host_name());
      break;
    default:
      return invalid_argument(std::move(field),
                              "unsupported URL host: " + redact_url(url));
  }
  if (out.host.empty())
    return invalid_argument(std::move(field), "URL without host: " + redact_url(url));
  if (v.has_port()) {
    auto p = v.port_number();
    if (p == 0)
      return invalid_argument(std::move(field), "bad URL port: " + redact_url(url));
    out.port = p;
  } else {
    out.port = default_port(out.tls);
  }
  if (v.has_userinfo()) {
    out.userinfo = v.user();
    if (v.has_password()) {
      out.userinfo += ':';
      out.userinfo += v.password();
    }
  }
  // RFC 3986: after an authority the path is empty or starts with '/'.
  // Boost.URL 1.81 parses "http://u@h@x/p" as host "h" with the path "@x/p",
  // which would go out as the request target "@x/p" (found by
  // fuzz/http_response_fuzz in a redirect's Location).
  if (!v.encoded_path().empty() && v.encoded_path().front() != '/')
    return invalid_argument(std::move(field),
                            "URL path does not start with '/' (is there a "
                            "second '@' in the authority?): "
                              + redact_url(url));
  out.target = std::string(v.encoded_path());
  if (out.target.empty())
    out.target = "/";
  if (v.has_query()) {
    out.target += '?';
    out.target += std::string(v.encoded_query());
  }
  return out;
}

bool is_http_url(std::string_view text) {
  return static_cast<bool>(parse_http_url(text));
}

caf::expected<std::string> resolve_url(std::string_view base,
                                       std::string_view ref) {
  auto b = boost::urls::parse_absolute_uri(base);
  if (!b)
    return invalid_argument("url", "not an absolute URL: " + redact_url(base));
  auto r = boost::urls::parse_uri_reference(ref);
  if (!r)
    return invalid_argument("location", "bad redirect location: " + redact_url(ref));
  boost::urls::url dest;
  auto res = boost::urls::resolve(*b, *r, dest);
  if (!res)
    return invalid_argument("location", "cannot resolve redirect location: "
                                          + redact_url(ref));
  dest.remove_fragment();
  return std::string(dest.buffer());
}

} // namespace sail
