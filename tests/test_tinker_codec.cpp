// The Tinker REST codec (docs/wire-contract.md, "Tinker"; Sail's
// get_tinker_checkpoint_signed_url_async, /sdk-tinker): literal inputs for every rule.
#include <catch2/catch.hpp>

#include <string>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/redact.hpp"
#include "sail_tinker/net/http_date.hpp"
#include "sail_tinker/net/tinker_codec.hpp"

using namespace sail;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view run = "3f2a9c1e-7b4d-4e2a-9f1c-0d8e5b6a7c21:train:0";

// 2026-11-25T13:00:00Z
caf::timestamp fixed_now() {
  return caf::timestamp{std::chrono::seconds{1795611600}};
}

caf::timestamp at(std::string_view iso) {
  auto tp = parse_iso8601(iso);
  REQUIRE(tp);
  return caf::timestamp{
    std::chrono::duration_cast<caf::timespan>(tp->time_since_epoch())};
}

constexpr std::string_view signed_link
  = "https://storage.example.com/ckpt/archive.tar?X-Goog-Signature=deadbeefcafe&X-Goog-Expires=900";

void check_kind(const caf::error& err, errc expected) {
  REQUIRE(err);
  CHECK(code_of(err) == expected);
}

void check_invalid(const caf::error& err, std::string_view field) {
  REQUIRE(err);
  REQUIRE(code_of(err) == errc::invalid_argument);
  REQUIRE(info_of(err) != nullptr);
  CHECK(info_of(err)->field == field);
}

/// The signature must appear nowhere in the rendered error.
void check_no_signature(const caf::error& err) {
  auto text = render(err);
  INFO(text);
  CHECK(text.find("deadbeefcafe") == std::string::npos);
  CHECK(text.find("X-Goog-Signature") == std::string::npos);
}

} // namespace

// -- tinker paths ------------------------------------------------------------------

TEST_CASE("tinker path: run, kind and name are parsed") {
  auto p = parse_tinker_path("tinker://" + std::string{run} + "/weights/step-0040");
  REQUIRE(p);
  CHECK(p->run_id == run);
  CHECK(p->kind == "weights");
  CHECK(p->name == "step-0040");
  CHECK(p->checkpoint_id() == "weights/step-0040");
  CHECK(p->to_uri() == "tinker://" + std::string{run} + "/weights/step-0040");
}

TEST_CASE("tinker path: kinds weights, sampler_weights and external_weights") {
  for (auto kind : {"weights", "sampler_weights", "external_weights"}) {
    INFO(kind);
    auto p = parse_tinker_path(std::string{"tinker://r1/"} + kind + "/000080");
    REQUIRE(p);
    CHECK(p->kind == kind);
  }
}

TEST_CASE("tinker path: unknown kind is invalid_argument") {
  for (auto uri : {"tinker://r1/checkpoints/x", "tinker://r1/Weights/x",
                   "tinker://r1/weight/x", "tinker://r1/sampler/x"}) {
    INFO(uri);
    check_invalid(parse_tinker_path(uri).error(), "tinker_path");
  }
}

TEST_CASE("tinker path: exactly three parts") {
  for (auto uri : {"tinker://r1/weights", "tinker://r1", "tinker://",
                   "tinker://r1/weights/a/b", "tinker://r1/weights/x/"}) {
    INFO(uri);
    check_invalid(parse_tinker_path(uri).error(), "tinker_path");
  }
}

TEST_CASE("tinker path: parts must be non-empty") {
  for (auto uri : {"tinker:///weights/x", "tinker://r1//x", "tinker://r1/weights/",
                   "tinker:////"}) {
    INFO(uri);
    check_invalid(parse_tinker_path(uri).error(), "tinker_path");
  }
}

TEST_CASE("tinker path: scheme must be tinker://") {
  for (auto uri : {"", "r1/weights/x", "tinker:/r1/weights/x", "https://r1/weights/x",
                   "TINKER://r1/weights/x", " tinker://r1/weights/x"}) {
    INFO(uri);
    check_invalid(parse_tinker_path(uri).error(), "tinker_path");
  }
}

TEST_CASE("tinker path: dot segments, spaces, control characters are refused") {
  for (auto uri : {"tinker://../weights/x", "tinker://./weights/x",
                   "tinker://r1/weights/..", "tinker://r1/weights/.",
                   "tinker://r 1/weights/x", "tinker://r1/weights/x ",
                   "tinker://r1/weights/a\nb", "tinker://r1\t/weights/x"}) {
    INFO(uri);
    check_invalid(parse_tinker_path(uri).error(), "tinker_path");
  }
}

TEST_CASE("tinker path: name characters that would change the URL are refused") {
  for (auto uri : {"tinker://r1/weights/x?y", "tinker://r1/weights/x#y",
                   "tinker://r1/weights/x%2F", "tinker://r1/weights/x\\y"}) {
    INFO(uri);
    check_invalid(parse_tinker_path(uri).error(), "tinker_path");
  }
}

TEST_CASE("tinker path: run ids are opaque") {
  for (auto id : {"abc", "3f2a9c1e:train:0", "run@host", "r?1", "r%1", "r#1"}) {
    INFO(id);
    auto p = parse_tinker_path(std::string{"tinker://"} + id + "/weights/x");
    REQUIRE(p);
    CHECK(p->run_id == id);
  }
}

// -- URLs --------------------------------------------------------------------------

TEST_CASE("base URL: empty means the production default") {
  CHECK(tinker_base_url("")
        == "https://tinker.thinkingmachines.dev/services/tinker-prod");
  CHECK(tinker_base_url("   ") == tinker_default_base_url);
}

TEST_CASE("base URL: the environment value overrides, trailing slash stripped") {
  CHECK(tinker_base_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080");
  CHECK(tinker_base_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080");
  CHECK(tinker_base_url("https://proxy.example/tinker//") == "https://proxy.example/tinker");
  CHECK(tinker_base_url(" https://proxy.example/tinker/\n") == "https://proxy.example/tinker");
}

TEST_CASE("base URL: checked form refuses non-http URLs") {
  CHECK(checked_tinker_base_url("") == std::string{tinker_default_base_url});
  CHECK(checked_tinker_base_url("http://127.0.0.1:9/x/") == std::string{"http://127.0.0.1:9/x"});
  for (auto v : {"tinker.example", "ftp://tinker.example", "http://", "https://h/p?x=1",
                 "https://h/p#f"}) {
    INFO(v);
    auto r = checked_tinker_base_url(v);
    REQUIRE_FALSE(r);
    check_invalid(r.error(), "TINKER_BASE_URL");
  }
}

TEST_CASE("URL: ttl target") {
  auto p = parse_tinker_path("tinker://run-1/weights/step-40");
  REQUIRE(p);
  CHECK(ttl_target(*p) == "/api/v1/training_runs/run-1/checkpoints/weights/step-40/ttl");
}

TEST_CASE("URL: archive target") {
  auto p = parse_tinker_path("tinker://run-1/sampler_weights/000080");
  REQUIRE(p);
  CHECK(archive_target(*p)
        == "/api/v1/training_runs/run-1/checkpoints/sampler_weights/000080/archive");
}

TEST_CASE("URL: checkpoint id keeps its slash, not percent-encoded") {
  auto p = parse_tinker_path("tinker://r/external_weights/a:b@c");
  REQUIRE(p);
  auto t = archive_target(*p);
  CHECK(t == "/api/v1/training_runs/r/checkpoints/external_weights/a:b@c/archive");
  CHECK(t.find("%2F") == std::string::npos);
}

TEST_CASE("URL: run id colons stay, unsafe characters are percent-encoded") {
  auto p = parse_tinker_path("tinker://" + std::string{run} + "/weights/s1");
  REQUIRE(p);
  CHECK(ttl_target(*p) == "/api/v1/training_runs/" + std::string{run}
                            + "/checkpoints/weights/s1/ttl");
  tinker_path odd{"a?b#c%d e/f", "weights", "s1"};
  CHECK(ttl_target(odd)
        == "/api/v1/training_runs/a%3Fb%23c%25d%20e%2Ff/checkpoints/weights/s1/ttl");
  CHECK(percent_encode_path_segment("AZaz09-._~!$&'()*+,;=:@") == "AZaz09-._~!$&'()*+,;=:@");
  CHECK(percent_encode_path_segment("\xC3\xA9") == "%C3%A9");
}

TEST_CASE("URL: targets are appended under the base URL's path") {
  auto p = parse_tinker_path("tinker://r/weights/s1");
  REQUIRE(p);
  CHECK(tinker_url(tinker_base_url(""), archive_target(*p))
        == "https://tinker.thinkingmachines.dev/services/tinker-prod"
           "/api/v1/training_runs/r/checkpoints/weights/s1/archive");
  CHECK(tinker_url("http://127.0.0.1:8080/", "/x") == "http://127.0.0.1:8080/x");
  CHECK(tinker_url("http://127.0.0.1:8080", "x") == "http://127.0.0.1:8080/x");
}

// -- API key -----------------------------------------------------------------------

TEST_CASE("API key: tml- and JWT keys are accepted") {
  CHECK_FALSE(check_tinker_api_key("tml-0123456789abcdef"));
  CHECK_FALSE(check_tinker_api_key("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"));
}

TEST_CASE("API key: empty is not_configured") {
  auto err = check_tinker_api_key("");
  check_kind(err, errc::not_configured);
  CHECK(info_of(err)->field == "TINKER_API_KEY");
}

TEST_CASE("API key: other values are invalid_argument and never echoed") {
  for (auto key : {"sk_live_abcdefgh", "TML-abcdef", "tml", "tml-", "eyJ",
                   "Bearer tml-abcdef", "tml-abc def", "tml-abcdef\r\nX-Evil: 1",
                   "abcdefghijkl"}) {
    INFO(redact_secrets(key));
    auto err = check_tinker_api_key(key);
    check_invalid(err, "TINKER_API_KEY");
    auto text = render(err);
    if (std::string_view{key}.size() > 4)
      CHECK(text.find(key) == std::string::npos);
  }
}

TEST_CASE("headers: X-API-Key, Accept and Content-Type") {
  auto h = tinker_headers("tml-key123456", true);
  REQUIRE(h.size() == 3);
  CHECK(h[0] == http_header{"X-API-Key", "tml-key123456"});
  CHECK(h[1] == http_header{"Accept", "application/json"});
  CHECK(h[2] == http_header{"Content-Type", "application/json"});
  CHECK(tinker_headers("tml-key123456", false).size() == 2);
}

// -- TTL body ----------------------------------------------------------------------

TEST_CASE("TTL body: a positive ttl") {
  CHECK(encode_ttl_body(3600) == std::string{R"({"ttl_seconds":3600})"});
  CHECK(encode_ttl_body(1) == std::string{R"({"ttl_seconds":1})"});
  CHECK(encode_ttl_body(INT64_MAX)
        == std::string{R"({"ttl_seconds":9223372036854775807})"});
}

TEST_CASE("TTL body: null removes the expiry") {
  CHECK(encode_ttl_body(std::nullopt) == std::string{R"({"ttl_seconds":null})"});
}

TEST_CASE("TTL body: ttl <= 0 is invalid_argument") {
  for (int64_t ttl : {int64_t{0}, int64_t{-1}, INT64_MIN}) {
    INFO(ttl);
    auto r = encode_ttl_body(ttl);
    REQUIRE_FALSE(r);
    check_invalid(r.error(), "ttl_seconds");
  }
}

// -- archive: redirects ------------------------------------------------------------

TEST_CASE("archive: 302 Location with Expires") {
  auto r = decode_archive_response(302, signed_link, "Wed, 25 Nov 2026 14:00:00 GMT",
                                   "", fixed_now());
  REQUIRE(r);
  CHECK(r->url == signed_link);
  CHECK(r->expires == at("2026-11-25T14:00:00Z"));
}

TEST_CASE("archive: 302 without Expires expires in 15 minutes") {
  auto r = decode_archive_response(302, signed_link, "", "", fixed_now());
  REQUIRE(r);
  CHECK(r->url == signed_link);
  CHECK(r->expires == fixed_now() + 15min);
}

TEST_CASE("archive: 302 with unparseable Expires expires in 15 minutes") {
  for (auto e : {"0", "-1", "never", "2026-11-25T14:00:00Z", "Wed, 25 Nov 2026"}) {
    INFO(e);
    auto r = decode_archive_response(302, signed_link, e, "", fixed_now());
    REQUIRE(r);
    CHECK(r->expires == fixed_now() + 15min);
  }
}

TEST_CASE("archive: Expires in RFC 850 and asctime forms") {
  auto a = decode_archive_response(302, signed_link,
                                   "Wednesday, 25-Nov-26 14:00:00 GMT", "", fixed_now());
  REQUIRE(a);
  CHECK(a->expires == at("2026-11-25T14:00:00Z"));
  auto b = decode_archive_response(302, signed_link, "Wed Nov 25 14:00:00 2026", "",
                                   fixed_now());
  REQUIRE(b);
  CHECK(b->expires == at("2026-11-25T14:00:00Z"));
}

TEST_CASE("archive: 301 303 307 308 are redirects too") {
  for (unsigned s : {301u, 303u, 307u, 308u}) {
    INFO(s);
    auto r = decode_archive_response(s, signed_link, "", "", fixed_now());
    REQUIRE(r);
    CHECK(r->url == signed_link);
  }
}

TEST_CASE("archive: Location whitespace is trimmed") {
  auto r = decode_archive_response(302, "  " + std::string{signed_link} + " ", "", "",
                                   fixed_now());
  REQUIRE(r);
  CHECK(r->url == signed_link);
}

TEST_CASE("archive: 3xx without Location is inference_error") {
  auto r = decode_archive_response(302, "", "", "<html>moved</html>", fixed_now());
  REQUIRE_FALSE(r);
  check_kind(r.error(), errc::inference_error);
  CHECK(info_of(r.error())->body == "<html>moved</html>");
  CHECK_FALSE(decode_archive_response(307, "   ", "", "", fixed_now()));
}

TEST_CASE("archive: a relative or non-http Location is inference_error without its query") {
  // The third: a "://" in the query of a relative Location (found by
  // fuzz/tinker_response_fuzz; the query before it reached the message).
  for (auto loc : {"/download/archive.tar?X-Goog-Signature=deadbeefcafe",
                   "gs://bucket/a.tar?X-Goog-Signature=deadbeefcafe",
                   "/download/a.tar?X-Goog-Signature=deadbeefcafe&next=https://x.example/"}) {
    INFO(redact_url(loc));
    auto r = decode_archive_response(302, loc, "", std::string{"see "} + loc,
                                     fixed_now());
    REQUIRE_FALSE(r);
    check_kind(r.error(), errc::inference_error);
    check_no_signature(r.error());
  }
}

// -- archive: JSON bodies ----------------------------------------------------------

TEST_CASE("archive: 200 JSON url and expires") {
  auto body = R"({"url": ")" + std::string{signed_link}
              + R"(", "expires": "2026-11-25T13:30:00Z"})";
  auto r = decode_archive_response(200, "", "", body, fixed_now());
  REQUIRE(r);
  CHECK(r->url == signed_link);
  CHECK(r->expires == at("2026-11-25T13:30:00Z"));
}

TEST_CASE("archive: expires with offset and fractional seconds") {
  auto r = decode_archive_response(
    200, "", "", R"({"url":"https://s.example/a?sig=deadbeefcafe","expires":"2026-11-25T14:30:00.250+01:00"})",
    fixed_now());
  REQUIRE(r);
  CHECK(r->expires == at("2026-11-25T13:30:00Z") + 250ms);
  auto py = decode_archive_response(
    200, "", "", R"({"url":"https://s.example/a","expires":"2026-11-25T13:30:00.123456+00:00"})",
    fixed_now());
  REQUIRE(py);
  CHECK(py->expires == at("2026-11-25T13:30:00Z") + 123456us);
}

TEST_CASE("archive: expires absent or unparseable -> now + 15 minutes") {
  for (auto body : {R"({"url":"https://s.example/a"})",
                    R"({"url":"https://s.example/a","expires":null})",
                    R"({"url":"https://s.example/a","expires":1795612500})",
                    R"({"url":"https://s.example/a","expires":"tomorrow"})",
                    R"({"url":"https://s.example/a","expires":"2026-13-01T00:00:00Z"})"}) {
    INFO(body);
    auto r = decode_archive_response(200, "", "", body, fixed_now());
    REQUIRE(r);
    CHECK(r->expires == fixed_now() + 15min);
  }
}

TEST_CASE("archive: a bare JSON string") {
  auto r = decode_archive_response(200, "", "", "\"" + std::string{signed_link} + "\"",
                                   fixed_now());
  REQUIRE(r);
  CHECK(r->url == signed_link);
  CHECK(r->expires == fixed_now() + 15min);
}

TEST_CASE("archive: keys signed_url, archive_url, checkpoint_archive_url") {
  for (auto key : {"signed_url", "archive_url", "checkpoint_archive_url", "url"}) {
    INFO(key);
    auto body = std::string{R"({")"} + key + R"(":"https://s.example/a.tar?sig=1"})";
    auto r = decode_archive_response(200, "", "", body, fixed_now());
    REQUIRE(r);
    CHECK(r->url == "https://s.example/a.tar?sig=1");
  }
}

TEST_CASE("archive: url wins over the lenient keys") {
  auto r = decode_archive_response(
    200, "", "", R"({"signed_url":"https://b.example/x","url":"https://a.example/x"})",
    fixed_now());
  REQUIRE(r);
  CHECK(r->url == "https://a.example/x");
}

TEST_CASE("archive: escaped slashes in the JSON string are decoded") {
  auto r = decode_archive_response(200, "", "", R"({"url":"https:\/\/s.example\/a?x=1"})",
                                   fixed_now());
  REQUIRE(r);
  CHECK(r->url == "https://s.example/a?x=1");
}

TEST_CASE("archive: no URL in the response is inference_error with the body") {
  for (auto body : {"{}", R"({"detail":"ok"})", R"({"url":""})", R"({"url":null})",
                    R"({"url":42})", R"({"link":"https://s.example/a"})", "[]",
                    "null", "42", R"([" https://s.example/a"])"}) {
    INFO(body);
    auto r = decode_archive_response(200, "", "", body, fixed_now());
    REQUIRE_FALSE(r);
    check_kind(r.error(), errc::inference_error);
    CHECK(info_of(r.error())->body == body);
  }
}

TEST_CASE("archive: an empty bare string is inference_error") {
  auto r = decode_archive_response(200, "", "", R"("")", fixed_now());
  REQUIRE_FALSE(r);
  check_kind(r.error(), errc::inference_error);
}

TEST_CASE("archive: a body that is not JSON is inference_error with the body") {
  for (auto body : {"", "<html>ok</html>", R"({"url":"https://s.example/a")"}) {
    INFO(body);
    auto r = decode_archive_response(200, "", "", body, fixed_now());
    REQUIRE_FALSE(r);
    check_kind(r.error(), errc::inference_error);
    CHECK(info_of(r.error())->body == body);
  }
}

TEST_CASE("archive: a non-http url in JSON is inference_error without its query") {
  for (auto body : {R"({"url":"gs://bucket/a.tar?X-Goog-Signature=deadbeefcafe"})",
                    R"({"url":"gs:\/\/bucket\/a.tar?X-Goog-Signature=deadbeefcafe"})",
                    R"("ftp://h/a?X-Goog-Signature=deadbeefcafe")",
                    R"({"signed_url":"not a url?X-Goog-Signature=deadbeefcafe"})"}) {
    INFO("case " << body[2]);
    auto r = decode_archive_response(200, "", "", body, fixed_now());
    REQUIRE_FALSE(r);
    check_kind(r.error(), errc::inference_error);
    check_no_signature(r.error());
  }
}

TEST_CASE("archive: a malformed response with a signed URL hides its query string") {
  // Valid URL but under an unknown key: the body is attached, redacted.
  auto body = R"({"link": ")" + std::string{signed_link} + R"("})";
  auto r = decode_archive_response(200, "", "", body, fixed_now());
  REQUIRE_FALSE(r);
  check_no_signature(r.error());
  CHECK(render(r.error()).find("storage.example.com/ckpt/archive.tar") != std::string::npos);
}

TEST_CASE("archive: other statuses are http_error with status and detail") {
  auto r = decode_archive_response(404, "", "", R"({"detail":"Checkpoint not found"})",
                                   fixed_now());
  REQUIRE_FALSE(r);
  check_kind(r.error(), errc::http_error);
  CHECK(info_of(r.error())->http_status == 404);
  CHECK(info_of(r.error())->message == "Tinker HTTP 404: Checkpoint not found");
  for (unsigned s : {100u, 304u, 400u, 401u, 500u, 503u}) {
    INFO(s);
    auto e = decode_archive_response(s, signed_link, "", "{}", fixed_now());
    REQUIRE_FALSE(e);
    check_kind(e.error(), errc::http_error);
    CHECK(info_of(e.error())->http_status == s);
  }
}

TEST_CASE("archive: the signed URL never appears in rendered output") {
  auto r = decode_archive_response(302, signed_link, "", "", fixed_now());
  REQUIRE(r);
  // The URL itself is the result; anything rendered from it is redacted.
  CHECK(redact_url(r->url) == "https://storage.example.com/ckpt/archive.tar?[REDACTED]");
  auto e = decode_archive_response(500, "", "",
                                   R"({"detail":"failed to sign )" + std::string{signed_link}
                                     + R"("})",
                                   fixed_now());
  REQUIRE_FALSE(e);
  check_no_signature(e.error());
}

// -- error bodies ------------------------------------------------------------------

TEST_CASE("error detail: a string detail") {
  CHECK(decode_tinker_error_detail(R"({"detail":"Invalid checkpoint id"})")
        == "Invalid checkpoint id");
}

TEST_CASE("error detail: an object or array detail is serialized JSON") {
  CHECK(decode_tinker_error_detail(R"({"detail":{"code":"not_found","id":7}})")
        == R"({"code":"not_found","id":7})");
  CHECK(decode_tinker_error_detail(
          R"({"detail":[{"loc":["body","ttl_seconds"],"msg":"must be > 0","type":"value_error"}]})")
        == R"([{"loc":["body","ttl_seconds"],"msg":"must be > 0","type":"value_error"}])");
  CHECK(decode_tinker_error_detail(R"({"detail":42})") == "42");
}

TEST_CASE("error detail: empty when absent, null or not JSON") {
  for (auto body : {"", "{}", R"({"detail":null})", R"({"error":"x"})", "[]",
                    "Internal Server Error", R"("detail")"}) {
    INFO(body);
    CHECK(decode_tinker_error_detail(body).empty());
  }
}

TEST_CASE("error from status: http_error with status, body and detail") {
  auto err = tinker_error_from_status(400, R"({"detail":"ttl_seconds must be positive"})");
  check_kind(err, errc::http_error);
  CHECK(info_of(err)->http_status == 400);
  CHECK(info_of(err)->message == "Tinker HTTP 400: ttl_seconds must be positive");
  CHECK(info_of(err)->body == R"({"detail":"ttl_seconds must be positive"})");
  auto plain = tinker_error_from_status(502, "Bad Gateway");
  CHECK(info_of(plain)->message == "Tinker HTTP 502");
  CHECK(info_of(plain)->body == "Bad Gateway");
}

TEST_CASE("error from status: a long detail is truncated in the message") {
  std::string detail(2000, 'x');
  auto err = tinker_error_from_status(500, R"({"detail":")" + detail + "\"}");
  CHECK(info_of(err)->message.size() < 600);
  CHECK(info_of(err)->message.substr(info_of(err)->message.size() - 3) == "...");
}

TEST_CASE("error from status: an API key in the body is redacted") {
  auto err = tinker_error_from_status(401, R"({"detail":"bad key tml-secret0123456789"})");
  CHECK(render(err).find("tml-secret0123456789") == std::string::npos);
}
