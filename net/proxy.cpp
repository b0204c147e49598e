#include "sail_tinker/net/proxy.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <optional>

#include <boost/asio/ip/address.hpp>

namespace sail {

namespace {

std::string env(const char* lower_name, const char* upper_name) {
  if (auto v = std::getenv(lower_name); v != nullptr && *v != '\0')
    return v;
  if (auto v = std::getenv(upper_name); v != nullptr && *v != '\0')
    return v;
  return {};
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::optional<boost::asio::ip::address> parse_ip(std::string_view s) {
  boost::system::error_code ec;
  auto a = boost::asio::ip::make_address(std::string(s), ec);
  if (ec)
    return std::nullopt;
  return a;
}

// True when `addr` lies in `net`/`bits`.
bool in_cidr(const boost::asio::ip::address& addr,
             const boost::asio::ip::address& net, unsigned bits) {
  auto to_bytes = [](const boost::asio::ip::address& a) {
    std::vector<unsigned char> out;
    if (a.is_v4()) {
      auto b = a.to_v4().to_bytes();
      out.assign(b.begin(), b.end());
    } else {
      auto b = a.to_v6().to_bytes();
      out.assign(b.begin(), b.end());
    }
    return out;
  };
  if (addr.is_v4() != net.is_v4())
    return false;
  auto x = to_bytes(addr);
  auto y = to_bytes(net);
  if (bits > x.size() * 8)
    return false;
  for (size_t i = 0; i < x.size() && bits > 0; ++i) {
    unsigned take = std::min(bits, 8u);
    auto mask = static_cast<unsigned char>(0xFF << (8 - take));
    if ((x[i] & mask) != (y[i] & mask))
      return false;
    bits -= take;
  }
  return true;
}

// One no_proxy entry against host:port.
bool matches(std::string entry, std::string_view host, uint16_t port) {
  if (entry == "*")
    return true;
  // Optional port: "host:port", "[v6]:port"; a bare IPv6 literal has
  // several colons and no brackets.
  std::optional<uint16_t> entry_port;
  if (!entry.empty() && entry.front() == '[') {
    auto close = entry.find(']');
    if (close == std::string::npos)
      return false;
    auto rest = entry.substr(close + 1);
    if (rest.size() > 1 && rest.front() == ':')
      entry_port = static_cast<uint16_t>(std::atoi(rest.c_str() + 1));
    entry = entry.substr(1, close - 1);
  } else if (std::count(entry.begin(), entry.end(), ':') == 1) {
    auto colon = entry.find(':');
    entry_port = static_cast<uint16_t>(std::atoi(entry.c_str() + colon + 1));
    entry = entry.substr(0, colon);
  }
  if (entry_port && *entry_port != port)
    return false;
  if (auto slash = entry.find('/'); slash != std::string::npos) {
    auto net = parse_ip(entry.substr(0, slash));
    auto addr = parse_ip(host);
    if (!net || !addr)
      return false;
    auto bits = static_cast<unsigned>(std::atoi(entry.c_str() + slash + 1));
    return in_cidr(*addr, *net, bits);
  }
  if (auto e = parse_ip(entry)) {
    auto addr = parse_ip(host);
    return addr && *addr == *e;
  }
  if (entry.rfind("*.", 0) == 0)
    entry.erase(0, 1);
  if (!entry.empty() && entry.front() == '.')
    entry.erase(0, 1);
  if (entry.empty())
    return false;
  if (host == entry)
    return true;
  return host.size() > entry.size()
         && host.substr(host.size() - entry.size()) == entry
         && host[host.size() - entry.size() - 1] == '.';
}

} // namespace

proxy_settings proxy_settings::from_env() {
  proxy_settings out;
  out.http_proxy = env("http_proxy", "HTTP_PROXY");
  out.https_proxy = env("https_proxy", "HTTPS_PROXY");
  out.no_proxy = env("no_proxy", "NO_PROXY");
  return out;
}

bool proxy_settings::bypass(std::string_view host, uint16_t port) const {
  auto h = lower(host);
  if (!h.empty() && h.front() == '[' && h.back() == ']')
    h = h.substr(1, h.size() - 2);
  auto list = lower(no_proxy);
  size_t i = 0;
  while (i < list.size()) {
    auto end = list.find_first_of(", \t", i);
    if (end == std::string::npos)
      end = list.size();
    if (end > i && matches(list.substr(i, end - i), h, port))
      return true;
    i = end + 1;
  }
  return false;
}

std::string proxy_settings::proxy_for(const parsed_url& dest) const {
  const auto& p = dest.tls ? https_proxy : http_proxy;
  if (p.empty() || bypass(dest.host, dest.port))
    return {};
  if (p.find("://") == std::string::npos)
    return "http://" + p;
  return p;
}

} // namespace sail
