#include "sail_tinker/net/http_client.hpp"

#include <algorithm>
#include <atomic>
#include <list>
#include <map>
#include <mutex>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/option_check.hpp"
#include "sail_tinker/messages/redact.hpp"
#include "sail_tinker/net/http_framing.hpp"
#include "sail_tinker/net/url.hpp"

namespace sail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

// -- small helpers ---------------------------------------------------------------

bool replay_safe(const http_request& req) noexcept {
  switch (req.method) {
    case http::verb::get:
    case http::verb::head:
    case http::verb::put:
    case http::verb::delete_:
    case http::verb::options:
      return true;
    default:
      break;
  }
  return std::any_of(req.headers.begin(), req.headers.end(), [](const auto& h) {
    return beast::iequals(h.name, "idempotency-key") && !h.value.empty();
  });
}

namespace {

std::string base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  auto n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                           reinterpret_cast<const unsigned char*>(in.data()),
                           static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string millis(steady::duration d) {
  return std::to_string(
           std::chrono::duration_cast<std::chrono::milliseconds>(d).count())
         + " ms";
}

bool bad_header_text(std::string_view s) {
  return s.find_first_of("\r\n") != std::string_view::npos
         || s.find('\0') != std::string_view::npos;
}

// Errors meaning "the peer closed or reset the connection".
bool is_closed_error(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof
         || ec == asio::error::connection_reset
         || ec == asio::error::connection_aborted
         || ec == asio::error::broken_pipe
         || ec == asio::ssl::error::stream_truncated;
}

} // namespace

// -- state ---------------------------------------------------------------------------

namespace {

struct connection {
  explicit connection(const asio::any_io_executor& ex)
    : strand(asio::make_strand(ex)) {
  }

  asio::strand<asio::any_io_executor> strand;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;
  /// Completed exchanges on the current socket.
  uint64_t uses = 0;
  /// Runs on the origin pool's strand while the connection is idle.
  std::optional<asio::steady_timer> idle_timer;

  bool open() const {
    return plain.has_value() || tls.has_value();
  }

  beast::tcp_stream& lowest() {
    return tls ? beast::get_lowest_layer(*tls) : *plain;
  }

  void close() {
    beast::error_code ec;
    if (tls)
      beast::get_lowest_layer(*tls).socket().close(ec);
    if (plain)
      plain->socket().close(ec);
    tls.reset();
    plain.reset();
    buffer.clear();
    uses = 0;
  }
};

using connection_ptr = std::shared_ptr<connection>;

/// One request in flight (one hop of a redirect chain).
struct call {
  http_request req;
  parsed_url url;
  std::optional<parsed_url> proxy;
  std::optional<steady::time_point> deadline;
  http_client::callback done;
  uint32_t redirects_left = 0;
  // Queueing state, touched on the origin pool's strand only.
  bool queued = false;
  std::optional<asio::steady_timer> queue_timer;
};

using call_ptr = std::shared_ptr<call>;

/// The keep-alive connections of one origin and the calls waiting for one
/// (not the worker pool of actors/worker_pool.hpp).
struct origin_pool {
  explicit origin_pool(const asio::any_io_executor& ex, std::string k)
    : strand(asio::make_strand(ex)), key(std::move(k)) {
  }

  asio::strand<asio::any_io_executor> strand;
  std::string key;
  std::vector<connection_ptr> idle;
  std::list<call_ptr> queue;
  /// Connections of this origin, busy or idle.
  uint32_t total = 0;
};

using origin_pool_ptr = std::shared_ptr<origin_pool>;

/// Outcome of one exchange.
struct exchange_result {
  std::optional<http_response> resp;
  caf::error err;
  bool reusable = false;
  /// Peer closed the (reused) connection before sending any response byte.
  bool stale = false;
};

/// Time allowed for a phase: its timeout capped by the call's deadline.
struct budget {
  steady::duration time{};
  bool capped = false;
  bool expired = false;
};

budget phase_budget(const call& c, caf::timespan phase) {
  budget b;
  b.time = std::chrono::duration_cast<steady::duration>(phase);
  if (c.deadline) {
    auto left = *c.deadline - steady::now();
    if (left <= steady::duration::zero()) {
      b.expired = true;
      b.time = steady::duration::zero();
      b.capped = true;
    } else if (left < b.time || b.time <= steady::duration::zero()) {
      b.time = left;
      b.capped = true;
    }
  }
  return b;
}

caf::error timeout_error(const char* phase, const budget& b, const call& c) {
  std::string msg = "HTTP ";
  msg += phase;
  if (b.expired)
    msg += ": call deadline expired before the phase started";
  else if (b.capped)
    msg += " timed out (call deadline, " + millis(b.time) + ")";
  else
    msg += " timed out after " + millis(b.time);
  msg += ": " + redact_url(c.req.url);
  return make_error(errc::timeout, std::move(msg));
}

caf::error transport_error(std::string what, const call& c) {
  return make_error(errc::transport_error, what + ": " + redact_url(c.req.url));
}

bool is_redirect(unsigned status) {
  return status == 301 || status == 302 || status == 303 || status == 307
         || status == 308;
}

} // namespace

// -- the implementation ------------------------------------------------------------

struct http_client::impl : std::enable_shared_from_this<http_client::impl> {
  impl(asio::io_context& io, http_client_options o)
    : ctx(io), opts(std::move(o)), tls_ctx(ssl::context::tls_client) {
  }

  asio::io_context& ctx;
  http_client_options opts;
  ssl::context tls_ctx;
  std::mutex mtx;
  std::map<std::string, origin_pool_ptr> pools;
  std::atomic<uint64_t> n_requests{0};
  std::atomic<uint64_t> n_connections{0};
  std::atomic<uint64_t> n_stale{0};

  caf::error init() {
    tls_ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2
                        | ssl::context::no_sslv3 | ssl::context::no_tlsv1
                        | ssl::context::no_tlsv1_1);
    beast::error_code ec;
    tls_ctx.set_default_verify_paths(ec);
    // A missing system store is not fatal: verification then fails per call.
    if (!opts.tls.ca_file.empty()) {
      tls_ctx.load_verify_file(opts.tls.ca_file, ec);
      if (ec)
        return invalid_argument("tls.ca_file",
                                "cannot load CA file " + opts.tls.ca_file + ": "
                                  + ec.message());
    }
    tls_ctx.set_verify_mode(opts.tls.insecure_skip_verify ? ssl::verify_none
                                                          : ssl::verify_peer);
    if (auto err = opts.validate())
      return err;
    if (!opts.proxy.http_proxy.empty())
      if (auto p = check_proxy(opts.proxy.http_proxy, "proxy.http_proxy"); !p)
        return std::move(p.error());
    if (!opts.proxy.https_proxy.empty())
      if (auto p = check_proxy(opts.proxy.https_proxy, "proxy.https_proxy"); !p)
        return std::move(p.error());
    return {};
  }

  static caf::expected<parsed_url> check_proxy(const std::string& url,
                                               const char* field) {
    auto full = url.find("://") == std::string::npos ? "http://" + url : url;
    auto p = parse_http_url(full, field);
    if (p && p->tls)
      return invalid_argument(field, "https:// proxies are not supported");
    return p;
  }

  void post_done(callback done, caf::error err) {
    asio::post(ctx, [done = std::move(done), err = std::move(err)]() mutable {
      done(std::move(err));
    });
  }

  // Entry point: validates, picks the origin pool and hands the call to it.
  void start(http_request req, callback done, std::optional<steady::time_point> deadline,
             uint32_t redirects_left) {
    auto url = parse_http_url(req.url);
    if (!url)
      return post_done(std::move(done), std::move(url.error()));
    for (const auto& h : req.headers)
      if (h.name.empty() || bad_header_text(h.name) || bad_header_text(h.value))
        return post_done(std::move(done),
                         invalid_argument("headers",
                                          "header name or value contains CR, LF or "
                                          "NUL (or the name is empty)"));
    auto c = std::make_shared<call>();
    c->req = std::move(req);
    c->url = std::move(*url);
    c->done = std::move(done);
    c->deadline = deadline;
    c->redirects_left = redirects_left;
    auto proxy = opts.proxy.proxy_for(c->url);
    if (!proxy.empty()) {
      auto p = check_proxy(proxy, c->url.tls ? "proxy.https_proxy"
                                             : "proxy.http_proxy");
      if (!p)
        return post_done(std::move(c->done), std::move(p.error()));
      c->proxy = std::move(*p);
    }
    auto key = c->url.origin();
    if (c->proxy)
      key += " via " + c->proxy->origin();
    origin_pool_ptr p;
    {
      std::lock_guard<std::mutex> guard{mtx};
      auto& slot = pools[key];
      if (!slot)
        slot = std::make_shared<origin_pool>(ctx.get_executor(), key);
      p = slot;
    }
    asio::dispatch(p->strand, [self = shared_from_this(), p, c] {
      self->acquire(p, c);
    });
  }

  // On the origin pool's strand.
  void acquire(const origin_pool_ptr& p, const call_ptr& c) {
    if (!p->idle.empty()) {
      auto conn = p->idle.back();
      p->idle.pop_back();
      conn->idle_timer.reset();
      return run(p, conn, c);
    }
    if (p->total < opts.max_connections_per_origin) {
      ++p->total;
      return run(p, std::make_shared<connection>(ctx.get_executor()), c);
    }
    if (p->queue.size() >= opts.max_queued_per_origin) {
      auto err = make_error(errc::overloaded,
                            "HTTP client: too many requests waiting for a "
                            "connection to "
                              + p->key);
      return post_done(std::move(c->done), std::move(err));
    }
    c->queued = true;
    p->queue.push_back(c);
    if (c->deadline) {
      c->queue_timer.emplace(p->strand);
      c->queue_timer->expires_at(*c->deadline);
      c->queue_timer->async_wait(
        [self = shared_from_this(), p, wc = std::weak_ptr<call>(c)](
          const beast::error_code& ec) {
          auto c = wc.lock();
          if (ec || !c || !c->queued)
            return;
          c->queued = false;
          p->queue.remove(c);
          budget b;
          b.expired = true;
          self->finish(c, timeout_error("connection wait", b, *c));
        });
    }
  }

  // On the origin pool's strand.
  call_ptr pop_queue(const origin_pool_ptr& p) {
    auto c = p->queue.front();
    p->queue.pop_front();
    c->queued = false;
    c->queue_timer.reset();
    return c;
  }

  // On the origin pool's strand: a connection came back from an exchange.
  void release(const origin_pool_ptr& p, const connection_ptr& conn, bool reusable) {
    if (!reusable) {
      --p->total;
      if (!p->queue.empty() && p->total < opts.max_connections_per_origin) {
        ++p->total;
        run(p, std::make_shared<connection>(ctx.get_executor()), pop_queue(p));
      }
      return;
    }
    if (!p->queue.empty())
      return run(p, conn, pop_queue(p));
    conn->idle_timer.emplace(p->strand);
    conn->idle_timer->expires_after(opts.idle_timeout);
    conn->idle_timer->async_wait(
      [p, wconn = std::weak_ptr<connection>(conn)](const beast::error_code& ec) {
        auto conn = wconn.lock();
        if (ec || !conn)
          return;
        auto i = std::find(p->idle.begin(), p->idle.end(), conn);
        if (i == p->idle.end())
          return;
        p->idle.erase(i);
        --p->total;
        conn->close();
      });
    p->idle.push_back(conn);
  }

  void close_idle() {
    std::vector<origin_pool_ptr> all;
    {
      std::lock_guard<std::mutex> guard{mtx};
      for (auto& [key, p] : pools)
        all.push_back(p);
    }
    for (auto& p : all)
      asio::dispatch(p->strand, [p] {
        for (auto& conn : p->idle) {
          conn->idle_timer.reset();
          conn->close();
          --p->total;
        }
        p->idle.clear();
      });
  }

  // Runs the exchange on the connection's strand; any thread.
  void run(const origin_pool_ptr& p, const connection_ptr& conn, const call_ptr& c) {
    auto self = shared_from_this();
    asio::co_spawn(conn->strand, exchange(self, conn, c),
                   [self, p, conn, c](std::exception_ptr ep, exchange_result r) {
                     if (ep) {
                       r = exchange_result{};
                       try {
                         std::rethrow_exception(ep);
                       } catch (const std::exception& ex) {
                         r.err = transport_error(std::string{"HTTP client: "}
                                                   + ex.what(),
                                                 *c);
                       } catch (...) {
                         r.err = transport_error("HTTP client: unknown failure", *c);
                       }
                     }
                     bool reusable = !r.err && r.reusable;
                     if (!reusable)
                       conn->close();
                     asio::dispatch(p->strand, [self, p, conn, reusable] {
                       self->release(p, conn, reusable);
                     });
                     if (r.err)
                       self->finish(c, std::move(r.err));
                     else
                       self->finish(c, std::move(*r.resp));
                   });
  }

  // Delivers the result, following a redirect first if asked to.
  void finish(const call_ptr& c, caf::expected<http_response> result) {
    if (result && c->req.follow_redirects && is_redirect(result->status)
        && c->redirects_left > 0) {
      auto loc = result->header("location");
      if (!loc.empty()) {
        auto next = resolve_url(c->req.url, loc);
        if (!next)
          return c->done(std::move(next.error()));
        http_request req = c->req;
        req.url = std::move(*next);
        auto st = result->status;
        if (st == 303
            || ((st == 301 || st == 302) && req.method == http::verb::post)) {
          if (req.method != http::verb::head)
            req.method = http::verb::get;
          req.body.clear();
          std::erase_if(req.headers, [](const http_header& h) {
            return beast::iequals(h.name, "content-type")
                   || beast::iequals(h.name, "content-length");
          });
        }
        // Credentials never follow a redirect to another origin.
        auto next_url = parse_http_url(req.url);
        if (!next_url || next_url->origin() != c->url.origin())
          std::erase_if(req.headers, [](const http_header& h) {
            return beast::iequals(h.name, "authorization")
                   || beast::iequals(h.name, "cookie")
                   || beast::iequals(h.name, "x-api-key");
          });
        return start(std::move(req), std::move(c->done), c->deadline,
                     c->redirects_left - 1);
      }
    }
    c->done(std::move(result));
  }

  // -- the coroutines (on the connection's strand) --------------------------------

  static asio::awaitable<caf::error> connect(std::shared_ptr<impl> self,
                                             connection_ptr conn, call_ptr c) {
    auto& opts = self->opts;
    const parsed_url& hop = c->proxy ? *c->proxy : c->url;
    auto b = phase_budget(*c, opts.timeouts.connect);
    if (b.expired)
      co_return timeout_error("connect", b, *c);
    auto started = steady::now();
    beast::error_code ec;
    std::vector<tcp::endpoint> endpoints;
    if (hop.host_is_ip) {
      endpoints.emplace_back(asio::ip::make_address(hop.host), hop.port);
    } else {
      auto resolver = std::make_shared<tcp::resolver>(conn->strand);
      auto timed_out = std::make_shared<bool>(false);
      asio::steady_timer timer{conn->strand};
      timer.expires_after(b.time);
      timer.async_wait([resolver, timed_out](const beast::error_code& tec) {
        if (!tec) {
          *timed_out = true;
          resolver->cancel();
        }
      });
      auto results = co_await resolver->async_resolve(
        hop.host, std::to_string(hop.port),
        asio::redirect_error(asio::use_awaitable, ec));
      timer.cancel();
      if (*timed_out)
        co_return timeout_error("connect (name resolution)", b, *c);
      if (ec)
        co_return transport_error("cannot resolve host " + hop.host + ": "
                                    + ec.message(),
                                  *c);
      for (const auto& r : results)
        endpoints.push_back(r.endpoint());
    }
    conn->plain.emplace(conn->strand);
    conn->plain->expires_after(b.time - (steady::now() - started));
    co_await conn->plain->async_connect(endpoints,
                                        asio::redirect_error(asio::use_awaitable,
                                                             ec));
    if (ec == beast::error::timeout)
      co_return timeout_error("connect", b, *c);
    if (ec)
      co_return transport_error(std::string{"cannot connect to "}
                                  + (c->proxy ? "proxy " : "") + hop.authority()
                                  + ": " + ec.message(),
                                *c);
    conn->plain->socket().set_option(tcp::no_delay{true}, ec);
    if (c->proxy && c->url.tls) {
      // CONNECT tunnel through the proxy, within the connect budget.
      http::request<http::empty_body> creq{http::verb::connect,
                                           c->url.authority(), 11};
      creq.set(http::field::host, c->url.authority());
      creq.set(http::field::user_agent, opts.user_agent);
      if (!c->proxy->userinfo.empty())
        creq.set(http::field::proxy_authorization,
                 "Basic " + base64(c->proxy->userinfo));
      co_await http::async_write(*conn->plain, creq,
                                 asio::redirect_error(asio::use_awaitable, ec));
      http_connect_parser parser;
      configure_connect_parser(parser, opts.limits);
      if (!ec)
        co_await http::async_read(*conn->plain, conn->buffer, parser,
                                  asio::redirect_error(asio::use_awaitable, ec));
      if (ec == beast::error::timeout)
        co_return timeout_error("connect (proxy CONNECT)", b, *c);
      if (ec)
        co_return transport_error("proxy CONNECT to " + c->url.authority()
                                    + " failed: " + ec.message(),
                                  *c);
      auto st = parser.get().result_int();
      if (st / 100 != 2)
        co_return transport_error("proxy refused CONNECT to " + c->url.authority()
                                    + " with status " + std::to_string(st),
                                  *c);
      conn->buffer.clear();
    }
    if (c->url.tls) {
      auto hb = phase_budget(*c, opts.timeouts.tls_handshake);
      if (hb.expired)
        co_return timeout_error("TLS handshake", hb, *c);
      conn->tls.emplace(std::move(*conn->plain), self->tls_ctx);
      conn->plain.reset();
      SSL* s = conn->tls->native_handle();
      if (!c->url.host_is_ip)
        SSL_set_tlsext_host_name(s, c->url.host.c_str());
      if (!opts.tls.insecure_skip_verify) {
        X509_VERIFY_PARAM* param = SSL_get0_param(s);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok = c->url.host_is_ip
                   ? X509_VERIFY_PARAM_set1_ip_asc(param, c->url.host.c_str())
                   : X509_VERIFY_PARAM_set1_host(param, c->url.host.c_str(), 0);
        if (ok != 1)
          co_return transport_error("TLS: cannot set the expected host name", *c);
      }
      conn->lowest().expires_after(hb.time);
      co_await conn->tls->async_handshake(ssl::stream_base::client,
                                          asio::redirect_error(asio::use_awaitable,
                                                               ec));
      if (ec == beast::error::timeout)
        co_return timeout_error("TLS handshake", hb, *c);
      if (ec) {
        auto vr = SSL_get_verify_result(s);
        if (vr != X509_V_OK && !opts.tls.insecure_skip_verify)
          co_return transport_error(std::string{"TLS: certificate verify failed ("}
                                      + X509_verify_cert_error_string(vr) + ")",
                                    *c);
        co_return transport_error("TLS handshake failed: " + ec.message(), *c);
      }
    }
    conn->lowest().expires_never();
    self->n_connections.fetch_add(1, std::memory_order_relaxed);
    co_return caf::error{};
  }

  template <class Stream>
  static asio::awaitable<exchange_result>
  transact(std::shared_ptr<impl> self, Stream& stream, connection_ptr conn,
           call_ptr c, const http::request<http::string_body>& req) {
    auto& opts = self->opts;
    exchange_result r;
    beast::error_code ec;
    auto wb = phase_budget(*c, opts.timeouts.write);
    if (wb.expired) {
      r.err = timeout_error("write", wb, *c);
      co_return r;
    }
    conn->lowest().expires_after(wb.time);
    self->n_requests.fetch_add(1, std::memory_order_relaxed);
    co_await http::async_write(stream, req,
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      r.stale = is_closed_error(ec);
      r.err = ec == beast::error::timeout
                ? timeout_error("write", wb, *c)
                : transport_error("HTTP write failed: " + ec.message(), *c);
      co_return r;
    }
    auto rb = phase_budget(*c, opts.timeouts.read);
    if (rb.expired) {
      r.err = timeout_error("read", rb, *c);
      co_return r;
    }
    conn->lowest().expires_after(rb.time);
    http_response_parser parser;
    configure_response_parser(parser, opts.limits,
                              c->req.method == http::verb::head);
    co_await http::async_read(stream, conn->buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == beast::error::timeout)
        r.err = timeout_error("read", rb, *c);
      else if (ec == http::error::header_limit)
        r.err = transport_error("response header exceeds limit ("
                                  + std::to_string(opts.limits.max_header_bytes)
                                  + " bytes)",
                                *c);
      else if (ec == http::error::body_limit)
        r.err = transport_error("response body exceeds limit ("
                                  + std::to_string(opts.limits.max_body_bytes)
                                  + " bytes)",
                                *c);
      else if (is_closed_error(ec) && !parser.got_some() && conn->buffer.size() == 0) {
        r.stale = true;
        r.err = transport_error("connection closed before any response byte ("
                                  + ec.message() + ")",
                                *c);
      } else if (ec == http::error::partial_message || is_closed_error(ec))
        r.err = transport_error("connection closed before the response was "
                                "complete (truncated response: "
                                  + ec.message() + ")",
                                *c);
      else
        r.err = transport_error("HTTP read failed: " + ec.message(), *c);
      co_return r;
    }
    conn->lowest().expires_never();
    r.resp = take_http_response(parser, r.reusable);
    co_return r;
  }

  static asio::awaitable<exchange_result>
  exchange(std::shared_ptr<impl> self, connection_ptr conn, call_ptr c) {
    auto& opts = self->opts;
    bool via_proxy_plain = c->proxy && !c->url.tls;
    http::request<http::string_body> req{c->req.method,
                                         via_proxy_plain ? c->url.absolute()
                                                         : c->url.target,
                                         11};
    req.set(http::field::host, c->url.host_header());
    bool has_ua = false;
    for (const auto& h : c->req.headers) {
      if (beast::iequals(h.name, "host"))
        continue;
      if (beast::iequals(h.name, "user-agent"))
        has_ua = true;
      req.insert(h.name, h.value);
    }
    if (!has_ua && !opts.user_agent.empty())
      req.set(http::field::user_agent, opts.user_agent);
    if (via_proxy_plain && !c->proxy->userinfo.empty())
      req.set(http::field::proxy_authorization, "Basic " + base64(c->proxy->userinfo));
    req.keep_alive(true);
    req.body() = c->req.body;
    req.prepare_payload();
    for (int attempt = 0;; ++attempt) {
      bool reused = conn->open();
      if (!reused) {
        if (auto err = co_await connect(self, conn, c)) {
          exchange_result r;
          r.err = std::move(err);
          co_return r;
        }
      }
      exchange_result r;
      if (conn->tls)
        r = co_await transact(self, *conn->tls, conn, c, req);
      else
        r = co_await transact(self, *conn->plain, conn, c, req);
      if (r.stale && reused && attempt == 0 && replay_safe(c->req)) {
        // The pooled connection had died while idle: once more, fresh.
        self->n_stale.fetch_add(1, std::memory_order_relaxed);
        conn->close();
        continue;
      }
      if (!r.err)
        ++conn->uses;
      co_return r;
    }
  }
};

// -- the facade ----------------------------------------------------------------------

caf::expected<http_client> http_client::make(asio::io_context& ctx,
                                             http_client_options opts) {
  auto ptr = std::make_shared<impl>(ctx, std::move(opts));
  if (auto err = ptr->init())
    return err;
  return http_client{std::move(ptr)};
}

http_client::http_client(std::shared_ptr<impl> ptr) : impl_(std::move(ptr)) {
}

http_client::http_client(http_client&&) noexcept = default;

http_client& http_client::operator=(http_client&& other) noexcept {
  if (this != &other) {
    if (impl_)
      impl_->close_idle();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

http_client::~http_client() {
  if (impl_)
    impl_->close_idle();
}

void http_client::async_request(http_request req, callback done) {
  std::optional<steady::time_point> deadline;
  if (req.deadline > caf::timespan::zero())
    deadline = steady::now()
               + std::chrono::duration_cast<steady::duration>(req.deadline);
  auto hops = req.follow_redirects ? impl_->opts.max_redirects : 0u;
  impl_->start(std::move(req), std::move(done), deadline, hops);
}

void http_client::close_idle() {
  impl_->close_idle();
}

http_client_stats http_client::stats() const {
  http_client_stats s;
  s.requests = impl_->n_requests.load();
  s.connections_opened = impl_->n_connections.load();
  s.stale_retries = impl_->n_stale.load();
  return s;
}

const http_client_options& http_client::options() const noexcept {
  return impl_->opts;
}

boost::asio::any_io_executor http_client::get_executor() const {
  return impl_->ctx.get_executor();
}

caf::error http_client_options::validate(const std::string& prefix) const {
  using namespace option_check;
  return first_error(positive(timeouts.connect, prefix + "connect-timeout"),
                     positive(timeouts.tls_handshake, prefix + "tls-handshake-timeout"),
                     positive(timeouts.write, prefix + "write-timeout"),
                     positive(timeouts.read, prefix + "read-timeout"),
                     at_least(max_connections_per_origin, 1,
                              prefix + "max-connections-per-origin"),
                     at_least(max_queued_per_origin, 1, prefix + "max-queued-per-origin"),
                     non_negative(idle_timeout, prefix + "idle-timeout"));
}

} // namespace sail
