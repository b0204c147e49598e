// The in-process runtime and API: one io_context with its threads, the HTTP
// client, the supervised worker pool, the resolver, and completers -- plus
// `token_completer`, a std::future / callback front for code that is not
// written as actors.
//
//   sail::system_config cfg;            // or node_config
//   caf::actor_system sys{cfg};
//   auto rt = sail::runtime::start(sys, sail::runtime_options::from_env());
//   auto tc = (*rt)->make_token_completer(config);   // validated
//   auto out = tc->sample({{1, 2, 3}}).get();        // expected<tokens_with_logprobs>
//   (*rt)->shutdown();                                // or let it go out of scope
//
// Shutdown is ordered (completers, then the pool -- which fails its open work
// and waits for its workers -- then the resolver, then the io_context) and
// never hangs: each stage waits a bounded time and then kills. Call it from a
// non-actor thread; the runtime must be destroyed before the actor system.
#pragma once

#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "sail_tinker/actors/bridge.hpp"
#include "sail_tinker/actors/completer.hpp"
#include "sail_tinker/actors/durable_options.hpp"
#include "sail_tinker/actors/resolver.hpp"
#include "sail_tinker/actors/worker_pool.hpp"
#include "sail_tinker/net/http_client.hpp"
#include "sail_tinker/net/webhook_receiver.hpp"

namespace sail {

/// Default Sail endpoint (SAIL_MODE=prod).
inline constexpr const char* default_sail_base_url = "https://api.sailresearch.com";

/// The API host of one of Sail's SDK modes (prod, dev, staging, local:
/// https://docs.sailresearch.com/sdk-configuration); invalid_argument (field SAIL_MODE) for another name.
caf::expected<std::string> sail_host_for_mode(std::string_view mode);

/// A Sail base URL as the runtime uses it: trailing slashes and one trailing
/// "/v1" removed, since the routes carry "/v1" themselves and OpenAI-style
/// clients are configured with ".../v1". invalid_argument naming `field`
/// unless it is an absolute http(s) URL without query or fragment.
caf::expected<std::string> normalize_sail_base_url(std::string url,
                                                   std::string_view field);

struct runtime_options {
  /// Sail base URL, with or without the trailing "/v1". Empty: the host of
  /// `sail_mode`.
  std::string sail_base_url = default_sail_base_url;
  /// Where sail_base_url came from, named in errors (an environment
  /// variable or a flag).
  std::string sail_base_url_origin = "sail_base_url";
  /// Sail SDK mode (prod | dev | staging | local), used when sail_base_url
  /// is empty.
  std::string sail_mode = "prod";
  std::string sail_api_key;
  std::string tinker_base_url;  ///< empty: Tinker's default
  std::string tinker_api_key;
  /// Threads running the io_context.
  size_t io_threads = 1;
  http_client_options http;
  /// base_url and api_key are taken from above.
  pool_options pool;
  resolver_options resolver;
  completer_options completer;
  /// The completion-webhook receiver (off by default). Its endpoint goes
  /// into completer.webhook.
  webhook_options webhook;
  model_table models = model_table::builtin();
  /// The unpublished wire details ([wire]); copied into the completers'
  /// and the pool's options by start().
  wire_options wire;
  /// Bound of each shutdown stage before it kills.
  caf::timespan shutdown_grace = std::chrono::seconds(5);

  /// `base` (default: the defaults) plus the environment, as Sail's Python
  /// SDK reads it and more:
  /// SAIL_API_KEY; the endpoint from SAIL_BASE_URL (this project's own),
  /// else SAIL_API_URL (the SDK's host override), else SAIL_MODE (the SDK's
  /// modes; default prod); TINKER_API_KEY, TINKER_BASE_URL and the proxy
  /// variables; SAIL_TINKER_WEBHOOK_TOKEN (the webhook token, when the
  /// receiver is enabled). An unknown SAIL_MODE or a malformed URL is
  /// reported by resolve_sail_base_url() (and so by runtime::start).
  static runtime_options from_env();
  static runtime_options from_env(runtime_options base);

  /// The base URL the runtime talks to (see normalize_sail_base_url).
  caf::expected<std::string> resolve_sail_base_url() const;

  /// Checks every option (this struct's and the nested ones': pool, http,
  /// resolver, completer, and webhook when enabled), naming a bad one as
  /// caf-application.ini spells it: "sail.io-threads", "pool.max-in-flight",
  /// "http.read-timeout", ... invalid_argument.
  caf::error validate() const;
};

class token_completer;

class runtime {
public:
  /// Starts the io threads, the client, the pool, (with a Tinker key) the
  /// resolver and (when enabled) the webhook receiver. not_configured
  /// without a Sail API key; invalid_argument for a bad base URL, client or
  /// webhook options; transport_error if the webhook address cannot be bound.
  static caf::expected<std::unique_ptr<runtime>> start(caf::actor_system& sys,
                                                       runtime_options opts);

  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  /// A completer for `cfg`, or the configuration's typed error.
  caf::expected<completer_actor> make_completer(completer_config cfg);

  /// The same, behind the future/callback API.
  caf::expected<token_completer> make_token_completer(completer_config cfg);

  /// A completer for `cfg` whose samples are durable in `opts.run` at step
  /// `opts.step` (actors/durable_completer.hpp): a trainer killed and
  /// started again with the same run gets the same keys and pays for no
  /// sample twice.
  caf::expected<completer_actor> make_durable_completer(completer_config cfg,
                                                        durable_options opts);

  /// The same, behind the future/callback API.
  caf::expected<token_completer> make_durable_token_completer(completer_config cfg,
                                                              durable_options opts);

  pool_actor pool() const { return pool_; }
  /// Null when no Tinker key is configured.
  resolver_actor resolver() const { return resolver_; }
  caf::actor_system& system() { return sys_; }
  http_client& client() { return *client_; }
  const runtime_options& options() const { return opts_; }

  /// The webhook samples of this runtime carry (empty when the receiver is
  /// off): its public URL and token.
  webhook_endpoint webhook() const { return opts_.completer.webhook; }

  /// The receiver's bound port (0 when it is off).
  uint16_t webhook_port() const { return receiver_ ? receiver_->port() : 0; }

  /// Ordered, bounded shutdown; idempotent.
  void shutdown();

private:
  runtime(caf::actor_system& sys, runtime_options opts);

  caf::actor_system& sys_;
  runtime_options opts_;
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  std::optional<http_client> client_;
  std::unique_ptr<webhook_receiver> receiver_;
  pool_impl_actor pool_;
  resolver_actor resolver_;
  bridge_actor bridge_;
  std::mutex mtx_;
  std::vector<completer_actor> completers_;
  bool stopped_ = false;

  friend class token_completer;
};

/// Future and callback API over a completer (through the runtime's bridge,
/// actors/bridge.hpp). Cheap to copy. Callbacks run on a CAF scheduler
/// thread: keep them short and never block in them. Every callback runs
/// once; after the runtime's shutdown with `cancelled`.
class token_completer {
public:
  using sample_result = caf::expected<tokens_with_logprobs>;
  using group_reply = caf::expected<group_result>;

  token_completer(completer_actor completer, bridge_actor bridge);

  std::future<sample_result> sample(sample_request req);
  std::future<sample_result> sample(model_input prompt, stop_condition stop = {},
                                    std::optional<int64_t> max_tokens = std::nullopt);
  void sample(sample_request req, std::function<void(sample_result)> done);

  std::future<group_reply> sample_group(sample_request req, uint32_t n);
  void sample_group(sample_request req, uint32_t n, std::function<void(group_reply)> done);

  /// Cancels the sample with this Idempotency-Key, or every sample of the group.
  void cancel(std::string key_or_group);

  caf::expected<completer_stats> stats();

  completer_actor handle() const { return completer_; }

private:
  completer_actor completer_;
  bridge_actor bridge_;
};

} // namespace sail
