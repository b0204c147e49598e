#include "sail_tinker/actors/runtime.hpp"

#include <cstdlib>

#include <boost/url/parse.hpp>
#include <caf/send.hpp>

#include "sail_tinker/actors/bounded_stop.hpp"
#include "sail_tinker/actors/durable_completer.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/redact.hpp"

namespace sail {

namespace {

std::string env_or(const char* name, std::string fallback) {
  auto* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string{value} : fallback;
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
  rt->bridge_ = spawn_bridge(sys, "runtime");
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
  stop_bounded(sys_, completers, drain);
  stop_bounded(sys_, bridge_, drain);
  // The pool fails its open work and waits for its workers before it quits,
  // so nothing uses the client after this returns.
  stop_bounded(sys_, pool_, grace);
  stop_bounded(sys_, resolver_, grace);
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

token_completer::token_completer(completer_actor completer, bridge_actor bridge)
  : completer_(std::move(completer)), bridge_(std::move(bridge)) {
}

void token_completer::sample(sample_request req, std::function<void(sample_result)> done) {
  // No timeout (see actors/bridge.hpp): a completer answers every sample.
  bridge_send<tokens_with_logprobs>(bridge_, std::move(done), atom::sample_v, completer_,
                                    std::move(req), no_call_timeout);
}

std::future<token_completer::sample_result> token_completer::sample(sample_request req) {
  return bridge_future<tokens_with_logprobs>(bridge_, atom::sample_v, completer_,
                                             std::move(req), no_call_timeout);
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
  bridge_send<group_result>(bridge_, std::move(done), atom::sample_group_v, completer_,
                            std::move(req), n, no_call_timeout);
}

std::future<token_completer::group_reply> token_completer::sample_group(sample_request req,
                                                                        uint32_t n) {
  return bridge_future<group_result>(bridge_, atom::sample_group_v, completer_,
                                     std::move(req), n, no_call_timeout);
}

void token_completer::cancel(std::string key_or_group) {
  caf::anon_send(completer_, atom::cancel_v, std::move(key_or_group));
}

caf::expected<completer_stats> token_completer::stats() {
  return blocking_request<completer_stats>(completer_.home_system(), completer_,
                                           std::chrono::seconds(10), atom::stats_v);
}

} // namespace sail
