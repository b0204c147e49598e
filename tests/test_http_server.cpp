// The asynchronous Beast HTTP server over real loopback sockets.
#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <sstream>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/write.hpp>

#include "sail_tinker/net/http_server.hpp"
#include "support/sync_http.hpp"

namespace http = boost::beast::http;
using sail::http_server;
using sail::http_server_context;
using sail::http_server_options;
using sail::test::sync_http;

namespace {

// Answers "<method> <target> #<connection id>" at once.
void echo(http_server_context&& ctx) {
  sail::http_server_response res{http::status::ok, 11};
  res.set(http::field::content_type, "text/plain");
  res.body() = std::string{ctx.request().method_string()} + " "
               + std::string{ctx.request().target()} + " #"
               + std::to_string(ctx.connection_id()) + " "
               + std::to_string(ctx.request().body().size());
  ctx.respond(std::move(res));
}

http_server_options small_opts() {
  http_server_options opts;
  opts.threads = 2;
  opts.body_limit = 1024;
  opts.header_limit = 2048;
  return opts;
}

} // namespace

TEST_CASE("http_server binds port 0 and reports the actual port") {
  http_server srv{small_opts(), echo};
  REQUIRE(srv.port() == 0);
  REQUIRE_FALSE(srv.start());
  CHECK(srv.port() != 0);
  auto r = sail::test::http_call(srv.port(), http::verb::get, "/hello");
  REQUIRE(r.ok());
  CHECK(r.status() == 200);
  CHECK(r.body() == "GET /hello #1 0");
  CHECK(r.header("Server") == "sail-tinker");
}

TEST_CASE("http_server reuses keep-alive connections") {
  http_server srv{small_opts(), echo};
  REQUIRE_FALSE(srv.start());
  sync_http client{"127.0.0.1", srv.port()};
  for (int i = 0; i < 5; ++i) {
    auto r = client.post("/x", "abc");
    REQUIRE(r.ok());
    CHECK(r.status() == 200);
    CHECK(r.body() == "POST /x #1 3");
    CHECK(r.response.keep_alive());
  }
  CHECK(client.connects() == 1);
  CHECK(srv.connections_accepted() == 1);
  // Connection: close is honoured.
  auto r = client.get("/bye", {{"Connection", "close"}});
  REQUIRE(r.ok());
  CHECK_FALSE(r.response.keep_alive());
  CHECK_FALSE(client.connected());
  REQUIRE(client.get("/again").ok());
  CHECK(client.connects() == 2);
  CHECK(srv.connections_accepted() == 2);
}

TEST_CASE("http_server answers 413 for an oversize body and closes") {
  http_server srv{small_opts(), echo};
  REQUIRE_FALSE(srv.start());
  sync_http client{"127.0.0.1", srv.port()};
  REQUIRE(client.post("/ok", std::string(1024, 'a')).status() == 200);
  auto r = client.post("/big", std::string(5000, 'a'));
  REQUIRE(r.ok());
  CHECK(r.status() == 413);
  CHECK_FALSE(r.response.keep_alive());
  CHECK_FALSE(client.connected());
}

TEST_CASE("http_server answers 413 for an oversize chunked body") {
  http_server srv{small_opts(), echo};
  REQUIRE_FALSE(srv.start());
  sync_http client{"127.0.0.1", srv.port()};
  std::string chunk(800, 'b');
  std::string req = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 2; ++i)
    req += "320\r\n" + chunk + "\r\n";
  req += "0\r\n\r\n";
  auto r = client.raw(req);
  REQUIRE(r.ok());
  CHECK(r.status() == 413);
}

TEST_CASE("http_server answers 431 for an oversize header") {
  http_server srv{small_opts(), echo};
  REQUIRE_FALSE(srv.start());
  sync_http client{"127.0.0.1", srv.port()};
  auto r = client.get("/h", {{"X-Big", std::string(4096, 'h')}});
  REQUIRE(r.ok());
  CHECK(r.status() == 431);
  CHECK_FALSE(client.connected());
}

TEST_CASE("http_server answers 400 for a malformed request") {
  http_server srv{small_opts(), echo};
  REQUIRE_FALSE(srv.start());
  sync_http client{"127.0.0.1", srv.port()};
  auto r = client.raw("NOT A REQUEST\r\n\r\n");
  REQUIRE(r.ok());
  CHECK(r.status() == 400);
}

TEST_CASE("http_server closes a connection whose request does not arrive in time") {
  auto opts = small_opts();
  opts.read_timeout = std::chrono::milliseconds{100};
  http_server srv{opts, echo};
  REQUIRE_FALSE(srv.start());
  sync_http client{"127.0.0.1", srv.port()};
  // A partial request: the server times out and closes, the read then fails.
  auto r = client.raw("GET / HTTP/1.1\r\nHost: x\r\n");
  CHECK_FALSE(r.ok());
  CHECK(srv.connections_accepted() == 1);
}

TEST_CASE("http_server handlers may answer later from a timer") {
  http_server srv{small_opts(), [](http_server_context&& ctx) {
                    auto timer = std::make_shared<boost::asio::steady_timer>(
                      ctx.executor(), std::chrono::milliseconds{20});
                    timer->async_wait([timer, c = std::move(ctx)](
                                        boost::system::error_code) mutable {
                      sail::http_server_response res{http::status::accepted, 11};
                      res.body() = "later";
                      c.respond(std::move(res));
                    });
                  }};
  REQUIRE_FALSE(srv.start());
  sync_http client{"127.0.0.1", srv.port()};
  for (int i = 0; i < 3; ++i) {
    auto r = client.get("/later");
    REQUIRE(r.ok());
    CHECK(r.status() == 202);
    CHECK(r.body() == "later");
  }
  CHECK(client.connects() == 1);
}

TEST_CASE("http_server answers 500 when a handler drops or throws") {
  http_server srv{small_opts(), [](http_server_context&& ctx) {
                    if (ctx.request().target() == "/throw")
                      throw std::runtime_error("boom");
                    // drop: the context dies unanswered
                  }};
  REQUIRE_FALSE(srv.start());
  sync_http client{"127.0.0.1", srv.port()};
  CHECK(client.get("/drop").status() == 500);
  CHECK(client.get("/throw").status() == 500);
  CHECK(client.connects() == 1);
}

namespace {

// The raw-answer hook is protected: a handler's plain context cannot reach it
// (so no request can make a production server answer raw), a subclass can.
template <class Context>
concept answers_raw = requires(Context& ctx) {
  ctx.respond_raw(sail::http_server_reply{}, sail::http_raw_answer{});
};
static_assert(!answers_raw<http_server_context>);

class raw_context : public http_server_context {
public:
  explicit raw_context(http_server_context&& ctx) : http_server_context(std::move(ctx)) {
  }
  using http_server_context::respond_raw;
};
static_assert(answers_raw<raw_context>);

} // namespace

TEST_CASE("http_server raw answers of a context subclass, and delays") {
  std::promise<std::string> prepared_header;
  http_server srv{small_opts(), [&](http_server_context&& ctx) {
                    sail::http_server_reply reply;
                    reply.response = {http::status::ok, 11};
                    reply.response.body() = "0123456789";
                    auto t = ctx.request().target();
                    if (t == "/short") {
                      // The response as it would have been sent, cut short.
                      raw_context{std::move(ctx)}.respond_raw(
                        std::move(reply),
                        [&](const sail::http_server_response& res, auto&) {
                          std::ostringstream os;
                          os << res.base();
                          prepared_header.set_value(os.str());
                          return os.str() + res.body().substr(0, 4);
                        });
                    } else if (t == "/nothing") {
                      // No bytes: the connection closes at once (here with a
                      // reset, SO_LINGER 0).
                      raw_context{std::move(ctx)}.respond_raw(
                        std::move(reply), [](const auto&, boost::asio::ip::tcp::socket& s) {
                          s.set_option(boost::asio::socket_base::linger{true, 0});
                          return std::string{};
                        });
                    } else {
                      reply.delay = std::chrono::milliseconds{20};
                      ctx.respond(std::move(reply));
                    }
                  }};
  REQUIRE_FALSE(srv.start());
  sync_http client{"127.0.0.1", srv.port()};
  auto r = client.get("/short");
  CHECK_FALSE(r.ok());
  CHECK((r.ec == http::error::partial_message || r.ec == boost::asio::error::eof));
  auto header = prepared_header.get_future().get();
  CHECK_THAT(header, Catch::Contains("Content-Length: 10\r\n"));
  CHECK_THAT(header, Catch::Contains("Connection: close\r\n"));
  CHECK_THAT(header, Catch::Contains("Server: sail-tinker\r\n"));
  r = client.get("/nothing");
  CHECK_FALSE(r.ok());
  CHECK_FALSE(client.connected());
  r = client.get("/delay");
  REQUIRE(r.ok());
  CHECK(r.body() == "0123456789");
  CHECK(srv.connections_accepted() == 3);
}

TEST_CASE("http_server stop with an idle keep-alive connection does not hang") {
  auto opts = small_opts();
  // If stop() waited for idle connections it would wait this long and the
  // test would time out.
  opts.drain_timeout = std::chrono::minutes{10};
  opts.read_timeout = std::chrono::minutes{10};
  http_server srv{opts, echo};
  REQUIRE_FALSE(srv.start());
  sync_http client{"127.0.0.1", srv.port()};
  REQUIRE(client.get("/a").ok());
  REQUIRE(client.connected());
  CHECK(srv.connections_open() == 1);
  srv.stop();
  CHECK(srv.connections_open() == 0);
  // The connection is gone: the next request on it fails, and a new
  // connection is refused.
  auto r = client.get("/b");
  CHECK_FALSE(r.ok());
  CHECK_FALSE(sail::test::http_call(srv.port(), http::verb::get, "/c").ok());
  srv.stop(); // idempotent
}

TEST_CASE("http_server stop lets an in-flight request finish") {
  auto opts = small_opts();
  opts.drain_timeout = std::chrono::minutes{10};
  std::promise<http_server_context> held;
  http_server srv{opts, [&](http_server_context&& ctx) {
                    held.set_value(std::move(ctx));
                  }};
  REQUIRE_FALSE(srv.start());
  auto answer = std::async(std::launch::async, [&] {
    return sail::test::http_call(srv.port(), http::verb::get, "/slow");
  });
  auto ctx = held.get_future().get();
  std::thread stopper{[&] { srv.stop(); }};
  sail::http_server_response res{http::status::ok, 11};
  res.body() = "done";
  ctx.respond(std::move(res));
  stopper.join();
  auto r = answer.get();
  REQUIRE(r.ok());
  CHECK(r.body() == "done");
}

TEST_CASE("http_server stop closes requests that do not finish in time") {
  auto opts = small_opts();
  opts.drain_timeout = std::chrono::milliseconds{50};
  std::promise<void> got;
  std::vector<http_server_context> parked; // only touched by the handler
  http_server srv{opts, [&](http_server_context&& ctx) {
                    parked.push_back(std::move(ctx));
                    got.set_value();
                  }};
  REQUIRE_FALSE(srv.start());
  auto answer = std::async(std::launch::async, [&] {
    return sail::test::http_call(srv.port(), http::verb::get, "/never");
  });
  got.get_future().get();
  srv.stop();
  CHECK_FALSE(answer.get().ok());
  // Answering after stop is harmless.
  parked.front().respond(sail::http_server_response{http::status::ok, 11});
}

TEST_CASE("http_server serves many concurrent connections") {
  auto opts = small_opts();
  opts.threads = 4;
  http_server srv{opts, echo};
  REQUIRE_FALSE(srv.start());
  constexpr int clients = 32;
  constexpr int per_client = 10;
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i)
    threads.emplace_back([&] {
      sync_http client{"127.0.0.1", srv.port()};
      for (int j = 0; j < per_client; ++j) {
        auto r = client.post("/c", "xy");
        if (r.ok() && r.status() == 200)
          ++good;
      }
    });
  for (auto& t : threads)
    t.join();
  CHECK(good == clients * per_client);
  CHECK(srv.connections_accepted() == clients);
}

TEST_CASE("http_server runs on a caller-owned io_context") {
  boost::asio::io_context ioc;
  auto opts = small_opts();
  http_server srv{ioc, opts, echo};
  REQUIRE_FALSE(srv.start());
  auto guard = boost::asio::make_work_guard(ioc);
  std::thread runner{[&] { ioc.run(); }};
  sync_http client{"127.0.0.1", srv.port()};
  CHECK(client.get("/own").body() == "GET /own #1 0");
  srv.stop();
  guard.reset();
  runner.join();
}

TEST_CASE("http_server reports a bind failure as an error") {
  http_server first{small_opts(), echo};
  REQUIRE_FALSE(first.start());
  auto opts = small_opts();
  opts.port = first.port();
  http_server second{opts, echo};
  auto err = second.start();
  CHECK(err);
}
