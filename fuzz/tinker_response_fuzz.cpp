// libFuzzer target for the Tinker REST decoders (net/tinker_codec.*): the
// archive response unwrapping (redirect + Location/Expires, or a JSON body
// with the URL and "expires"), FastAPI error bodies, and tinker:// paths
// (they arrive from remote trainers inside a completer_config).
//
// Input (text, so that seeds stay readable):
//   line 1: HTTP status (decimal; anything else means 200)
//   line 2: Location header value (also parsed as a tinker:// path)
//   line 3: Expires header value
//   rest:   response body
//
// Invariants: failures are typed (inference_error for a malformed 2xx/3xx,
// http_error carrying the status otherwise); an accepted URL is an absolute
// http(s) URL without surrounding whitespace; a signed URL's query string
// never reaches an error message (checked with a canary appended to Location
// and substituted as "?sig=<canary>" for "{SIG}" in the body); a Tinker
// error message is bounded and stays valid UTF-8; a parsed tinker path
// round-trips and its request URLs stay under /api/v1/training_runs/ with
// exactly the expected segments.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include "fuzz_util.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/tinker_codec.hpp"
#include "sail_tinker/net/url.hpp"

namespace {

using namespace sail;
using sail::fuzz::contains;
using sail::fuzz::require;

constexpr std::string_view canary = "Zq7CanarySecret0xK";

/// Structurally valid UTF-8: every lead byte is followed by its continuation
/// bytes (what a cut at a byte limit can break).
bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    if (c < 0x80)
      n = 0;
    else if ((c >> 5) == 0x6)
      n = 1;
    else if ((c >> 4) == 0xE)
      n = 2;
    else if ((c >> 3) == 0x1E)
      n = 3;
    else
      return false;
    if (s.size() - i - 1 < n)
      return false;
    for (size_t k = 1; k <= n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80)
        return false;
    i += n + 1;
  }
  return true;
}

unsigned parse_status(std::string_view line) {
  if (line.empty() || line.size() > 5)
    return 200;
  unsigned v = 0;
  for (char c : line) {
    if (c < '0' || c > '9')
      return 200;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  return v;
}

bool is_redirect(unsigned status) {
  return status == 301 || status == 302 || status == 303 || status == 307
         || status == 308;
}

std::string replace_all(std::string_view text, std::string_view from,
                        std::string_view to) {
  std::string out;
  for (;;) {
    auto pos = text.find(from);
    out.append(text.substr(0, pos));
    if (pos == std::string_view::npos)
      return out;
    out.append(to);
    text.remove_prefix(pos + from.size());
  }
}

void check_archive(unsigned status, std::string_view location,
                   std::string_view expires, std::string_view body,
                   caf::timestamp now) {
  auto res = decode_archive_response(status, location, expires, body, now);
  bool decodes = is_redirect(status) || (status >= 200 && status <= 299);
  if (res) {
    require(decodes, "a URL from a status that carries none");
    auto& url = res->url;
    require(!url.empty(), "empty signed URL accepted");
    require(url.find_first_of(" \t\r\n\f\v") != 0
              && url.find_last_of(" \t\r\n\f\v") != url.size() - 1,
            "signed URL keeps surrounding whitespace");
    auto parsed = boost::urls::parse_absolute_uri(url);
    require(parsed.has_value(), "signed URL is not an absolute URI");
    auto scheme = parsed->scheme_id();
    require(scheme == boost::urls::scheme::http
              || scheme == boost::urls::scheme::https,
            "signed URL is not http(s)");
    if (is_redirect(status) && expires.empty())
      require(res->expires == now + std::chrono::minutes(15),
              "redirect without Expires: not now + 15 min");
    return;
  }
  auto& err = res.error();
  if (decodes) {
    fuzz::require_kind(err, errc::inference_error,
                       "malformed archive response: not an inference_error");
  } else {
    fuzz::require_kind(err, errc::http_error,
                       "archive error status: not an http_error");
    require(info_of(err)->http_status == std::min(status, 65535u),
            "archive error: status not attached");
  }
}

void check_secret_stays_out(unsigned status, std::string_view location,
                            std::string_view expires, std::string_view body,
                            caf::timestamp now) {
  if (contains(body, canary) || contains(location, canary))
    return;
  if (is_redirect(status)) {
    // A signed Location: the query must not reach the error (message or
    // attached body).
    std::string signed_location{location};
    signed_location += location.find('?') == std::string_view::npos ? '?' : '&';
    signed_location += "X-Sig=";
    signed_location += canary;
    auto res = decode_archive_response(status, signed_location, expires, body, now);
    if (!res)
      require(!contains(render(res.error()), canary),
              "redirect error shows the signed URL's query");
  } else if (status >= 200 && status <= 299 && contains(body, "{SIG}")) {
    // "{SIG}" becomes a query carrying the canary: whatever the decoder makes
    // of the body, that query must not reach the message.
    auto signed_body = replace_all(body, "{SIG}", "?sig=" + std::string{canary});
    auto res = decode_archive_response(status, location, expires, signed_body, now);
    if (!res) {
      auto info = info_of(res.error());
      require(info != nullptr && !contains(info->message, canary),
              "archive error message shows the signed URL's query");
    }
  }
}

void check_error_body(unsigned status, std::string_view body) {
  auto detail = decode_tinker_error_detail(body);
  auto err = tinker_error_from_status(status, body);
  fuzz::require_kind(err, errc::http_error, "Tinker error: not an http_error");
  auto info = info_of(err);
  require(info->message.size() <= 2048, "Tinker error message unbounded");
  if (valid_utf8(detail))
    require(valid_utf8(info->message), "Tinker error message cut inside a UTF-8 character");
}

void check_tinker_path(std::string_view text) {
  auto path = parse_tinker_path(text);
  if (!path) {
    fuzz::require_kind(path.error(), errc::invalid_argument,
                       "bad tinker path: not invalid_argument");
    return;
  }
  auto again = parse_tinker_path(path->to_uri());
  require(again && *again == *path, "tinker path does not round-trip");
  for (auto target : {archive_target(*path), ttl_target(*path)}) {
    require(target.rfind("/api/v1/training_runs/", 0) == 0,
            "request target leaves /api/v1/training_runs/");
    for (char c : target) {
      auto u = static_cast<unsigned char>(c);
      require(u > 0x20 && u != 0x7f && c != '?' && c != '#',
              "request target carries a space, control, '?' or '#'");
    }
    auto url = tinker_url(tinker_default_base_url, target);
    auto parsed = parse_http_url(url);
    if (!parsed) {
      // Bytes a URL path cannot carry raw (e.g. '{', non-ASCII): refused
      // typed before any request.
      fuzz::require_kind(parsed.error(), errc::invalid_argument,
                         "unparseable request URL: not invalid_argument");
      continue;
    }
    require(parsed->host == "tinker.thinkingmachines.dev",
            "request goes to another host");
    auto view = boost::urls::parse_absolute_uri(url);
    require(view.has_value(), "request URL parses once but not twice");
    // services/tinker-prod + api/v1/training_runs/{run}/checkpoints/{kind}/{name}/{leaf}
    require(view->encoded_segments().size() == 10,
            "request URL has extra or missing path segments");
    for (auto seg : view->encoded_segments())
      require(seg != "." && seg != "..", "request URL has a dot segment");
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto in = fuzz::as_text(data, size);
  auto status = parse_status(fuzz::take_line(in));
  auto location = fuzz::take_line(in);
  auto expires = fuzz::take_line(in);
  auto body = in;
  // A fixed clock keeps runs reproducible.
  caf::timestamp now{std::chrono::seconds(1'750'000'000)};
  check_archive(status, location, expires, body, now);
  check_secret_stays_out(status, location, expires, body, now);
  check_error_body(status, body);
  check_tinker_path(location);
  return 0;
}
