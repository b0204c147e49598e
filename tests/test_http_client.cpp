// http_client over real loopback sockets: against Debian's nginx (success,
// statuses, keep-alive reuse, size limits, redirects) and against scripted
// Asio servers (deadlines, resets, truncation, stale pooled connections,
// overload, proxies).
#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/http_client.hpp"
#include "sail_tinker/net/proxy.hpp"
#include "sail_tinker/net/url.hpp"
#include "support/io_threads.hpp"
#include "support/loopback.hpp"
#include "support/nginx.hpp"

using namespace sail;
using namespace sail::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using verb = boost::beast::http::verb;

namespace {

const char* nginx_locations = R"(
    location = /ok { return 200 '{"ok":true}'; }
    location = /s503 { add_header Retry-After 1 always; return 503 '{"error":"busy"}'; }
    location = /s404 { return 404 'nope'; }
    location = /conn { return 200 "$connection"; }
    location = /redir { return 302 /ok; }
    location = /bighdr { add_header X-Big "@BIG@" always; return 200 'x'; }
    location /files/ { alias @DIR@/www/; }
)";

std::string locations() {
  std::string s = nginx_locations;
  auto pos = s.find("@BIG@");
  s.replace(pos, 5, std::string(4000, 'h'));
  return s;
}

http_client make_client(io_threads& io, http_client_options opts = {}) {
  auto c = http_client::make(io.context(), std::move(opts));
  REQUIRE(c);
  return std::move(*c);
}

std::string message_of(const caf::error& err) {
  auto info = info_of(err);
  return info != nullptr ? info->message : render(err);
}

} // namespace

TEST_CASE("parse_http_url splits absolute URLs") {
  auto u = parse_http_url("https://Example.COM/a/b?x=1&sig=secret");
  REQUIRE(u);
  CHECK(u->scheme == "https");
  CHECK(u->host == "example.com");
  CHECK(u->port == 443);
  CHECK(u->target == "/a/b?x=1&sig=secret");
  CHECK(u->host_header() == "example.com");
  CHECK_FALSE(u->host_is_ip);
  auto v = parse_http_url("http://[::1]:8080");
  REQUIRE(v);
  CHECK(v->host == "::1");
  CHECK(v->host_is_ip);
  CHECK(v->target == "/");
  CHECK(v->authority() == "[::1]:8080");
  auto bad = parse_http_url("ftp://x/y?token=sk_live_secret");
  REQUIRE_FALSE(bad);
  CHECK(code_of(bad.error()) == errc::invalid_argument);
  CHECK(message_of(bad.error()).find("sk_live_secret") == std::string::npos);
  CHECK_FALSE(parse_http_url("/relative"));
  // Found by fuzz/http_response_fuzz: Boost.URL takes the first '@' as the
  // end of the userinfo and leaves a path without its leading '/'.
  auto two_at = parse_http_url("http://x@127.0.0.1:8080@a/next?sig=s3cr3t");
  REQUIRE_FALSE(two_at);
  CHECK(code_of(two_at.error()) == errc::invalid_argument);
  CHECK(message_of(two_at.error()).find("s3cr3t") == std::string::npos);
}

TEST_CASE("proxy_settings: NO_PROXY matching and proxy choice") {
  proxy_settings p;
  p.http_proxy = "proxy.local:3128";
  p.https_proxy = "http://proxy.local:3129";
  p.no_proxy = "localhost, .internal.example, 10.0.0.0/8 ,192.168.1.5,api.x:8443";
  CHECK(p.bypass("localhost", 80));
  CHECK(p.bypass("a.internal.example", 443));
  CHECK(p.bypass("internal.example", 443));
  CHECK_FALSE(p.bypass("notinternal.example", 443));
  CHECK(p.bypass("10.1.2.3", 80));
  CHECK_FALSE(p.bypass("11.1.2.3", 80));
  CHECK(p.bypass("192.168.1.5", 80));
  CHECK(p.bypass("api.x", 8443));
  CHECK_FALSE(p.bypass("api.x", 443));
  auto https = parse_http_url("https://sail.example/v1");
  auto http = parse_http_url("http://sail.example/v1");
  auto direct = parse_http_url("http://localhost:9/");
  REQUIRE((https && http && direct));
  CHECK(p.proxy_for(*https) == "http://proxy.local:3129");
  CHECK(p.proxy_for(*http) == "http://proxy.local:3128");
  CHECK(p.proxy_for(*direct).empty());
  p.no_proxy = "*";
  CHECK(p.proxy_for(*https).empty());
}

TEST_CASE("nginx: success, status passthrough and case-insensitive headers") {
  SAIL_TEST_REQUIRE_NGINX();
  nginx_server nginx{locations()};
  io_threads io;
  auto client = make_client(io);
  auto ok = fetch(client, get(nginx.base_url() + "/ok"));
  REQUIRE(ok);
  CHECK(ok->status == 200);
  CHECK(ok->body == R"({"ok":true})");
  CHECK(ok->header("content-type") == "application/json");
  CHECK(ok->header("CONTENT-LENGTH") == "11");
  auto busy = fetch(client, get(nginx.base_url() + "/s503"));
  REQUIRE(busy);
  CHECK(busy->status == 503);
  CHECK(busy->header("retry-after") == "1");
  CHECK(busy->body == R"({"error":"busy"})");
  auto missing = fetch(client, get(nginx.base_url() + "/s404"));
  REQUIRE(missing);
  CHECK(missing->status == 404);
}

TEST_CASE("nginx: keep-alive connection reused across sequential requests") {
  SAIL_TEST_REQUIRE_NGINX();
  nginx_server nginx{locations()};
  io_threads io;
  auto client = make_client(io);
  std::string first;
  for (int i = 0; i < 5; ++i) {
    auto r = fetch(client, get(nginx.base_url() + "/conn"));
    REQUIRE(r);
    REQUIRE(r->status == 200);
    if (i == 0)
      first = r->body;
    CHECK(r->body == first);
  }
  CHECK(client.stats().connections_opened == 1);
  CHECK(client.stats().requests == 5);
}

TEST_CASE("nginx: concurrent requests share a bounded pool") {
  SAIL_TEST_REQUIRE_NGINX();
  nginx_server nginx{locations()};
  io_threads io{4};
  http_client_options opts;
  opts.max_connections_per_origin = 2;
  auto client = make_client(io, opts);
  constexpr int n = 40;
  std::vector<std::future<caf::expected<http_response>>> futures;
  for (int i = 0; i < n; ++i) {
    auto p = std::make_shared<std::promise<caf::expected<http_response>>>();
    futures.push_back(p->get_future());
    client.async_request(get(nginx.base_url() + "/conn"),
                         [p](caf::expected<http_response> r) { p->set_value(std::move(r)); });
  }
  std::set<std::string> ids;
  for (auto& f : futures) {
    REQUIRE(f.wait_for(2min) == std::future_status::ready);
    auto r = f.get();
    REQUIRE(r);
    CHECK(r->status == 200);
    ids.insert(r->body);
  }
  CHECK(ids.size() <= 2);
  CHECK(client.stats().connections_opened <= 2);
}

TEST_CASE("nginx: oversize body is an error and the connection is discarded") {
  SAIL_TEST_REQUIRE_NGINX();
  nginx_server nginx{locations()};
  std::filesystem::create_directories(nginx.dir() + "/www");
  {
    std::ofstream f{nginx.dir() + "/www/big.bin"};
    f << std::string(1 << 20, 'b');
  }
  io_threads io;
  http_client_options opts;
  opts.limits.max_body_bytes = 64 * 1024;
  auto client = make_client(io, opts);
  auto small = fetch(client, get(nginx.base_url() + "/ok"));
  REQUIRE(small);
  auto big = fetch(client, get(nginx.base_url() + "/files/big.bin"));
  REQUIRE_FALSE(big);
  CHECK(code_of(big.error()) == errc::transport_error);
  CHECK_THAT(message_of(big.error()), Catch::Contains("response body exceeds limit"));
  // The next request works, on a fresh connection.
  auto again = fetch(client, get(nginx.base_url() + "/ok"));
  REQUIRE(again);
  CHECK(again->status == 200);
  CHECK(client.stats().connections_opened == 2);
  // Within the limit the same file is fine.
  http_client_options roomy;
  roomy.limits.max_body_bytes = 2 << 20;
  auto client2 = make_client(io, roomy);
  auto whole = fetch(client2, get(nginx.base_url() + "/files/big.bin"));
  REQUIRE(whole);
  CHECK(whole->body.size() == (1u << 20));
}

TEST_CASE("nginx: oversize response header is an error") {
  SAIL_TEST_REQUIRE_NGINX();
  nginx_server nginx{locations()};
  io_threads io;
  http_client_options opts;
  opts.limits.max_header_bytes = 1024;
  auto client = make_client(io, opts);
  auto r = fetch(client, get(nginx.base_url() + "/bighdr"));
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::transport_error);
  CHECK_THAT(message_of(r.error()), Catch::Contains("response header exceeds limit"));
}

TEST_CASE("nginx: redirects followed only on request") {
  SAIL_TEST_REQUIRE_NGINX();
  nginx_server nginx{locations()};
  io_threads io;
  auto client = make_client(io);
  auto raw = fetch(client, get(nginx.base_url() + "/redir"));
  REQUIRE(raw);
  CHECK(raw->status == 302);
  auto req = get(nginx.base_url() + "/redir");
  req.follow_redirects = true;
  auto followed = fetch(client, req);
  REQUIRE(followed);
  CHECK(followed->status == 200);
  CHECK(followed->body == R"({"ok":true})");
}

TEST_CASE("deadline and read timeout expire with errc::timeout naming the phase") {
  // A server that accepts, reads, and never answers.
  loopback_server silent{[](tcp::socket s, size_t) -> asio::awaitable<void> {
    co_await drain(s);
  }};
  io_threads io;
  SECTION("per-call deadline caps the read") {
    auto client = make_client(io);
    auto req = get(silent.base_url() + "/never?api_key=sk_secret_value");
    req.deadline = 300ms;
    auto r = fetch(client, req);
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::timeout);
    auto msg = message_of(r.error());
    CHECK_THAT(msg, Catch::Contains("read") && Catch::Contains("call deadline"));
    CHECK(msg.find("sk_secret_value") == std::string::npos);
  }
  SECTION("read timeout") {
    http_client_options opts;
    opts.timeouts.read = 200ms;
    auto client = make_client(io, opts);
    auto r = fetch(client, get(silent.base_url() + "/never"));
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::timeout);
    CHECK_THAT(message_of(r.error()), Catch::Contains("read timed out after 200 ms"));
  }
}

TEST_CASE("full pool and full queue: overloaded, queued request times out") {
  loopback_server silent{[](tcp::socket s, size_t) -> asio::awaitable<void> {
    co_await drain(s);
  }};
  io_threads io;
  http_client_options opts;
  opts.max_connections_per_origin = 1;
  opts.max_queued_per_origin = 1;
  auto client = make_client(io, opts);
  auto start = [&](caf::timespan deadline) {
    auto p = std::make_shared<std::promise<caf::expected<http_response>>>();
    auto req = get(silent.base_url() + "/x");
    req.deadline = deadline;
    auto f = p->get_future();
    client.async_request(std::move(req),
                         [p](caf::expected<http_response> r) { p->set_value(std::move(r)); });
    return f;
  };
  auto busy = start(2s);
  auto queued = start(300ms);
  auto rejected = start(2s);
  REQUIRE(rejected.wait_for(2min) == std::future_status::ready);
  auto r3 = rejected.get();
  REQUIRE_FALSE(r3);
  CHECK(code_of(r3.error()) == errc::overloaded);
  REQUIRE(queued.wait_for(2min) == std::future_status::ready);
  auto r2 = queued.get();
  REQUIRE_FALSE(r2);
  CHECK(code_of(r2.error()) == errc::timeout);
  CHECK_THAT(message_of(r2.error()), Catch::Contains("connection wait"));
  REQUIRE(busy.wait_for(2min) == std::future_status::ready);
  auto r1 = busy.get();
  REQUIRE_FALSE(r1);
  CHECK(code_of(r1.error()) == errc::timeout);
  CHECK(silent.accepted() == 1);
}

TEST_CASE("reset and truncated responses are transport errors") {
  loopback_server server{[](tcp::socket s, size_t) -> asio::awaitable<void> {
    std::string buf, method, target;
    if (!co_await read_http_request(s, buf, &method, &target))
      co_return;
    if (target == "/reset") {
      s.set_option(asio::socket_base::linger{true, 0});
      s.close();
      co_return;
    }
    // Truncated: announces 100 bytes, sends 10, closes.
    co_await write_all(s, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    s.close();
  }};
  io_threads io;
  auto client = make_client(io);
  auto reset = fetch(client, get(server.base_url() + "/reset"));
  REQUIRE_FALSE(reset);
  CHECK(code_of(reset.error()) == errc::transport_error);
  auto trunc = fetch(client, get(server.base_url() + "/truncated"));
  REQUIRE_FALSE(trunc);
  CHECK(code_of(trunc.error()) == errc::transport_error);
  CHECK_THAT(message_of(trunc.error()), Catch::Contains("truncated"));
  // Fresh connections are never replayed: one connection per request.
  CHECK(server.accepted() == 2);
  CHECK(client.stats().stale_retries == 0);
}

TEST_CASE("a dead pooled connection is retried once, only when safe") {
  // Every connection answers one request with keep-alive, then closes.
  auto closed = std::make_shared<std::promise<void>>();
  auto closed_f = closed->get_future();
  std::mutex mtx;
  std::shared_ptr<std::promise<void>> next_closed = closed;
  loopback_server server{[&](tcp::socket s, size_t index) -> asio::awaitable<void> {
    std::string buf;
    if (!co_await read_http_request(s, buf))
      co_return;
    co_await write_all(s, http_reply(200, "c" + std::to_string(index)));
    s.close();
    std::shared_ptr<std::promise<void>> p;
    {
      std::lock_guard<std::mutex> guard{mtx};
      p = std::exchange(next_closed, nullptr);
    }
    if (p)
      p->set_value();
  }};
  io_threads io;
  auto client = make_client(io);
  auto first = fetch(client, get(server.base_url() + "/a"));
  REQUIRE(first);
  CHECK(first->body == "c0");
  REQUIRE(closed_f.wait_for(2min) == std::future_status::ready);
  SECTION("GET is replayed on a fresh connection") {
    auto second = fetch(client, get(server.base_url() + "/b"));
    REQUIRE(second);
    CHECK(second->body == "c1");
    CHECK(client.stats().stale_retries == 1);
    CHECK(server.accepted() == 2);
  }
  SECTION("POST with an Idempotency-Key is replayed") {
    http_request req;
    req.method = verb::post;
    req.url = server.base_url() + "/v1/responses";
    req.headers.push_back({"Idempotency-Key", "k-1"});
    req.body = "{}";
    auto second = fetch(client, req);
    REQUIRE(second);
    CHECK(second->body == "c1");
    CHECK(client.stats().stale_retries == 1);
  }
  SECTION("POST without an Idempotency-Key is not replayed") {
    http_request req;
    req.method = verb::post;
    req.url = server.base_url() + "/v1/responses";
    req.body = "{}";
    auto second = fetch(client, req);
    REQUIRE_FALSE(second);
    CHECK(code_of(second.error()) == errc::transport_error);
    CHECK(client.stats().stale_retries == 0);
    CHECK(server.accepted() == 1);
  }
}

namespace {

// A minimal forward proxy: CONNECT tunnels to 127.0.0.1:<port>; any other
// request is answered by the proxy itself with "proxied <method> <target>".
struct test_proxy {
  std::mutex mtx;
  std::vector<std::string> seen;  // "METHOD target" (+ " auth" when present)
  std::unique_ptr<loopback_server> server;

  static asio::awaitable<void> pipe(std::shared_ptr<tcp::socket> from,
                                    std::shared_ptr<tcp::socket> to) {
    char buf[16384];
    boost::system::error_code ec;
    for (;;) {
      auto n = co_await from->async_read_some(asio::buffer(buf),
                                              asio::redirect_error(asio::use_awaitable, ec));
      if (ec)
        break;
      co_await asio::async_write(*to, asio::buffer(buf, n),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec)
        break;
    }
    to->shutdown(tcp::socket::shutdown_both, ec);
  }

  test_proxy() {
    server = std::make_unique<loopback_server>(
      [this](tcp::socket s, size_t) -> asio::awaitable<void> {
        std::string buf, method, target, head;
        while (co_await read_http_request(s, buf, &method, &target, &head)) {
          {
            std::lock_guard<std::mutex> guard{mtx};
            auto entry = method + " " + target;
            if (head.find("Proxy-Authorization: Basic ") != std::string::npos)
              entry += " auth";
            seen.push_back(entry);
          }
          if (method == "CONNECT") {
            auto port = static_cast<uint16_t>(std::stoi(target.substr(target.rfind(':') + 1)));
            auto up = std::make_shared<tcp::socket>(s.get_executor());
            boost::system::error_code ec;
            co_await up->async_connect({asio::ip::make_address("127.0.0.1"), port},
                                       asio::redirect_error(asio::use_awaitable, ec));
            if (ec) {
              co_await write_all(s, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
              co_return;
            }
            co_await write_all(s, "HTTP/1.1 200 Connection established\r\n\r\n");
            auto down = std::make_shared<tcp::socket>(std::move(s));
            asio::co_spawn(down->get_executor(), pipe(up, down), asio::detached);
            co_await pipe(down, up);
            co_return;
          }
          co_await write_all(s, http_reply(200, "proxied " + method + " " + target));
        }
      });
  }

  std::vector<std::string> log() {
    std::lock_guard<std::mutex> guard{mtx};
    return seen;
  }

  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(server->port());
  }
};

} // namespace

TEST_CASE("HTTP_PROXY: absolute-form requests through the proxy, NO_PROXY bypasses") {
  test_proxy proxy;
  loopback_server origin{[](tcp::socket s, size_t) -> asio::awaitable<void> {
    std::string buf, method, target;
    while (co_await read_http_request(s, buf, &method, &target))
      co_await write_all(s, http_reply(200, "direct " + target));
  }};
  io_threads io;
  http_client_options opts;
  opts.proxy.http_proxy = "http://user:pw@127.0.0.1:" + std::to_string(proxy.server->port());
  SECTION("proxied") {
    auto client = make_client(io, opts);
    auto r = fetch(client, get(origin.base_url() + "/v1/x?a=1"));
    REQUIRE(r);
    CHECK(r->body == "proxied GET " + origin.base_url() + "/v1/x?a=1");
    auto log = proxy.log();
    REQUIRE(log.size() == 1);
    CHECK(log[0] == "GET " + origin.base_url() + "/v1/x?a=1 auth");
    CHECK(origin.accepted() == 0);
  }
  SECTION("bypassed by NO_PROXY") {
    opts.proxy.no_proxy = "example.org,127.0.0.1";
    auto client = make_client(io, opts);
    auto r = fetch(client, get(origin.base_url() + "/v1/x"));
    REQUIRE(r);
    CHECK(r->body == "direct /v1/x");
    CHECK(proxy.log().empty());
  }
}

TEST_CASE("proxy_settings::from_env reads the lower- and upper-case variables") {
  ::setenv("HTTPS_PROXY", "http://upper:1", 1);
  ::setenv("https_proxy", "http://lower:2", 1);
  ::setenv("HTTP_PROXY", "http://upper:3", 1);
  ::unsetenv("http_proxy");
  ::setenv("NO_PROXY", "localhost", 1);
  ::unsetenv("no_proxy");
  auto p = proxy_settings::from_env();
  CHECK(p.https_proxy == "http://lower:2");
  CHECK(p.http_proxy == "http://upper:3");
  CHECK(p.no_proxy == "localhost");
  for (auto name : {"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "NO_PROXY"})
    ::unsetenv(name);
}

TEST_CASE("a redirect whose Location has two '@' in its authority is refused, not sent") {
  // Found by fuzz/http_response_fuzz: the next request went to 127.0.0.1 with
  // the request target "@a/next?...".
  auto port = std::make_shared<std::atomic<uint16_t>>(0);
  auto requests = std::make_shared<std::atomic<int>>(0);
  loopback_server server{[port, requests](tcp::socket s, size_t) -> asio::awaitable<void> {
    std::string buf, method, target;
    while (co_await read_http_request(s, buf, &method, &target)) {
      ++*requests;
      auto loc = "http://x@127.0.0.1:" + std::to_string(port->load()) + "@a/next?sig=s3cr3t";
      if (!co_await write_all(s, http_reply(302, "", "Location: " + loc + "\r\n")))
        co_return;
    }
  }};
  port->store(server.port());
  io_threads io;
  auto client = make_client(io);
  auto req = get(server.base_url() + "/start");
  req.follow_redirects = true;
  auto r = fetch(client, req);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::invalid_argument);
  CHECK(render(r.error()).find("s3cr3t") == std::string::npos);
  CHECK(requests->load() == 1);
}

TEST_CASE("bad requests fail through the callback, never inline") {
  io_threads io;
  auto client = make_client(io);
  auto bad = fetch(client, get("not a url"));
  REQUIRE_FALSE(bad);
  CHECK(code_of(bad.error()) == errc::invalid_argument);
  auto req = get("http://127.0.0.1:9/");
  req.headers.push_back({"X-Evil", "a\r\nInjected: 1"});
  auto inj = fetch(client, req);
  REQUIRE_FALSE(inj);
  CHECK(code_of(inj.error()) == errc::invalid_argument);
  http_client_options opts;
  opts.tls.ca_file = "/nonexistent/ca.pem";
  auto c = http_client::make(io.context(), opts);
  REQUIRE_FALSE(c);
  CHECK(info_of(c.error())->field == "tls.ca_file");
}
