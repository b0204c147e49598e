// TLS against a third-party server: Debian's nginx with a CA and certificate
// generated at test time by the openssl CLI. Verification is on by default;
// the client trusts the test CA only when given its file.
#include <catch2/catch.hpp>

#include <cstdlib>

#include <mutex>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/http_client.hpp"
#include "support/certs.hpp"
#include "support/io_threads.hpp"
#include "support/loopback.hpp"
#include "support/nginx.hpp"

using namespace sail;
using namespace sail::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

const char* locations = R"(
    location = /ok { return 200 '{"ok":true}'; }
    location = /conn { return 200 "$connection"; }
)";

// A TLS nginx whose certificate covers `sans`, plus its CA.
struct tls_nginx {
  std::string dir;
  test_certs certs;
  std::unique_ptr<nginx_server> nginx;

  explicit tls_nginx(const std::vector<std::string>& sans) {
    dir = make_temp_dir("sail-certs");
    certs = make_test_certs(dir, sans);
    nginx = std::make_unique<nginx_server>(locations,
                                           nginx_tls{certs.server_cert, certs.server_key});
  }

  ~tls_nginx() {
    nginx.reset();
    remove_dir(dir);
  }

  std::string url(const std::string& host, const std::string& path) const {
    return "https://" + host + ":" + std::to_string(nginx->port()) + path;
  }
};

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

TEST_CASE("TLS: the client succeeds with the custom CA, by IP and by name") {
  SAIL_TEST_REQUIRE_NGINX();
  tls_nginx server{{"DNS:localhost", "IP:127.0.0.1"}};
  io_threads io;
  http_client_options opts;
  opts.tls.ca_file = server.certs.ca_cert;
  auto client = make_client(io, opts);
  for (auto host : {"127.0.0.1", "localhost"}) {
    auto r = fetch(client, get(server.url(host, "/ok")));
    INFO(host);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == R"({"ok":true})");
  }
  // Keep-alive over TLS: one connection for sequential requests.
  auto a = fetch(client, get(server.url("127.0.0.1", "/conn")));
  auto b = fetch(client, get(server.url("127.0.0.1", "/conn")));
  REQUIRE((a && b));
  CHECK(a->body == b->body);
}

TEST_CASE("TLS: without the CA, verification fails with a clear error") {
  SAIL_TEST_REQUIRE_NGINX();
  tls_nginx server{{"DNS:localhost", "IP:127.0.0.1"}};
  io_threads io;
  auto client = make_client(io); // system store only
  auto r = fetch(client, get(server.url("127.0.0.1", "/ok?token=sk_test_secret")));
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::transport_error);
  auto msg = message_of(r.error());
  CHECK_THAT(msg, Catch::Contains("TLS: certificate verify failed")
                    && Catch::Contains("unable to get local issuer certificate"));
  CHECK(msg.find("sk_test_secret") == std::string::npos);
}

TEST_CASE("TLS: insecure_skip_verify is the only way around verification") {
  SAIL_TEST_REQUIRE_NGINX();
  tls_nginx server{{"DNS:localhost"}};
  io_threads io;
  http_client_options opts;
  opts.tls.insecure_skip_verify = true;
  auto client = make_client(io, opts);
  auto r = fetch(client, get(server.url("127.0.0.1", "/ok")));
  REQUIRE(r);
  CHECK(r->status == 200);
}

TEST_CASE("TLS: a host not in the certificate fails hostname verification") {
  SAIL_TEST_REQUIRE_NGINX();
  io_threads io;
  SECTION("certificate for localhost, connect by IP") {
    tls_nginx server{{"DNS:localhost"}};
    http_client_options opts;
    opts.tls.ca_file = server.certs.ca_cert;
    auto client = make_client(io, opts);
    auto ok = fetch(client, get(server.url("localhost", "/ok")));
    REQUIRE(ok);
    auto r = fetch(client, get(server.url("127.0.0.1", "/ok")));
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::transport_error);
    CHECK_THAT(message_of(r.error()), Catch::Contains("TLS: certificate verify failed")
                                        && Catch::Contains("IP address mismatch"));
  }
  SECTION("certificate for 127.0.0.1, connect by name") {
    tls_nginx server{{"IP:127.0.0.1"}};
    http_client_options opts;
    opts.tls.ca_file = server.certs.ca_cert;
    auto client = make_client(io, opts);
    auto ok = fetch(client, get(server.url("127.0.0.1", "/ok")));
    REQUIRE(ok);
    auto r = fetch(client, get(server.url("localhost", "/ok")));
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::transport_error);
    CHECK_THAT(message_of(r.error()), Catch::Contains("TLS: certificate verify failed")
                                        && Catch::Contains("hostname mismatch"));
  }
}

namespace {

asio::awaitable<void> pipe(std::shared_ptr<tcp::socket> from, std::shared_ptr<tcp::socket> to) {
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

} // namespace

TEST_CASE("HTTPS_PROXY: CONNECT tunnel to nginx, TLS verified end to end") {
  SAIL_TEST_REQUIRE_NGINX();
  tls_nginx server{{"DNS:localhost", "IP:127.0.0.1"}};
  std::mutex mtx;
  std::vector<std::string> seen;
  loopback_server proxy{[&](tcp::socket s, size_t) -> asio::awaitable<void> {
    std::string buf, method, target;
    if (!co_await read_http_request(s, buf, &method, &target))
      co_return;
    {
      std::lock_guard<std::mutex> guard{mtx};
      seen.push_back(method + " " + target);
    }
    if (method != "CONNECT") {
      co_await write_all(s, http_reply(405, ""));
      co_return;
    }
    auto port = static_cast<uint16_t>(std::stoi(target.substr(target.rfind(':') + 1)));
    auto up = std::make_shared<tcp::socket>(s.get_executor());
    boost::system::error_code ec;
    co_await up->async_connect({asio::ip::make_address("127.0.0.1"), port},
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec)
      co_return;
    co_await write_all(s, "HTTP/1.1 200 Connection established\r\n\r\n");
    auto down = std::make_shared<tcp::socket>(std::move(s));
    asio::co_spawn(down->get_executor(), pipe(up, down), asio::detached);
    co_await pipe(down, up);
  }};
  io_threads io;
  http_client_options opts;
  opts.tls.ca_file = server.certs.ca_cert;
  opts.proxy.https_proxy = proxy.base_url();
  auto client = make_client(io, opts);
  auto r = fetch(client, get(server.url("localhost", "/ok")));
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == R"({"ok":true})");
  // Reused through the same tunnel.
  auto again = fetch(client, get(server.url("localhost", "/ok")));
  REQUIRE(again);
  std::lock_guard<std::mutex> guard{mtx};
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == "CONNECT localhost:" + std::to_string(server.nginx->port()));
}
