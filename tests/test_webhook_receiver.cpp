// The webhook receiver on real loopback sockets: the
// token check (401, nothing handed on), routes, bounded and malformed bodies
// (typed, counted), TLS, the token's format and secrecy, the listener rules,
// and concurrent deliveries (also run under ASan: scripts/test's sanitizer
// tree builds every test program).
#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/redact.hpp"
#include "sail_tinker/net/sail_codec.hpp"
#include "sail_tinker/net/webhook_receiver.hpp"
#include "support/certs.hpp"
#include "support/io_threads.hpp"
#include "support/sync_http.hpp"

using namespace sail;
using namespace std::chrono_literals;
using sail::test::header_list;
using sail::test::io_threads;
using sail::test::sync_http;

namespace {

/// What the sinks saw.
struct recorder {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<webhook_delivery> deliveries;
  std::map<webhook_rejection, int> rejections;

  webhook_receiver::delivery_sink delivery_sink() {
    return [this](webhook_delivery d) {
      std::lock_guard guard{mtx};
      deliveries.push_back(std::move(d));
      cv.notify_all();
    };
  }

  webhook_receiver::rejection_sink rejection_sink() {
    return [this](webhook_rejection r) {
      std::lock_guard guard{mtx};
      ++rejections[r];
      cv.notify_all();
    };
  }

  /// Waits (bounded) until `pred` holds under the lock.
  template <class Pred>
  bool wait(Pred pred) {
    std::unique_lock lock{mtx};
    return cv.wait_for(lock, 30s, [&] { return pred(); });
  }

  size_t delivered() {
    std::lock_guard guard{mtx};
    return deliveries.size();
  }

  int rejected(webhook_rejection r) {
    std::lock_guard guard{mtx};
    return rejections[r];
  }
};

std::string body_for(const std::string& id, const std::string& status = "completed") {
  return R"({"id":")" + id + R"(","object":"response","status":")" + status
         + R"(","output":[]})";
}

struct receiver_fixture {
  io_threads io;
  recorder rec;
  std::unique_ptr<webhook_receiver> rx;

  explicit receiver_fixture(webhook_options opts = {}) {
    opts.enabled = true;
    if (opts.body_limit == webhook_options{}.body_limit)
      opts.body_limit = 4096;
    auto r = webhook_receiver::start(io.context(), opts, rec.delivery_sink(),
                                     rec.rejection_sink());
    if (!r)
      throw std::runtime_error("receiver did not start: " + render(r.error()));
    rx = std::move(*r);
  }

  ~receiver_fixture() {
    rx->stop();
  }

  header_list auth(const std::string& token) const {
    return {{"Authorization", "Bearer " + token}, {"Content-Type", "application/json"}};
  }

  header_list good() const {
    return auth(rx->endpoint().token);
  }
};

} // namespace

TEST_CASE("webhook token: generated format, validation, redaction", "[webhook]") {
  auto a = make_webhook_token();
  auto b = make_webhook_token();
  CHECK(a != b);
  CHECK(a.size() == 4 + 64);
  CHECK(a.rfind("whk_", 0) == 0);
  CHECK_FALSE(validate_webhook_token(a, "t"));
  for (std::string bad : {"", "whk_short", "token-without-prefix-0123456789abcdef",
                          "whk_0123456789abcdef with space", "whk_0123456789abcdef\n"}) {
    INFO(bad);
    auto err = validate_webhook_token(bad, "webhook.token");
    REQUIRE(err);
    CHECK(code_of(err) == errc::invalid_argument);
    CHECK(info_of(err)->field == "webhook.token");
  }
  // Anything printed passes redact_secrets: the token shape is hidden, in a
  // JSON body as in a header.
  auto text = R"({"metadata":{"webhook_token":")" + a + R"("}} Authorization: Bearer )" + a;
  auto shown = redact_secrets(text);
  CHECK(shown.find(a) == std::string::npos);
  CHECK(shown.find(a.substr(4, 16)) == std::string::npos);
}

TEST_CASE("webhook receiver: the endpoint derived from the bound address", "[webhook]") {
  receiver_fixture f;
  CHECK(f.rx->port() != 0);
  CHECK(f.rx->endpoint().url
        == "http://127.0.0.1:" + std::to_string(f.rx->port()) + "/sail/webhook");
  CHECK_FALSE(f.rx->tls());
  // A configured token is used as given; a public URL as well.
  webhook_options o;
  o.token = "whk_0123456789abcdef0123456789abcdef";
  o.public_url = "https://hooks.example.com/node-a/sail";
  receiver_fixture g{o};
  CHECK(g.rx->endpoint().token == o.token);
  CHECK(g.rx->endpoint().url == o.public_url);
}

TEST_CASE("webhook receiver: a delivery without the right token gets 401 and "
          "changes nothing",
          "[webhook]") {
  receiver_fixture f;
  sync_http c{"127.0.0.1", f.rx->port()};
  auto token = f.rx->endpoint().token;
  auto wrong = token;
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  std::vector<header_list> attempts{
    {},                                          // no Authorization
    f.auth(wrong),                               // one character off
    f.auth(token.substr(0, token.size() - 1)),  // a prefix of it
    f.auth(token + "0"),                         // longer
    {{"Authorization", "Basic " + token}},       // another scheme
    {{"Authorization", token}},                  // no scheme
    {{"Authorization", "Bearer "}},              // empty
  };
  for (auto& headers : attempts) {
    auto r = c.post("/sail/webhook", body_for("resp_1"), headers);
    REQUIRE(r.ok());
    CHECK(r.status() == 401);
    CHECK(r.header("WWW-Authenticate") == "Bearer");
    CHECK(r.body().find(token) == std::string::npos);
    CHECK(r.body().find(token.substr(4, 16)) == std::string::npos);
  }
  CHECK(f.rec.rejected(webhook_rejection::unauthorized)
        == static_cast<int>(attempts.size()));
  CHECK(f.rec.delivered() == 0);
  // The scheme is case-insensitive (RFC 9110); the right token passes.
  auto ok = c.post("/sail/webhook", body_for("resp_1"),
                   {{"Authorization", "bearer " + token}});
  REQUIRE(ok.ok());
  CHECK(ok.status() == 200);
  REQUIRE(f.rec.wait([&] { return f.rec.deliveries.size() == 1; }));
  CHECK(f.rec.deliveries[0].response_id == "resp_1");
  CHECK(f.rec.deliveries[0].body == body_for("resp_1"));
  // The body arrives parsed: the worker decodes this value, it never
  // parses the body again.
  REQUIRE(f.rec.deliveries[0].parsed);
  auto& doc = f.rec.deliveries[0].parsed->doc;
  REQUIRE(doc.is_object());
  CHECK(doc.as_object().at("id").as_string() == "resp_1");
}

TEST_CASE("webhook receiver: routes other than POST <path>", "[webhook]") {
  receiver_fixture f;
  sync_http c{"127.0.0.1", f.rx->port()};
  auto r1 = c.get("/sail/webhook", f.good());
  REQUIRE(r1.ok());
  CHECK(r1.status() == 405);
  CHECK(r1.header("Allow") == "POST");
  auto r2 = c.post("/other", body_for("resp_1"), f.good());
  REQUIRE(r2.ok());
  CHECK(r2.status() == 404);
  // A query string does not change the route.
  auto r3 = c.post("/sail/webhook?x=1", body_for("resp_2"), f.good());
  REQUIRE(r3.ok());
  CHECK(r3.status() == 200);
  CHECK(f.rec.rejected(webhook_rejection::bad_route) == 2);
  REQUIRE(f.rec.wait([&] { return f.rec.deliveries.size() == 1; }));
  CHECK(f.rec.deliveries[0].response_id == "resp_2");
}

TEST_CASE("webhook receiver: oversized and malformed bodies are refused, typed "
          "and counted",
          "[webhook]") {
  receiver_fixture f; // body_limit 4096
  {
    sync_http c{"127.0.0.1", f.rx->port()};
    auto big = R"({"id":"resp_big","status":"completed","pad":")" + std::string(8000, 'x')
               + R"("})";
    auto r = c.post("/sail/webhook", big, f.good());
    REQUIRE(r.ok());
    CHECK(r.status() == 413);
  }
  REQUIRE(f.rec.wait([&] { return f.rec.rejections[webhook_rejection::too_large] == 1; }));
  sync_http c{"127.0.0.1", f.rx->port()};
  for (std::string bad : {std::string{"not json"}, std::string{"[1,2]"},
                          std::string{R"({"status":"completed"})"},
                          std::string{R"({"id":"","status":"completed"})"},
                          std::string{R"({"id":"resp_x"})"}, std::string{}}) {
    INFO(bad);
    auto r = c.post("/sail/webhook", bad, f.good());
    REQUIRE(r.ok());
    CHECK(r.status() == 400);
    auto j = r.json();
    REQUIRE(j.is_object());
    CHECK(j.at("error").at("type") == "malformed");
    // The decoder's typed message (inference_error), not the body.
    CHECK_FALSE(j.at("error").at("message").as_string().empty());
  }
  CHECK(f.rec.rejected(webhook_rejection::malformed) == 6);
  CHECK(f.rec.delivered() == 0);
  // The connection still serves a good delivery afterwards.
  auto r = c.post("/sail/webhook", body_for("resp_ok"), f.good());
  REQUIRE(r.ok());
  CHECK(r.status() == 200);
  REQUIRE(f.rec.wait([&] { return f.rec.deliveries.size() == 1; }));
}

TEST_CASE("webhook receiver: listener rules (plaintext off loopback, public URL, "
          "TLS files, path)",
          "[webhook]") {
  io_threads io;
  auto start = [&](webhook_options o) {
    o.enabled = true;
    return webhook_receiver::start(io.context(), o, [](webhook_delivery) {});
  };
  auto field_of = [](const caf::error& e) {
    auto* info = info_of(e);
    return info != nullptr ? info->field : std::string{};
  };
  {
    webhook_options o;
    o.host = "0.0.0.0";
    o.public_url = "https://hooks.example.com/a";
    auto r = start(o);
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::invalid_argument);
    CHECK(field_of(r.error()) == "webhook.insecure-plaintext");
  }
  {
    // Explicitly allowed: binds; every interface needs a public URL.
    webhook_options o;
    o.host = "0.0.0.0";
    o.allow_plaintext = true;
    auto r = start(o);
    REQUIRE_FALSE(r);
    CHECK(field_of(r.error()) == "webhook.public-url");
    o.public_url = "https://hooks.example.com/a";
    auto ok = start(o);
    REQUIRE(ok);
    CHECK((*ok)->endpoint().url == o.public_url);
    (*ok)->stop();
  }
  for (std::string bad : {"ftp://x/y", "not a url", "https://user:pw@x/y", "http://x/y#f"}) {
    webhook_options o;
    o.public_url = bad;
    auto r = start(o);
    INFO(bad);
    REQUIRE_FALSE(r);
    CHECK(field_of(r.error()) == "webhook.public-url");
  }
  {
    webhook_options o;
    o.tls_certificate_file = "/nonexistent/cert.pem";
    auto r = start(o);
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::invalid_argument);
  }
  {
    webhook_options o;
    o.path = "no-slash";
    auto r = start(o);
    REQUIRE_FALSE(r);
    CHECK(field_of(r.error()) == "webhook.path");
  }
  {
    webhook_options o;
    o.token = "sk_not_a_webhook_token_0123456789";
    auto r = start(o);
    REQUIRE_FALSE(r);
    CHECK(field_of(r.error()) == "webhook.token");
    CHECK(render(r.error()).find("sk_not_a_webhook") == std::string::npos);
  }
}

TEST_CASE("webhook receiver: TLS", "[webhook][tls]") {
  auto dir = sail::test::make_temp_dir("webhook-tls");
  auto certs = sail::test::make_test_certs(dir, {"DNS:localhost", "IP:127.0.0.1"});
  webhook_options o;
  o.tls_certificate_file = certs.server_cert;
  o.tls_key_file = certs.server_key;
  {
    receiver_fixture f{o};
    CHECK(f.rx->tls());
    CHECK(f.rx->endpoint().url.rfind("https://127.0.0.1:", 0) == 0);
    io_threads io;
    http_client_options copts;
    copts.tls.ca_file = certs.ca_cert;
    auto client = http_client::make(io.context(), copts);
    REQUIRE(client);
    http_request req;
    req.method = boost::beast::http::verb::post;
    req.url = f.rx->endpoint().url;
    req.headers = {{"Authorization", "Bearer " + f.rx->endpoint().token},
                   {"Content-Type", "application/json"}};
    req.body = body_for("resp_tls");
    auto r = sail::test::fetch(*client, req);
    REQUIRE(r);
    CHECK(r->status == 200);
    REQUIRE(f.rec.wait([&] { return f.rec.deliveries.size() == 1; }));
    CHECK(f.rec.deliveries[0].response_id == "resp_tls");
    // Plaintext to the TLS listener gets no HTTP answer.
    sync_http plain{"127.0.0.1", f.rx->port(), 5s};
    auto p = plain.post("/sail/webhook", body_for("resp_plain"), f.good());
    CHECK_FALSE(p.ok());
    CHECK(f.rec.delivered() == 1);
  }
  sail::test::remove_dir(dir);
}

TEST_CASE("webhook receiver: concurrent deliveries, each handed on once",
          "[webhook][concurrency]") {
  receiver_fixture f;
  constexpr int threads = 8;
  constexpr int per_thread = 40;
  std::atomic<int> ok{0};
  std::atomic<int> unauthorized{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      sync_http c{"127.0.0.1", f.rx->port()};
      for (int i = 0; i < per_thread; ++i) {
        auto id = "resp_" + std::to_string(t) + "_" + std::to_string(i);
        // Every third delivery of a thread carries a wrong token.
        auto headers = i % 3 == 2 ? f.auth("whk_wrong_wrong_wrong_wrong") : f.good();
        auto r = c.post("/sail/webhook", body_for(id), headers);
        if (r.ok() && r.status() == 200)
          ++ok;
        else if (r.ok() && r.status() == 401)
          ++unauthorized;
      }
    });
  for (auto& t : ts)
    t.join();
  int want_ok = threads * (per_thread - per_thread / 3);
  CHECK(ok == want_ok);
  CHECK(unauthorized == threads * (per_thread / 3));
  REQUIRE(f.rec.wait([&] { return f.rec.deliveries.size() == static_cast<size_t>(want_ok); }));
  std::set<std::string> ids;
  for (auto& d : f.rec.deliveries)
    ids.insert(d.response_id);
  CHECK(ids.size() == static_cast<size_t>(want_ok));
  CHECK(f.rec.rejected(webhook_rejection::unauthorized) == threads * (per_thread / 3));
}
