#include "sail_tinker/actors/step_sampler.hpp"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <unordered_set>

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "sail_tinker/actors/durable_completer.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/rollout/failpoint.hpp"

namespace sail {

caf::error step_sampler_options::validate(const std::string& prefix) const {
  if (group_size == 0)
    return invalid_argument(prefix + "group_size", "must be at least 1");
  if (groups_per_step == 0)
    return invalid_argument(prefix + "groups_per_step", "must be at least 1");
  if (!(overprovision >= 0.0 && overprovision <= 10.0))
    return invalid_argument(prefix + "overprovision", "must be within [0, 10]");
  return caf::none;
}

namespace {

/// A member failure that another member of the same prompt would hit again.
bool structural(const caf::error& err) {
  auto code = code_of(err);
  if (!code)
    return false;
  if (*code == errc::invalid_argument)
    return true;
  if (*code == errc::http_error) {
    auto* info = info_of(err);
    auto s = info ? info->http_status : 0;
    return s >= 400 && s < 500 && s != 408 && s != 409 && s != 429;
  }
  return false;
}

} // namespace

struct step_sampler::impl : std::enable_shared_from_this<step_sampler::impl> {
  enum class phase : uint8_t { waiting, in_flight, complete, failed, delivered };

  struct group_rec {
    phase state = phase::waiting;
    std::string label;
    std::string version;
    uint64_t launched_step = 0;
    uint32_t refills = 0;
    std::vector<tokens_with_logprobs> members;
    caf::error error;
    /// Resumed: the version its journaled calls were made with.
    std::string journaled_version;
  };

  caf::actor_system& sys;
  rollout::run_handle run;
  std::vector<group_prompt> prompts;
  step_sampler_options opts;

  mutable std::mutex mtx;
  std::condition_variable cv;
  std::vector<group_rec> groups;
  /// Next never-launched prompt.
  size_t cursor = 0;
  /// Resumed groups waiting for a target of their version, in order.
  std::vector<size_t> resume_queue;
  /// Launched, not yet delivered.
  std::set<size_t> open;
  /// Returned by the last call, not yet acknowledged.
  std::vector<size_t> unacked;
  uint64_t unacked_step = 0;
  std::map<std::string, sampler_target> targets;
  std::vector<std::string> versions;  ///< first-seen order
  uint64_t next_step_no = 0;
  /// The step whose call launches groups now.
  uint64_t launching_step = 0;
  step_sampler_stats st;

  impl(caf::actor_system& s, rollout::run_handle r, std::vector<group_prompt> p,
       step_sampler_options o)
    : sys(s), run(std::move(r)), prompts(std::move(p)), opts(o) {
  }

  size_t version_index(const std::string& v) {
    auto i = std::find(versions.begin(), versions.end(), v);
    if (i != versions.end())
      return static_cast<size_t>(i - versions.begin());
    versions.push_back(v);
    return versions.size() - 1;
  }

  // -- called by group actors (any thread) -------------------------------------------

  void on_member(size_t idx, tokens_with_logprobs r) {
    std::lock_guard<std::mutex> guard{mtx};
    groups[idx].members.push_back(std::move(r));
    ++st.members_completed;
  }

  void on_refill(size_t idx) {
    std::lock_guard<std::mutex> guard{mtx};
    ++groups[idx].refills;
    ++st.refills;
  }

  void on_end(size_t idx, caf::error err) {
    {
      std::lock_guard<std::mutex> guard{mtx};
      auto& g = groups[idx];
      g.error = std::move(err);
      g.state = g.error ? phase::failed : phase::complete;
      --st.in_flight;
    }
    cv.notify_all();
  }

  // -- owner thread ------------------------------------------------------------------

  caf::error launch(std::unique_lock<std::mutex>& lk, size_t idx, const sampler_target& t,
                    const std::string& version);

  /// Acknowledges the last returned batch (waits for the commit).
  caf::error acknowledge(std::unique_lock<std::mutex>& lk) {
    if (unacked.empty())
      return caf::none;
    auto labels = std::vector<std::string>{};
    for (auto i : unacked)
      labels.push_back(groups[i].label);
    auto step = unacked_step;
    lk.unlock();
    std::promise<caf::error> done;
    auto fut = done.get_future();
    auto remaining = std::make_shared<std::pair<std::mutex, size_t>>();
    remaining->second = labels.size();
    auto first_err = std::make_shared<caf::error>();
    auto shared = std::make_shared<std::promise<caf::error>>(std::move(done));
    for (auto& l : labels)
      run->record_delivered(l, step, [remaining, first_err, shared](const caf::error& e) {
        std::lock_guard<std::mutex> g{remaining->first};
        if (e && !*first_err)
          *first_err = e;
        if (--remaining->second == 0)
          shared->set_value(*first_err);
      });
    auto err = fut.get();
    lk.lock();
    if (err)
      return err;
    unacked.clear();
    rollout::failpoint::hit("sampler_acknowledged");
    return caf::none;
  }

  /// Launches resumed groups of known versions, then fresh prompts while
  /// fewer than `want` groups are open.
  caf::error top_up(std::unique_lock<std::mutex>& lk, const sampler_target* current,
                    const std::string& current_version, size_t want) {
    for (auto it = resume_queue.begin(); it != resume_queue.end();) {
      auto& g = groups[*it];
      auto t = targets.find(g.journaled_version);
      if (t == targets.end()) {
        ++it;
        continue;
      }
      auto target = t->second;
      auto idx = *it;
      it = resume_queue.erase(it);
      if (auto err = launch(lk, idx, target, g.journaled_version))
        return err;
      ++st.resumed;
    }
    if (!current)
      return caf::none;
    auto live = [&] {
      return static_cast<size_t>(std::count_if(open.begin(), open.end(), [&](size_t i) {
        return groups[i].state != phase::failed;
      }));
    };
    while (live() < want && cursor < prompts.size()) {
      auto idx = cursor++;
      if (groups[idx].state != phase::waiting)
        continue;  // acknowledged earlier, or resumed
      if (auto err = launch(lk, idx, *current, current_version))
        return err;
    }
    return caf::none;
  }

  sampled_group take(size_t idx, uint64_t step, size_t current_version) {
    auto& g = groups[idx];
    sampled_group out;
    out.prompt_id = prompts[idx].id;
    out.index = idx;
    out.label = g.label;
    out.members = std::move(g.members);
    out.version = g.version;
    out.launched_step = g.launched_step;
    out.step = step;
    auto vi = version_index(g.version);
    out.staleness = current_version > vi ? static_cast<uint32_t>(current_version - vi) : 0;
    out.refills = g.refills;
    out.error = g.error;
    g.state = phase::delivered;
    g.members.clear();
    open.erase(idx);
    unacked.push_back(idx);
    ++st.delivered;
    st.members_delivered += out.members.size();
    st.staleness_sum += static_cast<uint64_t>(out.staleness) * out.members.size();
    return out;
  }

  /// Moves every finished open group into `b`: failed ones to failed, too
  /// stale ones to stale, the rest to groups while fewer than `k` (oldest
  /// first). Returns the number of fresh groups taken.
  void collect(step_batch& b, size_t k, size_t current_version) {
    std::vector<size_t> done;
    for (auto i : open)
      if (groups[i].state == phase::complete || groups[i].state == phase::failed)
        done.push_back(i);  // std::set: ascending index = launch order
    for (auto i : done) {
      auto& g = groups[i];
      if (g.state == phase::failed) {
        b.failed.push_back(take(i, b.step, current_version));
        ++st.failed;
        continue;
      }
      auto vi = version_index(g.version);
      if (current_version > vi && current_version - vi > opts.max_staleness) {
        b.stale.push_back(take(i, b.step, current_version));
        ++st.stale;
      } else if (b.groups.size() < k) {
        b.groups.push_back(take(i, b.step, current_version));
      }
    }
  }

  size_t ready(size_t current_version) {
    size_t n = 0;
    for (auto i : open) {
      auto& g = groups[i];
      if (g.state != phase::complete)
        continue;
      auto vi = version_index(g.version);
      if (!(current_version > vi && current_version - vi > opts.max_staleness))
        ++n;
    }
    return n;
  }

  bool anything_running() const {
    return st.in_flight > 0;
  }
};

namespace {

struct group_state {
  static inline const char* name = "sail.sampler_group";

  caf::event_based_actor* self = nullptr;
  std::shared_ptr<step_sampler::impl> owner;
  size_t idx = 0;
  completer_actor durable;
  sample_request req;
  uint32_t want = 0;
  uint32_t max_refills = 0;
  uint32_t done = 0;
  uint32_t outstanding = 0;
  uint32_t refills = 0;
  caf::error error;
  bool ended = false;

  void send_one() {
    ++outstanding;
    self->request(durable, caf::infinite, atom::sample_v, req)
      .then(
        [this](tokens_with_logprobs& r) {
          --outstanding;
          ++done;
          owner->on_member(idx, std::move(r));
          maybe_end();
        },
        [this](caf::error& err) {
          --outstanding;
          if (!error && !structural(err) && refills < max_refills) {
            ++refills;
            owner->on_refill(idx);
            send_one();
          } else if (!error) {
            error = std::move(err);
          }
          maybe_end();
        });
  }

  void maybe_end() {
    if (ended || outstanding > 0)
      return;
    if (!error && done < want)
      return;
    ended = true;
    owner->on_end(idx, error);
    // Its calls are answered and journaled: stop the group's durable
    // completer (a cluster's nodes may hold references to it).
    caf::anon_send_exit(durable, caf::exit_reason::user_shutdown);
    durable = nullptr;
  }
};

void group_actor(caf::stateful_actor<group_state>* self,
                 std::shared_ptr<step_sampler::impl> owner, size_t idx,
                 completer_actor durable, sample_request req, uint32_t n,
                 uint32_t max_refills) {
  auto& s = self->state;
  s.self = self;
  s.owner = std::move(owner);
  s.idx = idx;
  s.durable = std::move(durable);
  s.req = std::move(req);
  s.want = n;
  s.max_refills = max_refills;
  // Members in order: the durable completer numbers them by arrival.
  for (uint32_t i = 0; i < n; ++i)
    s.send_one();
}

} // namespace

caf::error step_sampler::impl::launch(std::unique_lock<std::mutex>&, size_t idx,
                                      const sampler_target& t, const std::string& version) {
  auto& g = groups[idx];
  durable_options d;
  d.run = run;
  d.step = g.label;
  d.version = version;
  d.wire = t.wire;
  auto c = spawn_durable_completer(sys, t.completer, t.config, std::move(d));
  if (!c)
    return std::move(c.error());
  g.state = phase::in_flight;
  g.version = version;
  g.launched_step = launching_step;
  g.members.clear();
  g.error = caf::error{};
  open.insert(idx);
  ++st.launched;
  ++st.in_flight;
  auto req = prompts[idx].request;
  req.key.clear();
  req.group_id = g.label;
  req.response_id.clear();
  req.body.clear();
  // The impl outlives the sampler while group actors run.
  sys.spawn(group_actor, shared_from_this(), idx, *c, std::move(req), opts.group_size, opts.max_refills);
  return caf::none;
}

// -- step_sampler ---------------------------------------------------------------------

step_sampler::step_sampler(std::shared_ptr<impl> p) : p_(std::move(p)) {
}

step_sampler::~step_sampler() = default;

caf::expected<std::unique_ptr<step_sampler>>
step_sampler::open(caf::actor_system& sys, rollout::run_handle run,
                   std::vector<group_prompt> prompts, step_sampler_options opts) {
  if (auto err = opts.validate())
    return err;
  if (!run)
    return invalid_argument("run", "a step sampler needs a run");
  if (prompts.empty())
    return invalid_argument("prompts", "no prompts");
  std::unordered_set<std::string> ids;
  for (auto& p : prompts)
    if (!ids.insert(p.id).second)
      return invalid_argument("prompts", "duplicate prompt id '" + p.id + "'");
  auto p = std::make_shared<impl>(sys, std::move(run), std::move(prompts), opts);
  p->groups.resize(p->prompts.size());
  uint64_t last_acked = 0;
  bool any_acked = false;
  for (size_t i = 0; i < p->prompts.size(); ++i) {
    auto& g = p->groups[i];
    g.label = "grp-" + std::to_string(i) + "-" + p->prompts[i].id;
    auto d = p->run->delivered(g.label);
    if (!d)
      return std::move(d.error());
    if (*d) {
      g.state = impl::phase::delivered;
      ++p->st.skipped;
      last_acked = any_acked ? std::max(last_acked, **d) : **d;
      any_acked = true;
      continue;
    }
    auto rows = p->run->calls(g.label);
    if (!rows)
      return std::move(rows.error());
    if (!rows->empty()) {
      g.journaled_version = rows->front().version;
      g.state = impl::phase::in_flight;  // reserved: launched once its target is known
      p->resume_queue.push_back(i);
    }
  }
  p->next_step_no = any_acked ? last_acked + 1 : 0;
  return std::unique_ptr<step_sampler>{new step_sampler(std::move(p))};
}

void step_sampler::attach(const sampler_target& target) {
  std::unique_lock<std::mutex> lk{p_->mtx};
  auto version = target.version.empty() ? rollout::adapter_identity(target.config)
                                        : target.version;
  p_->targets[version] = target;
  p_->version_index(version);
}

caf::expected<step_batch> step_sampler::next_step(const sampler_target& target) {
  if (!target.completer)
    return invalid_argument("completer", "next_step needs a completer");
  auto version = target.version.empty() ? rollout::adapter_identity(target.config)
                                        : target.version;
  auto& p = *p_;
  std::unique_lock<std::mutex> lk{p.mtx};
  if (auto err = p.acknowledge(lk))
    return err;
  p.targets[version] = target;
  auto current = p.version_index(version);
  step_batch b;
  b.step = p.next_step_no++;
  p.launching_step = b.step;
  b.version = version;
  auto k = static_cast<size_t>(p.opts.groups_per_step);
  auto want = static_cast<size_t>(
    std::ceil(static_cast<double>(k) * (1.0 + p.opts.overprovision) - 1e-9));
  want = std::max(want, k);
  while (true) {
    if (auto err = p.top_up(lk, &target, version, want))
      return err;
    if (p.ready(current) >= k || !p.anything_running())
      break;
    p.cv.wait(lk);
  }
  p.collect(b, k, current);
  p.unacked_step = b.step;
  return b;
}

caf::expected<step_batch> step_sampler::drain() {
  auto& p = *p_;
  std::unique_lock<std::mutex> lk{p.mtx};
  if (auto err = p.acknowledge(lk))
    return err;
  step_batch b;
  b.step = p.next_step_no++;
  p.launching_step = b.step;
  b.version = p.versions.empty() ? std::string{} : p.versions.back();
  auto current = p.versions.empty() ? size_t{0} : p.versions.size() - 1;
  if (auto err = p.top_up(lk, nullptr, {}, 0))
    return err;
  p.cv.wait(lk, [&] { return !p.anything_running(); });
  p.collect(b, SIZE_MAX, current);
  for (auto idx : p.resume_queue) {
    sampled_group g;
    g.prompt_id = p.prompts[idx].id;
    g.index = idx;
    g.label = p.groups[idx].label;
    g.version = p.groups[idx].journaled_version;
    g.step = b.step;
    g.error = invalid_argument("version", "group '" + g.label + "' was sampled with version '"
                                            + g.version + "': attach() a target of it");
    b.failed.push_back(std::move(g));
    ++p.st.failed;
  }
  p.resume_queue.clear();
  p.unacked_step = b.step;
  return b;
}

caf::error step_sampler::close() {
  if (!p_)
    return caf::none;
  std::unique_lock<std::mutex> lk{p_->mtx};
  return p_->acknowledge(lk);
}

step_sampler_stats step_sampler::stats() const {
  std::lock_guard<std::mutex> guard{p_->mtx};
  return p_->st;
}

uint64_t step_sampler::step() const {
  std::lock_guard<std::mutex> guard{p_->mtx};
  return p_->next_step_no;
}

} // namespace sail
