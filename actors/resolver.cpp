#include "sail_tinker/actors/resolver.hpp"

#include <unordered_map>

#include <boost/beast/http/verb.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "sail_tinker/actors/async_http.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/tinker_codec.hpp"

namespace sail {

namespace {

namespace http = boost::beast::http;
using url_promise = caf::typed_response_promise<signed_url>;

/// One shared resolution: every concurrent request for the same path (and
/// TTL) waits on it.
struct resolution {
  uint64_t id = 0;
  resolve_request req;
  std::string key;
  bool ttl_done = false;
  call_attempts call;  ///< the current REST call (TTL, then archive)
  uint64_t generation = 0;
  std::vector<url_promise> waiters;
};

struct resolver_state;

using resolver_ptr = resolver_impl_actor::stateful_pointer<resolver_state>;

struct resolver_state {
  static inline const char* name = "sail.resolver";

  explicit resolver_state(resolver_ptr self) : self(self) {
  }

  resolver_ptr self;
  http_client* client = nullptr;
  resolver_options opts;
  std::unique_ptr<retry_policy> retry;
  std::unordered_map<std::string, signed_url> cache;  ///< by tinker:// URI
  std::unordered_map<std::string, uint64_t> by_key;   ///< shared resolutions
  std::unordered_map<uint64_t, resolution> active;
  uint64_t next_id = 0;
  uint64_t next_generation = 0;

  // -- handlers (one per message of resolver_impl_actor) ------------------------------

  caf::result<signed_url> resolve(resolve_request& req) {
    if (auto err = encode_ttl_body(req.ttl_seconds); !err && req.ttl_seconds)
      return std::move(err.error());
    auto uri = req.path.to_uri();
    if (!req.ttl_seconds)
      if (auto hit = cached(uri))
        return *hit;
    auto key = uri + '#' + (req.ttl_seconds ? std::to_string(*req.ttl_seconds) : "-");
    auto rp = self->make_response_promise<signed_url>();
    if (auto i = by_key.find(key); i != by_key.end()) {
      active[i->second].waiters.push_back(rp);
      return rp;
    }
    auto id = ++next_id;
    auto& r = active[id];
    r.id = id;
    r.req = req;
    r.key = key;
    r.ttl_done = !req.ttl_seconds;
    r.call.start(r.ttl_done ? request_kind::tinker_archive : request_kind::tinker_ttl);
    r.waiters.push_back(rp);
    by_key.emplace(std::move(key), id);
    next_step(r);
    return rp;
  }

  void on_step(uint64_t id, uint64_t generation) {
    auto i = active.find(id);
    if (i != active.end() && i->second.generation == generation)
      send(i->second);
  }

  void on_http(http_completion& c) {
    auto i = active.find(c.tag);
    if (i == active.end() || i->second.generation != c.generation)
      return;
    auto& r = i->second;
    auto v = retry->judge(r.call, c.result, std::chrono::system_clock::now(),
                          std::chrono::steady_clock::now());
    if (v.outcome == verdict::retry) {
      r.generation = ++next_generation;
      self->delayed_send(self, v.delay, atom::step_v, r.id, r.generation);
      return;
    }
    if (v.outcome == verdict::fail)
      return finish(r, v.error ? std::move(v.error)
                               : error_of_status(r.call.kind, c.result->status,
                                                 c.result->body));
    auto& res = *c.result;
    if (!r.ttl_done) {
      r.ttl_done = true;
      r.call.start(request_kind::tinker_archive);
      return next_step(r);
    }
    auto now = caf::make_timestamp();
    auto url = decode_archive_response(res.status, res.header("Location"),
                                       res.header("Expires"), res.body, now);
    if (url) {
      url = with_refresh_schedule(std::move(*url), opts.refresh_margin, now);
      cache[r.req.path.to_uri()] = *url;
    }
    finish(r, std::move(url));
  }

  // -- resolutions ----------------------------------------------------------------------

  std::optional<signed_url> cached(const std::string& uri) {
    auto i = cache.find(uri);
    if (i == cache.end())
      return std::nullopt;
    // The completers' schedule too: past refresh_at a holder wants a new URL.
    if (caf::make_timestamp() >= i->second.refresh_at) {
      cache.erase(i);
      return std::nullopt;
    }
    return i->second;
  }

  void next_step(resolution& r) {
    if (r.ttl_done)
      if (auto hit = cached(r.req.path.to_uri()))
        return finish(r, *hit);
    send(r);
  }

  void send(resolution& r) {
    http_request req;
    req.deadline = opts.call_timeout;
    if (!r.ttl_done) {
      req.method = http::verb::put;
      req.url = tinker_url(opts.base_url, ttl_target(r.req.path));
      req.headers = tinker_headers(opts.api_key, true);
      req.body = *encode_ttl_body(r.req.ttl_seconds);
    } else {
      req.method = http::verb::get;
      req.url = tinker_url(opts.base_url, archive_target(r.req.path));
      req.headers = tinker_headers(opts.api_key, false);
      req.follow_redirects = false;
    }
    r.call.sent();
    r.generation = ++next_generation;
    start_http(self, *client, std::move(req), r.id, r.generation);
  }

  // The typed error of a final status.
  static caf::error error_of_status(request_kind kind, unsigned status,
                                    const std::string& body) {
    if (kind == request_kind::tinker_archive && (status == 405 || status == 501))
      return inference_error("the Tinker service lacks the archive call (HTTP "
                               + std::to_string(status) + ")",
                             body);
    return tinker_error_from_status(status, body);
  }

  void finish(resolution& r, caf::expected<signed_url> result) {
    auto waiters = std::move(r.waiters);
    by_key.erase(r.key);
    active.erase(r.id); // r dangles from here on
    for (auto& rp : waiters) {
      if (result)
        rp.deliver(*result);
      else
        rp.deliver(result.error());
    }
  }
};

resolver_impl_actor::behavior_type resolver_behavior(resolver_ptr self,
                                                     http_client* client,
                                                     resolver_options opts) {
  auto& st = self->state;
  st.client = client;
  st.retry = std::make_unique<retry_policy>(opts.retry, opts.seed);
  st.opts = std::move(opts);
  return {
    [self](atom::resolve, resolve_request& req) { return self->state.resolve(req); },
    [self](atom::http_done, http_completion& c) { self->state.on_http(c); },
    [self](atom::step, uint64_t id, uint64_t generation) {
      self->state.on_step(id, generation);
    },
  };
}

} // namespace

caf::expected<resolver_actor> spawn_resolver(caf::actor_system& sys,
                                             http_client& client,
                                             resolver_options opts) {
  if (auto err = check_tinker_api_key(opts.api_key))
    return err;
  auto base = checked_tinker_base_url(opts.base_url);
  if (!base)
    return std::move(base.error());
  opts.base_url = std::move(*base);
  resolver_impl_actor impl = sys.spawn(resolver_behavior, &client, std::move(opts));
  return resolver_actor{impl};
}

} // namespace sail
