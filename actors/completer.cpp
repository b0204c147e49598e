#include "sail_tinker/actors/completer.hpp"

#include <algorithm>
#include <memory>
#include <optional>
#include <unordered_map>

#include <boost/uuid/random_generator.hpp>
#include <boost/uuid/uuid_io.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/sail_codec.hpp"
#include "sail_tinker/net/tinker_codec.hpp"

namespace sail {

namespace {

using sample_promise = caf::typed_response_promise<tokens_with_logprobs>;

/// A sample that waits for the checkpoint's signed URL.
struct waiting_sample {
  sample_request req;
  std::function<void(caf::expected<tokens_with_logprobs>)> done;
};

struct completer_state;

using completer_ptr = completer_impl_actor::stateful_pointer<completer_state>;
using sample_callback = std::function<void(caf::expected<tokens_with_logprobs>)>;

struct completer_state {
  static inline const char* name = "sail.completer";

  explicit completer_state(completer_ptr self) : self(self) {
  }

  completer_ptr self;
  completer_config cfg;
  completer_options opts;
  pool_actor pool;
  resolver_actor resolver;
  std::optional<tinker_path> checkpoint;
  /// The checkpoint's current signed URL (its schedule set by the resolver).
  std::optional<signed_url> url;
  bool resolving = false;
  /// Only the newest refresh timer acts (CAF 0.17 cannot cancel one).
  uint64_t refresh_generation = 0;
  /// Samples that arrived while no usable URL was known.
  std::vector<waiting_sample> waiting;
  /// Every open logical sample; each callback runs exactly once (on a
  /// result, an error, or with `cancelled` when the completer exits).
  std::unordered_map<uint64_t, sample_callback> open;
  uint64_t next_open = 0;
  /// Set once the pool (or the resolver) ended: from then on every sample
  /// that needs it fails with this `node_down`. Nothing restarts either
  /// (docs/architecture.md, "Supervision").
  std::optional<caf::error> pool_gone;
  std::optional<caf::error> resolver_gone;
  completer_stats stats;
  boost::uuids::random_generator uuids;

  std::string new_key() { return boost::uuids::to_string(uuids()); }

  // -- handlers (one per message of completer_impl_actor) -----------------------------

  caf::result<tokens_with_logprobs> sample(sample_request& req) {
    if (auto err = validate(req))
      return err;
    if (!req.body.empty() && req.key.empty())
      return invalid_argument("body", "a pre-encoded body is sent under its own key");
    auto rp = self->make_response_promise<tokens_with_logprobs>();
    run(std::move(req), [rp](caf::expected<tokens_with_logprobs> res) mutable {
      if (res)
        rp.deliver(std::move(*res));
      else
        rp.deliver(std::move(res.error()));
    });
    return rp;
  }

  caf::result<group_result> sample_group(sample_request& req, uint32_t n) {
    if (n == 0 || n > opts.max_group_size)
      return invalid_argument("n", "group size must be within 1.."
                                     + std::to_string(opts.max_group_size));
    if (auto err = validate(req))
      return err;
    if (!req.response_id.empty())
      return invalid_argument("response_id", "a response id attaches one sample, not a group");
    if (!req.body.empty())
      return invalid_argument("body", "a pre-encoded body is one sample's, not a group's");
    struct group_state {
      group_result result;
      size_t pending = 0;
      bool delivered = false;
      caf::typed_response_promise<group_result> rp;
    };
    auto g = std::make_shared<group_state>();
    g->rp = self->make_response_promise<group_result>();
    g->result.group_id = req.group_id.empty() ? new_key() : req.group_id;
    g->result.members.resize(n);
    g->pending = n;
    auto cache_key = req.prompt_cache_key.empty() ? g->result.group_id
                                                  : req.prompt_cache_key;
    auto policy = opts.group_policy;
    for (uint32_t i = 0; i < n; ++i) {
      auto member = req;
      member.group_id = g->result.group_id;
      member.prompt_cache_key = cache_key;
      member.key = req.key.empty() ? std::string{} : req.key + "." + std::to_string(i);
      run(std::move(member), [self = self, g, i, policy](
                               caf::expected<tokens_with_logprobs> res) {
        --g->pending;
        if (g->delivered)
          return;
        if (!res && policy == group_failure_policy::fail_group) {
          g->delivered = true;
          g->rp.deliver(res.error());
          // The other members are of no use any more.
          self->state.cancel(g->result.group_id);
          return;
        }
        auto& m = g->result.members[i];
        if (res)
          m.result = std::move(*res);
        else
          m.error = std::move(res.error());
        if (g->pending == 0) {
          g->delivered = true;
          g->rp.deliver(std::move(g->result));
        }
      });
    }
    return g->rp;
  }

  void cancel(const std::string& what) {
    // Samples still waiting for the signed URL never reached the pool.
    std::vector<waiting_sample> cancelled;
    auto& w = waiting;
    auto mid = std::stable_partition(w.begin(), w.end(), [&](auto& x) {
      return x.req.key != what && x.req.group_id != what;
    });
    std::move(mid, w.end(), std::back_inserter(cancelled));
    w.erase(mid, w.end());
    for (auto& x : cancelled)
      x.done(make_error(errc::cancelled, "sample cancelled by the caller"));
    self->send(pool, atom::cancel_v, what);
  }

  /// Own counters merged with the pool's (the pool's alone if it fails to
  /// answer).
  caf::result<completer_stats> get_stats() {
    auto rp = self->make_response_promise<completer_stats>();
    auto own = stats;
    self->request(pool, std::chrono::seconds(10), atom::stats_v)
      .then(
        [rp, own](completer_stats& ps) mutable {
          auto merged = own;
          merged.polls = ps.polls;
          merged.retries_by_cause = ps.retries_by_cause;
          merged.webhooks = ps.webhooks;
          merged.polls_per_sample = ps.polls_per_sample;
          merged.notice_delay = ps.notice_delay;
          merged.notice_delay_sum_ms = ps.notice_delay_sum_ms;
          merged.guard = ps.guard;
          rp.deliver(std::move(merged));
        },
        [rp, own](caf::error&) mutable { rp.deliver(own); });
    return rp;
  }

  /// The background refresh timer (armed at the URL's refresh_at).
  void refresh(uint64_t generation) {
    if (checkpoint && generation == refresh_generation)
      resolve_url();
  }

  /// Exit: no promise is left silent (CAF 0.17 has no broken_promise).
  void shutdown(const caf::error& reason) {
    fail_open(make_error(errc::cancelled, "completer shutting down"));
    waiting.clear();
    // The pool and the resolver outlive completers: drop our monitors on them.
    self->demonitor(pool.address());
    if (resolver)
      self->demonitor(resolver.address());
    self->quit(reason);
  }

  /// The end of the pool or the resolver (monitored since spawn). A down
  /// message from anyone else (e.g. one a peer forged) is dropped.
  void peer_down(const caf::down_msg& dm) {
    auto from = self->current_sender();
    if (pool && dm.source == pool.address()
        && from == caf::actor_cast<caf::strong_actor_ptr>(pool)) {
      pool_gone = make_error(errc::node_down,
                             "the worker pool of this node ended: " + render(dm.reason));
      // A pool that ended by its exit handler answered its samples first;
      // one that was killed never will: every open sample fails now (those
      // waiting for a URL too: they would go to the same pool).
      fail_open(*pool_gone);
      return;
    }
    if (resolver && dm.source == resolver.address()
        && from == caf::actor_cast<caf::strong_actor_ptr>(resolver)) {
      resolver_gone = make_error(errc::node_down, "the Tinker resolver of this node ended: "
                                                    + render(dm.reason));
      if (resolving) {
        // Its answer may never come.
        resolving = false;
        fail_waiting(*resolver_gone);
      }
    }
  }

  /// Ends every open sample with `err`.
  void fail_open(const caf::error& err) {
    std::vector<uint64_t> ids;
    for (auto& kv : open)
      ids.push_back(kv.first);
    for (auto id : ids)
      complete(id, err);
  }

  /// A request to the pool or the resolver that bounced because its
  /// receiver had ended (before its down message arrived): `node_down`.
  static caf::error bounced(caf::error err, const char* receiver) {
    if (err == caf::sec::request_receiver_down)
      return make_error(errc::node_down, std::string{"the "} + receiver + " of this node ended");
    return err;
  }

  // -- samples --------------------------------------------------------------------------

  /// Runs one validated logical sample; `done` sees the result exactly once.
  void run(sample_request req, sample_callback done) {
    ++stats.in_flight;
    auto id = ++next_open;
    open.emplace(id, std::move(done));
    auto counted = [self = self, id](caf::expected<tokens_with_logprobs> res) {
      self->state.complete(id, std::move(res));
    };
    if (req.key.empty())
      req.key = new_key();
    // A sample waits for a resolve only while no usable URL is known (at
    // start, or after refreshes failed until the URL's use_until passed).
    if (checkpoint && !url_usable() && req.body.empty()) {
      waiting.push_back({std::move(req), std::move(counted)});
      resolve_url();
      return;
    }
    submit(req, std::move(counted));
  }

  /// Ends open sample `id` (no-op if it already ended).
  void complete(uint64_t id, caf::expected<tokens_with_logprobs> res) {
    auto i = open.find(id);
    if (i == open.end())
      return;
    auto done = std::move(i->second);
    open.erase(i);
    --stats.in_flight;
    if (res) {
      ++stats.completed;
      usage_entry(stats.usage, cfg.model, cfg.completion_window).add(res->usage);
    } else {
      auto code = code_of(res.error());
      ++stats.failed_by_kind[code ? to_string(*code) : "other"];
    }
    done(std::move(res));
  }

  bool url_usable() const {
    return url && caf::make_timestamp() < url->use_until;
  }

  void arm_refresh(caf::timestamp at) {
    auto delay = std::max(caf::timespan{0}, at - caf::make_timestamp());
    self->delayed_send(self, delay, atom::refresh_v, ++refresh_generation);
  }

  /// Resolves the checkpoint's URL (one resolve at a time; a TTL, when
  /// configured, is set by that same resolve: once per refresh, never per
  /// sample). Samples keep using the current URL meanwhile.
  void resolve_url() {
    if (resolving)
      return;
    if (resolver_gone)
      return fail_waiting(*resolver_gone);
    resolving = true;
    resolve_request rr{*checkpoint, cfg.tinker_ttl_seconds};
    self->request(resolver, opts.resolve_timeout, atom::resolve_v, rr)
      .then([self = self](signed_url& url) { self->state.resolved(std::move(url)); },
            [self = self](caf::error& err) {
              self->state.resolve_failed(bounced(std::move(err), "Tinker resolver"));
            });
  }

  void resolved(signed_url fresh) {
    resolving = false;
    if (caf::make_timestamp() >= fresh.use_until) {
      // Nothing to schedule: the next sample resolves again.
      resolve_failed(inference_error("Tinker returned a signed URL that is "
                                     "already at or past its expiry"));
      return;
    }
    url = std::move(fresh);
    arm_refresh(url->refresh_at);
    auto ready = std::move(waiting);
    waiting.clear();
    for (auto& x : ready)
      submit(x.req, std::move(x.done));
  }

  void resolve_failed(caf::error err) {
    resolving = false;
    fail_waiting(err);
    // A failed background refresh: the current URL still serves; try again
    // within its remaining usable time.
    if (url_usable()) {
      auto left = url->use_until - caf::make_timestamp();
      auto retry = std::max(caf::timespan{std::chrono::milliseconds(100)}, left / 4);
      arm_refresh(caf::make_timestamp() + retry);
    }
  }

  /// Ends the samples waiting for a URL with `err`.
  void fail_waiting(const caf::error& err) {
    auto failed = std::move(waiting);
    waiting.clear();
    for (auto& x : failed)
      x.done(err);
  }

  void submit(const sample_request& req, sample_callback done) {
    if (!req.body.empty())
      return submit_encoded(req, std::move(done));
    auto job_cfg = cfg;
    caf::timestamp url_expires{};
    if (checkpoint) {
      job_cfg.tinker_lora_signed_url = url->url;
      job_cfg.tinker_checkpoint.reset();
      job_cfg.tinker_ttl_seconds.reset();
      url_expires = url->expires;
    }
    // The webhook is the pinned one (a cluster re-routes a sample with the
    // body it first had: docs/cluster.md), else this node's own.
    const webhook_endpoint* hook = nullptr;
    if (req.webhook)
      hook = req.webhook->empty() ? nullptr : &*req.webhook;
    else if (!opts.webhook.empty())
      hook = &opts.webhook;
    auto encoded = encode_create(job_cfg, req, req.key, true, hook, opts.wire);
    if (!encoded)
      return done(std::move(encoded.error()));
    sail_job job;
    job.idempotency_key = req.key;
    job.body = std::move(encoded->body);
    job.headers = std::move(encoded->headers);
    job.completion_window = cfg.completion_window;
    job.group_id = req.group_id;
    job.model = cfg.model;
    job.webhook = hook != nullptr && *hook == opts.webhook;
    job.url_expires = url_expires;
    job.response_id = req.response_id;
    job.observer = req.observer;
    send_job(std::move(job), std::move(done));
  }

  /// A pre-encoded body (a durable run's): sent verbatim, polled only.
  void submit_encoded(const sample_request& req, sample_callback done) {
    sail_job job;
    job.idempotency_key = req.key;
    job.body = req.body;
    job.headers = create_headers(cfg, req.key);
    job.completion_window = cfg.completion_window;
    job.group_id = req.group_id;
    job.model = cfg.model;
    job.response_id = req.response_id;
    job.observer = req.observer;
    send_job(std::move(job), std::move(done));
  }

  void send_job(sail_job job, sample_callback done) {
    if (pool_gone)
      return done(*pool_gone);
    if (cfg.timeout)
      job.call_timeout = *cfg.timeout;
    auto& deadlines = opts.window_deadlines;
    auto d = deadlines.find(cfg.completion_window);
    job.deadline = d != deadlines.end() ? d->second : opts.default_deadline;
    // No CAF timeout on this local hop: the pool answers every job (result,
    // error, cancel, or `cancelled` when it shuts down) and the worker's own
    // deadline bounds each sample with a typed timeout. A CAF 0.17 request
    // timeout is not cancelled by the response; it stays in the actor clock
    // until it expires (about 190 bytes per request for the whole deadline).
    self->request(pool, caf::infinite, atom::submit_v, std::move(job))
      .then([done](tokens_with_logprobs& res) { done(std::move(res)); },
            [done](caf::error& err) { done(bounced(std::move(err), "worker pool")); });
  }
};

completer_impl_actor::behavior_type completer_behavior(completer_ptr self,
                                                       completer_config cfg,
                                                       std::optional<tinker_path> checkpoint,
                                                       pool_actor pool,
                                                       resolver_actor resolver,
                                                       completer_options opts) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.checkpoint = std::move(checkpoint);
  st.pool = std::move(pool);
  st.resolver = std::move(resolver);
  st.opts = opts;
  self->set_exit_handler([self](caf::exit_msg& em) { self->state.shutdown(em.reason); });
  // Handed to remote trainers by a service node: a peer's unexpected message
  // is dropped unprinted (see service_behavior: printing one could crash the
  // node), and so is a down message not from the pool or the resolver
  // (CAF's default down handler prints it).
  self->set_default_handler(caf::drop);
  self->monitor(st.pool);
  if (st.resolver)
    self->monitor(st.resolver);
  self->set_down_handler([self](caf::down_msg& dm) { self->state.peer_down(dm); });
  return {
    [self](atom::sample, sample_request& req) { return self->state.sample(req); },
    [self](atom::sample_group, sample_request& req, uint32_t n) {
      return self->state.sample_group(req, n);
    },
    [self](atom::cancel, std::string& what) { self->state.cancel(what); },
    [self](atom::stats) { return self->state.get_stats(); },
    [self](atom::refresh, uint64_t generation) { self->state.refresh(generation); },
  };
}

} // namespace

caf::expected<completer_actor>
spawn_completer(caf::actor_system& sys, completer_config cfg,
                pool_actor pool, resolver_actor resolver,
                const model_table& models, completer_options opts) {
  if (auto err = validate(cfg, models))
    return err;
  if (cfg.adapter_config) {
    auto normalized = normalize_adapter_config(*cfg.adapter_config);
    if (!normalized)
      return std::move(normalized.error());
    cfg.adapter_config = std::move(*normalized);
  }
  std::optional<tinker_path> checkpoint;
  if (cfg.tinker_checkpoint) {
    auto parsed = parse_tinker_path(*cfg.tinker_checkpoint);
    if (!parsed)
      return std::move(parsed.error());
    if (!resolver)
      return make_error(errc::not_configured,
                        "tinker_checkpoint needs a resolver (TINKER_API_KEY)",
                        "tinker_checkpoint");
    checkpoint = std::move(*parsed);
  }
  if (!pool)
    return make_error(errc::not_configured, "no worker pool");
  completer_impl_actor impl = sys.spawn(completer_behavior, std::move(cfg),
                                        std::move(checkpoint), std::move(pool),
                                        std::move(resolver), opts);
  return completer_actor{impl};
}

} // namespace sail
