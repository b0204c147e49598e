#include "sail_tinker/net/tinker_codec.hpp"

#include <algorithm>

#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/redact.hpp"
#include "sail_tinker/net/http_date.hpp"
#include "sail_tinker/net/text.hpp"
#include "sail_tinker/net/url.hpp"

namespace sail {

namespace {

namespace json = boost::json;

constexpr std::string_view tinker_scheme = "tinker://";
constexpr std::string_view path_field = "tinker_path";
constexpr size_t max_detail_in_message = 512;

bool is_ctl_or_space(char c) noexcept {
  auto u = static_cast<unsigned char>(c);
  return u <= 0x20 || u == 0x7f;
}

bool is_unreserved(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
         || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
         || c == '~';
}

bool is_sub_delim(char c) noexcept {
  switch (c) {
    case '!': case '$': case '&': case '\'': case '(': case ')':
    case '*': case '+': case ',': case ';': case '=':
      return true;
    default:
      return false;
  }
}

bool is_kind(std::string_view kind) noexcept {
  return std::find(std::begin(tinker_checkpoint_kinds),
                   std::end(tinker_checkpoint_kinds), kind)
         != std::end(tinker_checkpoint_kinds);
}

bool is_dot_segment(std::string_view s) noexcept {
  return s == "." || s == "..";
}

std::string checkpoint_target(const tinker_path& path, std::string_view leaf) {
  std::string out = "/api/v1/training_runs/";
  out += percent_encode_path_segment(path.run_id);
  out += "/checkpoints/";
  out += path.kind;
  out += '/';
  out += path.name;
  out += '/';
  out += leaf;
  return out;
}

caf::timestamp default_expiry(caf::timestamp now) {
  return now + std::chrono::duration_cast<caf::timespan>(
           tinker_default_url_lifetime);
}

caf::timestamp to_timestamp(std::chrono::system_clock::time_point tp) {
  return caf::timestamp{
    std::chrono::duration_cast<caf::timespan>(tp.time_since_epoch())};
}

/// The URL of a 2xx JSON body, or nullptr.
const json::string* find_url(const json::value& v) {
  if (auto s = v.if_string())
    return s;
  auto obj = v.if_object();
  if (obj == nullptr)
    return nullptr;
  for (auto key : {"url", "signed_url", "archive_url", "checkpoint_archive_url"})
    if (auto it = obj->find(key); it != obj->end())
      if (auto s = it->value().if_string(); s != nullptr && !s->empty())
        return s;
  return nullptr;
}

std::optional<caf::timestamp> find_expires(const json::value& v) {
  auto obj = v.if_object();
  if (obj == nullptr)
    return std::nullopt;
  auto it = obj->find("expires");
  if (it == obj->end())
    return std::nullopt;
  auto s = it->value().if_string();
  if (s == nullptr)
    return std::nullopt;
  std::string_view text{s->data(), s->size()};
  if (auto tp = parse_iso8601(text))
    return to_timestamp(*tp);
  if (auto tp = parse_http_date(text))
    return to_timestamp(*tp);
  return std::nullopt;
}

/// `body` with every occurrence of `secret_url` replaced by its redacted form
/// (redact_secrets only knows http(s) URLs; a rejected URL may be anything).
std::string scrub(std::string_view body, std::string_view secret_url) {
  if (secret_url.empty())
    return std::string{body};
  auto replacement = redact_url(secret_url);
  std::string out;
  for (;;) {
    auto pos = body.find(secret_url);
    out.append(body.substr(0, pos));
    if (pos == std::string_view::npos)
      return out;
    out += replacement;
    body.remove_prefix(pos + secret_url.size());
  }
}

/// Checks the unwrapped URL. On error, `attached_body` (already scrubbed of
/// the URL) goes with the error.
caf::expected<signed_url> checked_url(std::string_view url,
                                      caf::timestamp expires,
                                      std::string attached_body,
                                      std::string_view what) {
  auto trimmed = text::trim_c_space(url);
  if (trimmed.empty())
    return inference_error("Tinker archive response: empty URL in "
                             + std::string{what},
                           std::move(attached_body));
  if (!is_http_url(trimmed))
    return inference_error("Tinker archive response: " + std::string{what}
                             + " is not an absolute http(s) URL: "
                             + redact_url(trimmed),
                           std::move(attached_body));
  return signed_url{std::string{trimmed}, expires};
}

} // namespace

// -- tinker paths ---------------------------------------------------------------

caf::expected<tinker_path> parse_tinker_path(std::string_view uri) {
  if (uri.substr(0, tinker_scheme.size()) != tinker_scheme)
    return invalid_argument(std::string{path_field},
                            "a tinker path must start with tinker://");
  auto rest = uri.substr(tinker_scheme.size());
  if (std::any_of(rest.begin(), rest.end(), is_ctl_or_space))
    return invalid_argument(std::string{path_field},
                            "a tinker path must not contain spaces or "
                            "control characters");
  std::vector<std::string_view> parts;
  for (;;) {
    auto pos = rest.find('/');
    parts.push_back(rest.substr(0, pos));
    if (pos == std::string_view::npos)
      break;
    rest.remove_prefix(pos + 1);
  }
  if (parts.size() != 3)
    return invalid_argument(std::string{path_field},
                            "a tinker path has exactly three parts: "
                            "tinker://<run>/<kind>/<name>, got "
                              + std::to_string(parts.size()));
  for (auto part : parts)
    if (part.empty())
      return invalid_argument(std::string{path_field},
                              "a tinker path has an empty part");
  for (auto part : parts)
    if (is_dot_segment(part))
      return invalid_argument(std::string{path_field},
                              "a tinker path part must not be '.' or '..'");
  if (!is_kind(parts[1]))
    return invalid_argument(std::string{path_field},
                            "unknown checkpoint kind '" + std::string{parts[1]}
                              + "' (expected weights, sampler_weights or "
                                "external_weights)");
  if (parts[2].find_first_of("?#%\\") != std::string_view::npos)
    return invalid_argument(std::string{path_field},
                            "a checkpoint name must not contain '?', '#', "
                            "'%' or '\\'");
  return tinker_path{std::string{parts[0]}, std::string{parts[1]},
                     std::string{parts[2]}};
}

// -- URLs -------------------------------------------------------------------------

std::string tinker_base_url(std::string_view env_value) {
  auto v = text::trim_c_space(env_value);
  while (!v.empty() && v.back() == '/')
    v.remove_suffix(1);
  if (v.empty())
    return std::string{tinker_default_base_url};
  return std::string{v};
}

caf::expected<std::string> checked_tinker_base_url(std::string_view env_value) {
  auto base = tinker_base_url(env_value);
  auto parsed = boost::urls::parse_absolute_uri(base);
  if (!parsed || !is_http_url(base))
    return invalid_argument("TINKER_BASE_URL",
                            "TINKER_BASE_URL must be an absolute http(s) URL");
  if (parsed->has_query() || parsed->has_fragment())
    return invalid_argument("TINKER_BASE_URL",
                            "TINKER_BASE_URL must not have a query or "
                            "fragment");
  return base;
}

std::string percent_encode_path_segment(std::string_view segment) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(segment.size());
  for (char c : segment) {
    if (is_unreserved(c) || is_sub_delim(c) || c == ':' || c == '@') {
      out += c;
    } else {
      auto u = static_cast<unsigned char>(c);
      out += '%';
      out += hex[u >> 4];
      out += hex[u & 0x0f];
    }
  }
  return out;
}

std::string ttl_target(const tinker_path& path) {
  return checkpoint_target(path, "ttl");
}

std::string archive_target(const tinker_path& path) {
  return checkpoint_target(path, "archive");
}

std::string tinker_url(std::string_view base_url, std::string_view target) {
  while (!base_url.empty() && base_url.back() == '/')
    base_url.remove_suffix(1);
  std::string out{base_url};
  if (target.empty() || target.front() != '/')
    out += '/';
  out += target;
  return out;
}

// -- API key and headers -----------------------------------------------------------

caf::error check_tinker_api_key(std::string_view key) {
  if (key.empty())
    return make_error(errc::not_configured, "TINKER_API_KEY is not set",
                      "TINKER_API_KEY");
  bool tml = key.substr(0, 4) == "tml-";
  bool jwt = key.substr(0, 3) == "eyJ";
  if (!tml && !jwt)
    return invalid_argument("TINKER_API_KEY",
                            "a Tinker API key starts with 'tml-' (or is a "
                            "JWT starting with 'eyJ')");
  if (key.size() <= (tml ? 4u : 3u))
    return invalid_argument("TINKER_API_KEY",
                            "the Tinker API key is only a prefix");
  if (std::any_of(key.begin(), key.end(), is_ctl_or_space))
    return invalid_argument("TINKER_API_KEY",
                            "the Tinker API key contains whitespace or "
                            "control characters");
  return caf::none;
}

std::vector<http_header> tinker_headers(std::string_view api_key,
                                        bool json_body) {
  std::vector<http_header> out;
  out.push_back({"X-API-Key", std::string{api_key}});
  out.push_back({"Accept", "application/json"});
  if (json_body)
    out.push_back({"Content-Type", "application/json"});
  return out;
}

// -- TTL ---------------------------------------------------------------------------

caf::expected<std::string> encode_ttl_body(std::optional<int64_t> ttl_seconds) {
  if (!ttl_seconds)
    return std::string{R"({"ttl_seconds":null})"};
  if (*ttl_seconds <= 0)
    return invalid_argument("ttl_seconds",
                            "ttl_seconds must be > 0 (or absent to remove "
                            "the expiry), got "
                              + std::to_string(*ttl_seconds));
  return R"({"ttl_seconds":)" + std::to_string(*ttl_seconds) + "}";
}

// -- archive -----------------------------------------------------------------------

caf::expected<signed_url> decode_archive_response(unsigned status,
                                                  std::string_view location_header,
                                                  std::string_view expires_header,
                                                  std::string_view body,
                                                  caf::timestamp now) {
  switch (status) {
    case 301: case 302: case 303: case 307: case 308: {
      if (text::trim_c_space(location_header).empty())
        return inference_error("Tinker archive response: HTTP "
                                 + std::to_string(status)
                                 + " without a Location header",
                               std::string{body});
      auto expires = default_expiry(now);
      if (auto tp = parse_http_date(expires_header))
        expires = to_timestamp(*tp);
      return checked_url(location_header, expires,
                         scrub(body, text::trim_c_space(location_header)), "Location");
    }
    default:
      break;
  }
  if (status < 200 || status > 299)
    return tinker_error_from_status(status, body);
  boost::system::error_code ec;
  auto value = json::parse(json::string_view{body.data(), body.size()}, ec);
  if (ec)
    return inference_error("Tinker archive response: body is not JSON ("
                             + ec.message() + ")",
                           std::string{body});
  auto url = find_url(value);
  if (url == nullptr)
    return inference_error("Tinker archive response: no URL (expected a JSON "
                           "string or an object with url, signed_url, "
                           "archive_url or checkpoint_archive_url)",
                           std::string{body});
  auto expires = find_expires(value).value_or(default_expiry(now));
  std::string_view url_text{url->data(), url->size()};
  if (!is_http_url(text::trim_c_space(url_text))) {
    // Attach the body with the rejected URL redacted (re-serialized, so that
    // however the JSON escaped it, it is gone).
    auto redacted = redact_url(url_text);
    auto scrubbed = value;
    if (auto s = scrubbed.if_string())
      *s = redacted;
    else
      for (auto& kv : scrubbed.as_object())
        if (auto s = kv.value().if_string(); s != nullptr && *s == *url)
          *s = redacted;
    return checked_url(url_text, expires, json::serialize(scrubbed), "url");
  }
  return checked_url(url_text, expires, std::string{body}, "url");
}

// -- errors ------------------------------------------------------------------------

std::string decode_tinker_error_detail(std::string_view body) {
  boost::system::error_code ec;
  auto value = json::parse(json::string_view{body.data(), body.size()}, ec);
  if (ec)
    return {};
  auto obj = value.if_object();
  if (obj == nullptr)
    return {};
  auto it = obj->find("detail");
  if (it == obj->end() || it->value().is_null())
    return {};
  if (auto s = it->value().if_string())
    return std::string{s->data(), s->size()};
  return json::serialize(it->value());
}

caf::error tinker_error_from_status(unsigned status, std::string_view body) {
  auto detail = decode_tinker_error_detail(body);
  std::string message = "Tinker HTTP " + std::to_string(status);
  if (!detail.empty()) {
    if (detail.size() > max_detail_in_message) {
      // Cut at a UTF-8 character boundary.
      size_t n = max_detail_in_message;
      while (n > 0 && (static_cast<unsigned char>(detail[n]) & 0xC0) == 0x80)
        --n;
      detail.resize(n);
      detail += "...";
    }
    message += ": ";
    message += detail;
  }
  auto code = static_cast<uint16_t>(std::min(status, 65535u));
  return http_error(code, std::string{body}, std::move(message));
}

} // namespace sail
