#include "sail_tinker/actors/runtime.hpp"

#include <cstdlib>
#include <type_traits>
#include <unordered_map>

#include <boost/url/parse.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "sail_tinker/actors/durable_completer.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/redact.hpp"

namespace sail {

namespace {

/// A callback travelling to the bridge actor (local only).
template <class T>
struct callback_box {
  std::function<void(caf::expected<T>)> fn;
};

using sample_box = callback_box<tokens_with_logprobs>;
using group_box = callback_box<group_result>;

} // namespace

} // namespace sail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sail::sample_box)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sail::group_box)

namespace sail {

namespace {

std::string env_or(const char* name, std::string fallback) {
  auto* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string{value} : fallback;
}

/// Forwards future/callback-style calls to a completer and runs the
/// callback with the typed result. One bridge serves every token_completer of
/// a runtime; its requests are asynchronous, so calls run concurrently.
struct bridge_state {
  static inline const char* name = "sail.bridge";
  std::string label;
  uint64_t next = 0;
  /// The callbacks of open calls; each runs at most once. On exit every open
  /// call fails with `cancelled`, so no future is left waiting. (Held here
  /// once, not in the response handlers: a sample in flight costs less.)
  std::unordered_map<uint64_t, sample_box> open_samples;
  std::unordered_map<uint64_t, group_box> open_groups;

  template <class T>
  auto& open() {
    if constexpr (std::is_same_v<T, group_result>)
      return open_groups;
    else
      return open_samples;
  }
};

using bridge_ptr = caf::stateful_actor<bridge_state>*;

/// Runs and forgets open call `id` (no-op if it already ran).
template <class T>
void bridge_finish(bridge_ptr self, uint64_t id, caf::expected<T> res) {
  auto& open = self->state.open<T>();
  auto i = open.find(id);
  if (i == open.end())
    return;
  auto fn = std::move(i->second.fn);
  open.erase(i);
  fn(std::move(res));
}

template <class T, class Request>
void bridge_call(bridge_ptr self, Request&& request,
                 std::function<void(caf::expected<T>)> fn) {
  auto id = ++self->state.next;
  self->state.open<T>().emplace(id, callback_box<T>{std::move(fn)});
  request.then([self, id](T& res) { bridge_finish<T>(self, id, std::move(res)); },
               [self, id](caf::error& err) { bridge_finish<T>(self, id, std::move(err)); });
}

// CAF 0.17.6 dereferences a null argument tuple when a function-based actor
// is spawned without arguments (UBSan: init_fun_factory.hpp:85); every spawn
// here passes at least one.
caf::behavior bridge_behavior(bridge_ptr self, std::string label) {
  self->state.label = std::move(label);
  self->set_exit_handler([=](caf::exit_msg& em) {
    auto samples = std::move(self->state.open_samples);
    auto groups = std::move(self->state.open_groups);
    self->state.open_samples.clear();
    self->state.open_groups.clear();
    for (auto& [id, box] : samples)
      box.fn(make_error(errc::cancelled, "runtime shutting down"));
    for (auto& [id, box] : groups)
      box.fn(make_error(errc::cancelled, "runtime shutting down"));
    self->quit(em.reason);
  });
  return {
    // No CAF timeouts (see completer.cpp): a completer answers every
    // sample, and fails its open ones as `cancelled` when it exits.
    [=](atom::sample, completer_actor& c, sample_request& req, sample_box& box) {
      bridge_call<tokens_with_logprobs>(
        self, self->request(c, caf::infinite, atom::sample_v, std::move(req)),
        std::move(box.fn));
    },
    [=](atom::sample_group, completer_actor& c, sample_request& req, uint32_t n,
        group_box& box) {
      bridge_call<group_result>(
        self, self->request(c, caf::infinite, atom::sample_group_v, std::move(req), n),
        std::move(box.fn));
    },
  };
}

/// Sends an exit to every actor, waits up to `grace` for them to go down,
/// then kills the rest. Runs on a non-actor thread.
template <class Handle>
void terminate_all(caf::actor_system& sys, const std::vector<Handle>& actors,
                   caf::timespan grace) {
  if (actors.empty())
    return;
  caf::scoped_actor self{sys};
  size_t alive = 0;
  for (auto& a : actors) {
    if (!a)
      continue;
    self->monitor(a);
    self->send_exit(a, caf::exit_reason::user_shutdown);
    ++alive;
  }
  bool timed_out = false;
  while (alive > 0 && !timed_out) {
    self->receive([&](caf::down_msg&) { --alive; },
                  caf::after(grace) >> [&] { timed_out = true; });
  }
  if (timed_out)
    for (auto& a : actors)
      if (a)
        self->send_exit(a, caf::exit_reason::kill);
}

} // namespace

// -- options --------------------------------------------------------------------------

caf::expected<std::string> sail_host_for_mode(std::string_view mode) {
  // Sail's Python SDK (https://docs.sailresearch.com/sdk-configuration).
  if (mode == "prod")
    return std::string{default_sail_base_url};
  if (mode == "dev")
    return std::string{"https://dev.sailresearch.com"};
  if (mode == "staging")
    return std::string{"https://staging.sailresearch.com"};
  if (mode == "local")
    return std::string{"http://localhost:8080"};
  return invalid_argument("SAIL_MODE", "SAIL_MODE must be prod, dev, staging or "
                                       "local, got \""
                                         + redact_secrets(mode) + "\"");
}

caf::expected<std::string> normalize_sail_base_url(std::string url,
                                                   std::string_view field) {
  while (!url.empty() && url.back() == '/')
    url.pop_back();
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed || (parsed->scheme() != "http" && parsed->scheme() != "https")
      || parsed->host().empty() || parsed->has_query() || parsed->has_fragment())
    return invalid_argument(std::string{field},
                            "Sail base URL must be an absolute http(s) URL "
                            "without query, got \""
                              + redact_url(url) + "\"");
  constexpr std::string_view v1 = "/v1";
  if (url.size() >= v1.size()
      && std::string_view{url}.substr(url.size() - v1.size()) == v1)
    url.resize(url.size() - v1.size());
  while (!url.empty() && url.back() == '/')
    url.pop_back();
  return url;
}

caf::expected<std::string> runtime_options::resolve_sail_base_url() const {
  if (!sail_base_url.empty())
    return normalize_sail_base_url(sail_base_url, sail_base_url_origin);
  auto host = sail_host_for_mode(sail_mode);
  if (!host)
    return host;
  return normalize_sail_base_url(std::move(*host), "SAIL_MODE");
}

runtime_options runtime_options::from_env() {
  return from_env(runtime_options{});
}

runtime_options runtime_options::from_env(runtime_options opts) {
  if (auto url = env_or("SAIL_BASE_URL", ""); !url.empty()) {
    opts.sail_base_url = std::move(url);
    opts.sail_base_url_origin = "SAIL_BASE_URL";
  } else if (auto host = env_or("SAIL_API_URL", ""); !host.empty()) {
    opts.sail_base_url = std::move(host);
    opts.sail_base_url_origin = "SAIL_API_URL";
  } else {
    opts.sail_base_url.clear();
    opts.sail_mode = env_or("SAIL_MODE", "prod");
  }
  opts.sail_api_key = env_or("SAIL_API_KEY", "");
  opts.tinker_base_url = env_or("TINKER_BASE_URL", "");
  opts.tinker_api_key = env_or("TINKER_API_KEY", "");
  opts.webhook.token = env_or("SAIL_TINKER_WEBHOOK_TOKEN", "");
  opts.http.proxy = proxy_settings::from_env();
  return opts;
}

// -- runtime -------------------------------------------------------------------------

runtime::runtime(caf::actor_system& sys, runtime_options opts)
  : sys_(sys), opts_(std::move(opts)) {
  // Samples in flight each poll through the client: let its per-origin queue
  // hold all of them, so admission control stays in the pool.
  auto needed = opts_.pool.max_in_flight + 64;
  if (opts_.http.max_queued_per_origin < needed)
    opts_.http.max_queued_per_origin = static_cast<uint32_t>(needed);
}

caf::expected<std::unique_ptr<runtime>> runtime::start(caf::actor_system& sys,
                                                       runtime_options opts) {
  if (opts.sail_api_key.empty())
    return make_error(errc::not_configured, "SAIL_API_KEY is not set",
                      "SAIL_API_KEY");
  auto base = opts.resolve_sail_base_url();
  if (!base)
    return std::move(base.error());
  opts.sail_base_url = std::move(*base);
  // Every public path (C++ trainers, the CLI, the Python binding) gets the
  // same checks: the options' own validate(), not a restatement.
  if (auto err = opts.validate())
    return err;
  std::unique_ptr<runtime> rt{new runtime(sys, std::move(opts))};
  auto& o = rt->opts_;
  auto client = http_client::make(rt->io_, o.http);
  if (!client)
    return std::move(client.error());
  rt->client_.emplace(std::move(*client));
  rt->work_.emplace(rt->io_.get_executor());
  for (size_t i = 0; i < std::max<size_t>(1, o.io_threads); ++i)
    rt->threads_.emplace_back([io = &rt->io_] { io->run(); });
  o.pool.base_url = o.sail_base_url;
  o.pool.api_key = o.sail_api_key;
  o.pool.wire = o.wire;
  o.completer.wire = o.wire;
  if (o.completer.window_deadlines.empty())
    for (auto& [window, timing] : o.pool.windows)
      o.completer.window_deadlines.emplace(window, timing.deadline);
  o.completer.default_deadline = o.pool.default_timing.deadline;
  rt->pool_ = spawn_worker_pool(sys, *rt->client_, o.pool);
  if (o.webhook.enabled) {
    // The receiver runs on the runtime's io threads and reaches the pool
    // through a weak handle: a listener never keeps the pool alive.
    auto weak = caf::actor_cast<caf::weak_actor_ptr>(rt->pool_);
    auto to_pool = [weak](auto... xs) {
      if (auto strong = caf::actor_cast<caf::strong_actor_ptr>(weak))
        caf::anon_send(caf::actor_cast<pool_impl_actor>(strong), std::move(xs)...);
    };
    auto rx = webhook_receiver::start(
      rt->io_, o.webhook,
      [to_pool](webhook_delivery d) { to_pool(atom::webhook_v, std::move(d)); },
      [to_pool](webhook_rejection r) { to_pool(atom::rejected_v, std::string{to_string(r)}); });
    if (!rx) {
      rt->shutdown();
      return std::move(rx.error());
    }
    rt->receiver_ = std::move(*rx);
    o.completer.webhook = rt->receiver_->endpoint();
  }
  if (!o.tinker_api_key.empty()) {
    o.resolver.base_url = o.tinker_base_url;
    o.resolver.api_key = o.tinker_api_key;
    auto res = spawn_resolver(sys, *rt->client_, o.resolver);
    if (!res) {
      rt->shutdown();
      return std::move(res.error());
    }
    rt->resolver_ = std::move(*res);
  }
  rt->bridge_ = sys.spawn(bridge_behavior, std::string{"token_completer"});
  return rt;
}

runtime::~runtime() {
  shutdown();
}

caf::expected<completer_actor> runtime::make_completer(completer_config cfg) {
  auto c = spawn_completer(sys_, std::move(cfg), pool_, resolver_, opts_.models,
                           opts_.completer);
  if (c) {
    std::lock_guard<std::mutex> guard{mtx_};
    completers_.push_back(*c);
  }
  return c;
}

caf::expected<token_completer> runtime::make_token_completer(completer_config cfg) {
  auto c = make_completer(std::move(cfg));
  if (!c)
    return std::move(c.error());
  return token_completer{*c, bridge_};
}

caf::expected<completer_actor> runtime::make_durable_completer(completer_config cfg,
                                                               durable_options opts) {
  auto inner = make_completer(cfg);
  if (!inner)
    return inner;
  if (!opts.wire)
    opts.wire = opts_.wire;
  auto c = spawn_durable_completer(sys_, *inner, std::move(cfg), std::move(opts));
  if (c) {
    std::lock_guard<std::mutex> guard{mtx_};
    completers_.push_back(*c);
  }
  return c;
}

caf::expected<token_completer> runtime::make_durable_token_completer(completer_config cfg,
                                                                     durable_options opts) {
  auto c = make_durable_completer(std::move(cfg), std::move(opts));
  if (!c)
    return std::move(c.error());
  return token_completer{*c, bridge_};
}

void runtime::shutdown() {
  std::vector<completer_actor> completers;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (stopped_)
      return;
    stopped_ = true;
    completers.swap(completers_);
  }
  auto grace = opts_.shutdown_grace;
  // No deliveries once shutdown begins (a stopped receiver refuses
  // connections; Sail retries, then the result stays available by GET).
  if (receiver_)
    receiver_->stop();
  // Completers and the bridge only fail their open work in memory on exit:
  // give them time for it (with 100k open samples on a loaded machine that
  // can take seconds) rather than killing them with callbacks not yet run.
  auto drain = std::max(grace, caf::timespan{std::chrono::minutes(2)});
  terminate_all(sys_, completers, drain);
  terminate_all(sys_, std::vector<caf::actor>{bridge_}, drain);
  // The pool fails its open work and waits for its workers before it quits,
  // so nothing uses the client after this returns.
  terminate_all(sys_, std::vector<pool_impl_actor>{pool_}, grace);
  terminate_all(sys_, std::vector<resolver_actor>{resolver_}, grace);
  pool_ = nullptr;
  resolver_ = nullptr;
  bridge_ = nullptr;
  if (client_)
    client_->close_idle();
  work_.reset();
  io_.stop();
  for (auto& t : threads_)
    t.join();
  threads_.clear();
  receiver_.reset();
  client_.reset();
}

// -- token_completer ---------------------------------------------------------------

token_completer::token_completer(completer_actor completer, caf::actor bridge)
  : completer_(std::move(completer)), bridge_(std::move(bridge)) {
}

void token_completer::sample(sample_request req, std::function<void(sample_result)> done) {
  caf::anon_send(bridge_, atom::sample_v, completer_, std::move(req),
                 sample_box{std::move(done)});
}

std::future<token_completer::sample_result> token_completer::sample(sample_request req) {
  auto promise = std::make_shared<std::promise<sample_result>>();
  auto future = promise->get_future();
  sample(std::move(req), [promise](sample_result res) { promise->set_value(std::move(res)); });
  return future;
}

std::future<token_completer::sample_result>
token_completer::sample(model_input prompt, stop_condition stop,
                        std::optional<int64_t> max_tokens) {
  sample_request req;
  req.prompt = std::move(prompt);
  req.stop = std::move(stop);
  req.max_tokens = max_tokens;
  return sample(std::move(req));
}

void token_completer::sample_group(sample_request req, uint32_t n,
                                   std::function<void(group_reply)> done) {
  caf::anon_send(bridge_, atom::sample_group_v, completer_, std::move(req), n,
                 group_box{std::move(done)});
}

std::future<token_completer::group_reply> token_completer::sample_group(sample_request req,
                                                                        uint32_t n) {
  auto promise = std::make_shared<std::promise<group_reply>>();
  auto future = promise->get_future();
  sample_group(std::move(req), n,
               [promise](group_reply res) { promise->set_value(std::move(res)); });
  return future;
}

void token_completer::cancel(std::string key_or_group) {
  caf::anon_send(completer_, atom::cancel_v, std::move(key_or_group));
}

caf::expected<completer_stats> token_completer::stats() {
  caf::scoped_actor self{completer_.home_system()};
  caf::expected<completer_stats> result{completer_stats{}};
  self->request(completer_, std::chrono::seconds(10), atom::stats_v)
    .receive([&](completer_stats& s) { result = std::move(s); },
             [&](caf::error& err) { result = std::move(err); });
  return result;
}

} // namespace sail
