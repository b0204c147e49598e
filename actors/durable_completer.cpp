#include "sail_tinker/actors/durable_completer.hpp"

#include <algorithm>
#include <memory>
#include <unordered_map>

#include <boost/uuid/random_generator.hpp>
#include <boost/uuid/uuid_io.hpp>
#include <caf/actor_control_block.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "sail_tinker/actors/completer.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/validation.hpp"
#include "sail_tinker/net/sail_codec.hpp"
#include "sail_tinker/rollout/failpoint.hpp"

namespace sail {

namespace {

using sample_callback = std::function<void(caf::expected<tokens_with_logprobs>)>;

struct durable_state;
using durable_ptr = durable_impl_actor::stateful_pointer<durable_state>;

/// A call between its plan and its answer.
struct open_call {
  sample_request req;        ///< to send (derived key, body); moved out by send()
  std::string key;           ///< the derived key
  std::string caller_key;    ///< what the caller cancels
  std::string caller_group;
  sample_observer_actor caller_observer;
  uint32_t slot = 0;
  sample_callback done;
  bool sent = false;
};

struct durable_state {
  static inline const char* name = "sail.durable_completer";

  durable_ptr self = nullptr;
  completer_actor target;
  completer_config cfg;
  rollout::run_handle run;
  std::string step;
  std::string version;
  /// What the bodies are encoded with (durable_options::wire).
  wire_options wire;
  std::unordered_map<uint64_t, open_call> calls;
  /// Derived key -> call id (accepted notices).
  std::unordered_map<std::string, uint64_t> by_key;
  uint64_t next_id = 0;
  /// Group ids of groups sent without one.
  boost::uuids::random_generator uuids;
  /// Journaled calls waiting for the commit the outstanding when_committed
  /// covers, and those recorded after it was registered (the next one).
  std::vector<uint64_t> covered;
  std::vector<uint64_t> uncovered;
  bool awaiting_commit = false;
  /// call_settings by effective max_tokens (the rest is the configuration).
  std::unordered_map<int64_t, std::string> settings_by_cap;

  const std::string& settings_for(int64_t cap) {
    auto i = settings_by_cap.find(cap);
    if (i == settings_by_cap.end())
      i = settings_by_cap.emplace(cap, rollout::call_settings(cfg, cap)).first;
    return i->second;
  }

  caf::result<tokens_with_logprobs> sample(sample_request& req) {
    if (auto err = validate(req))
      return err;
    if (!req.response_id.empty() || !req.body.empty())
      return invalid_argument("response_id", "a durable completer derives the key, the body "
                                             "and the response id itself");
    auto rp = self->make_response_promise<tokens_with_logprobs>();
    start(std::move(req), [rp](caf::expected<tokens_with_logprobs> res) mutable {
      if (res)
        rp.deliver(std::move(*res));
      else
        rp.deliver(std::move(res.error()));
    });
    return rp;
  }

  caf::result<group_result> sample_group(sample_request& req, uint32_t n) {
    if (n == 0 || n > completer_options{}.max_group_size)
      return invalid_argument("n", "group size must be within 1.."
                                     + std::to_string(completer_options{}.max_group_size));
    if (auto err = validate(req))
      return err;
    if (!req.response_id.empty() || !req.body.empty())
      return invalid_argument("response_id", "a response id attaches one sample, not a group");
    struct group_state {
      group_result result;
      size_t pending = 0;
      caf::typed_response_promise<group_result> rp;
    };
    auto g = std::make_shared<group_state>();
    g->rp = self->make_response_promise<group_result>();
    // One group id and prompt_cache_key for every member, as a completer
    // gives them (Sail bills the shared prompt's cached part cheaper).
    if (req.group_id.empty())
      req.group_id = boost::uuids::to_string(uuids());
    if (req.prompt_cache_key.empty())
      req.prompt_cache_key = req.group_id;
    g->result.group_id = req.group_id;
    g->result.members.resize(n);
    g->pending = n;
    for (uint32_t i = 0; i < n; ++i) {
      auto member = req;
      member.key = req.key.empty() ? std::string{} : req.key + "." + std::to_string(i);
      start(std::move(member), [g, i](caf::expected<tokens_with_logprobs> res) {
        auto& m = g->result.members[i];
        if (res)
          m.result = std::move(*res);
        else
          m.error = std::move(res.error());
        if (--g->pending > 0)
          return;
        // Every member ended (their results are journaled); the group fails
        // with its first failed member, as a completer's fail_group does.
        for (auto& x : g->result.members)
          if (!x.ok()) {
            g->rp.deliver(x.error);
            return;
          }
        g->rp.deliver(std::move(g->result));
      });
    }
    return g->rp;
  }

  /// Plans one call and sends it (or answers it from the journal).
  void start(sample_request req, sample_callback done) {
    int64_t cap = cfg.max_tokens;
    if (req.max_tokens)
      cap = std::min(cap, *req.max_tokens);
    const auto& settings = settings_for(cap);
    auto fingerprint = rollout::call_fingerprint(settings, req);
    auto plan = run->plan(step, settings, fingerprint);
    if (!plan)
      return done(std::move(plan.error()));
    if (plan->source == rollout::call_source::journal) {
      auto res = rollout::parse_result(plan->result);
      return done(std::move(res));
    }
    open_call c;
    c.caller_key = req.key;
    c.caller_group = req.group_id;
    c.caller_observer = std::move(req.observer);
    c.slot = plan->slot;
    c.done = std::move(done);
    req.key = plan->key;
    c.key = plan->key;
    if (req.group_id.empty())
      req.group_id = plan->key;
    if (req.prompt_cache_key.empty())
      req.prompt_cache_key = req.group_id;
    req.observer = caf::actor_cast<sample_observer_actor>(self);
    req.webhook = webhook_endpoint{};
    auto id = ++next_id;
    if (plan->source != rollout::call_source::fresh) {
      req.body = std::move(plan->request);
      req.response_id = std::move(plan->response_id);
      c.req = std::move(req);
      by_key.emplace(c.key, id);
      calls.emplace(id, std::move(c));
      return send(id);
    }
    auto encoded = encode_create(cfg, req, req.key, true, nullptr, wire);
    if (!encoded)
      return c.done(std::move(encoded.error()));
    req.body = std::move(encoded->body);
    // Write-ahead: the create goes once its key and bytes are committed.
    if (auto err = run->record_sent(step, plan->slot, plan->key, req.body, settings, version))
      return c.done(std::move(err));
    c.req = std::move(req);
    by_key.emplace(c.key, id);
    calls.emplace(id, std::move(c));
    uncovered.push_back(id);
    if (!awaiting_commit)
      await_commit();
  }

  /// One notice per commit, not per call: the calls recorded so far wait
  /// for the commit that covers them; later ones for the next notice.
  void await_commit() {
    awaiting_commit = true;
    covered.insert(covered.end(), uncovered.begin(), uncovered.end());
    uncovered.clear();
    // A weak handle: the run (and its committer thread) may outlive this
    // actor and its actor system (a Python Run closed after shutdown()).
    caf::weak_actor_ptr me = self->ctrl();
    run->when_committed([me](const caf::error& err) {
      if (auto strong = me.lock())
        caf::anon_send(caf::actor_cast<durable_impl_actor>(strong), atom::submit_v, !err);
    });
  }

  /// The journal committed the covered calls (`ok`) or failed to.
  void journaled(bool ok) {
    awaiting_commit = false;
    auto ready = std::move(covered);
    covered.clear();
    for (auto id : ready) {
      if (!ok) {
        end(id, make_error(errc::io_error, "the run's journal could not be written "
                                           "(nothing was sent)", "run"));
        continue;
      }
      rollout::failpoint::hit("sample_journaled");
      send(id);
    }
    if (!uncovered.empty())
      await_commit();
  }

  void send(uint64_t id) {
    auto i = calls.find(id);
    if (i == calls.end() || i->second.sent)
      return;
    i->second.sent = true;
    self->request(target, caf::infinite, atom::sample_v, std::move(i->second.req))
      .then([this, id](tokens_with_logprobs& res) { end(id, std::move(res)); },
            [this, id](caf::error& err) { end(id, std::move(err)); });
  }

  void end(uint64_t id, caf::expected<tokens_with_logprobs> res) {
    auto i = calls.find(id);
    if (i == calls.end())
      return;
    auto c = std::move(i->second);
    calls.erase(i);
    by_key.erase(c.key);
    if (res)
      run->record_completed(step, c.slot, c.key, *res);
    else
      run->record_failed(step);
    c.done(std::move(res));
  }

  void accepted(const std::string& key, const std::string& response_id) {
    auto i = by_key.find(key);
    if (i == by_key.end())
      return;
    auto& c = calls.at(i->second);
    run->record_accepted(step, c.slot, key, response_id);
    rollout::failpoint::hit("sample_accepted");
    if (c.caller_observer)
      caf::anon_send(c.caller_observer, atom::accepted_v, c.caller_key, response_id);
  }

  void cancel(const std::string& what) {
    std::vector<uint64_t> unsent;
    for (auto& [id, c] : calls) {
      if (c.caller_key != what && c.caller_group != what && c.key != what)
        continue;
      if (c.sent)
        self->send(target, atom::cancel_v, c.key);
      else
        unsent.push_back(id);
    }
    for (auto id : unsent)
      end(id, make_error(errc::cancelled, "sample cancelled by the caller"));
  }

  void shutdown(const caf::error& reason) {
    std::vector<uint64_t> ids;
    for (auto& kv : calls)
      ids.push_back(kv.first);
    for (auto id : ids)
      end(id, make_error(errc::cancelled, "completer shutting down"));
    self->quit(reason);
  }
};

durable_impl_actor::behavior_type durable_behavior(durable_ptr self, completer_actor target,
                                                   completer_config cfg,
                                                   durable_options opts) {
  auto& st = self->state;
  st.self = self;
  st.target = std::move(target);
  st.version = opts.version ? *opts.version : rollout::adapter_identity(cfg);
  st.cfg = std::move(cfg);
  st.run = std::move(opts.run);
  st.step = std::move(opts.step);
  st.wire = opts.wire ? std::move(*opts.wire) : default_wire();
  self->set_exit_handler([self](caf::exit_msg& em) { self->state.shutdown(em.reason); });
  return {
    [self](atom::sample, sample_request& req) { return self->state.sample(req); },
    [self](atom::sample_group, sample_request& req, uint32_t n) {
      return self->state.sample_group(req, n);
    },
    [self](atom::cancel, std::string& what) { self->state.cancel(what); },
    [self](atom::stats) -> caf::result<completer_stats> {
      auto rp = self->make_response_promise<completer_stats>();
      self->request(self->state.target, std::chrono::seconds(10), atom::stats_v)
        .then([rp](completer_stats& s) mutable { rp.deliver(std::move(s)); },
              [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [self](atom::submit, bool ok) { self->state.journaled(ok); },
    [self](atom::accepted, std::string& key, std::string& response_id) {
      self->state.accepted(key, response_id);
    },
  };
}

} // namespace

caf::expected<completer_actor> spawn_durable_completer(caf::actor_system& sys,
                                                       completer_actor target,
                                                       completer_config cfg,
                                                       durable_options opts) {
  if (!opts.run)
    return invalid_argument("run", "a durable completer needs a run");
  if (opts.step.empty())
    return invalid_argument("step", "a durable completer needs a step");
  if (cfg.tinker_checkpoint)
    return invalid_argument("tinker_checkpoint",
                            "a durable run journals the exact create body, which needs the "
                            "signed URL now: resolve the checkpoint first and pass "
                            "tinker_lora_signed_url (its path names the adapter)");
  if (!target)
    return make_error(errc::not_configured, "no completer to wrap");
  if (cfg.adapter_config) {
    auto normalized = normalize_adapter_config(*cfg.adapter_config);
    if (!normalized)
      return std::move(normalized.error());
    cfg.adapter_config = std::move(*normalized);
  }
  durable_impl_actor impl = sys.spawn(durable_behavior, std::move(target), std::move(cfg),
                                      std::move(opts));
  return completer_actor{impl};
}

} // namespace sail
