#include "sail_tinker/actors/http_worker.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <boost/beast/http/verb.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/sail_codec.hpp"

namespace sail {

namespace {

using clock_type = std::chrono::steady_clock;
namespace http = boost::beast::http;

caf::timespan remaining(const worker_job& j) {
  return std::chrono::duration_cast<caf::timespan>(j.deadline - clock_type::now());
}

bool is_success(unsigned status) {
  return status >= 200 && status < 300;
}

class worker_logic {
public:
  explicit worker_logic(http_worker_ptr self) : self_(self), st_(self->state) {}

  void submit(uint64_t id, uint32_t attempt, sail_job job, poll_plan plan) {
    auto& opts = *st_.opts;
    worker_job j;
    j.id = id;
    j.attempt = attempt;
    j.timing = &opts.timing(job.completion_window);
    auto limit = job.deadline.count() > 0 ? job.deadline : j.timing->deadline;
    j.limit = limit;
    j.plan = std::move(plan);
    j.deadline = clock_type::now() + limit;
    j.job = std::move(job);
    if (auto old = st_.jobs.find(id); old != st_.jobs.end())
      drop(old->second);
    auto& stored = st_.jobs.emplace(id, std::move(j)).first->second;
    stored.deadline_pos = st_.deadlines.emplace(stored.deadline, id);
    arm_deadline_timer();
    send_create(stored);
  }

  void cancel(uint64_t id) {
    if (auto i = st_.jobs.find(id); i != st_.jobs.end())
      drop(i->second);
  }

  void on_deadline() {
    st_.timer_at.reset();
    auto now = clock_type::now();
    std::vector<uint64_t> expired;
    for (auto i = st_.deadlines.begin(); i != st_.deadlines.end() && i->first <= now; ++i)
      expired.push_back(i->second);
    for (auto id : expired) {
      auto& j = st_.jobs.at(id);
      fail(j, make_error(errc::timeout, "sample deadline expired after "
                                          + std::to_string(j.polls) + " polls"));
    }
    arm_deadline_timer();
  }

  void on_step(uint64_t id, uint64_t tag) {
    auto i = st_.jobs.find(id);
    if (i == st_.jobs.end() || i->second.tag != tag)
      return;
    auto& j = i->second;
    if (j.response_id.empty())
      send_create(j);
    else
      send_poll(j);
  }

  void on_http(http_completion& c) {
    auto i = st_.jobs.find(c.tag);
    if (i == st_.jobs.end() || i->second.tag != c.generation)
      return; // cancelled, timed out or superseded
    auto& j = i->second;
    auto kind = j.response_id.empty() ? request_kind::sail_create
                                      : request_kind::sail_poll;
    if (!c.result) {
      auto decision = st_.retry->on_transport_error(kind, j.http_attempt,
                                                    c.result.error());
      if (decision.retry)
        return retry_later(j, decision);
      return fail(j, std::move(c.result.error()));
    }
    auto& res = *c.result;
    if (!is_success(res.status)) {
      auto decision = st_.retry->on_status(kind, j.http_attempt, res.status,
                                           res.header("Retry-After"),
                                           std::chrono::system_clock::now());
      if (kind == request_kind::sail_create
          && (res.status == 429 || res.status == 529))
        self_->send(st_.pool, atom::pause_v,
                    std::max(decision.delay, caf::timespan{0}));
      if (decision.retry)
        return retry_later(j, decision);
      return fail(j, error_from_status(res.status, res.body));
    }
    j.http_attempt = 0;
    auto state = decode_state(res.body);
    if (!state)
      return fail(j, std::move(state.error()));
    auto now = clock_type::now();
    if (j.response_id.empty()) {
      if (state->id.empty())
        return fail(j, inference_error("create response without an id", res.body));
      j.response_id = state->id;
      // Deliveries for this id can reach the job from now on.
      self_->send(st_.pool, atom::created_v, j.id, j.attempt, j.response_id);
    }
    if (!j.accepted_at)
      j.accepted_at = now;
    if (state->phase == response_phase::terminal)
      return finish(j, res.body, *state, false);
    j.last_pending_at = now;
    schedule_poll(j);
  }

  /// A webhook delivery for job `id`: decoded exactly like a poll's answer.
  void on_webhook(uint64_t id, webhook_delivery& d) {
    auto i = st_.jobs.find(id);
    if (i == st_.jobs.end()
        || (!i->second.response_id.empty() && i->second.response_id != d.response_id)) {
      // Its sample finished an instant ago (a poll or another delivery won
      // the race) or was cancelled.
      self_->send(st_.pool, atom::webhook_v, std::string{"duplicate"});
      return;
    }
    auto& j = i->second;
    auto state = decode_state(d.body);
    if (!state || state->phase != response_phase::terminal) {
      // Sail delivers on completion; anything else changes nothing.
      self_->send(st_.pool, atom::webhook_v, std::string{"ignored"});
      return;
    }
    // Whatever call or timer the job was waiting for is stale from now on.
    j.tag = ++st_.next_tag;
    finish(j, d.body, *state, true);
  }

private:
  void arm_deadline_timer() {
    if (st_.deadlines.empty())
      return;
    auto earliest = st_.deadlines.begin()->first;
    if (st_.timer_at && *st_.timer_at <= earliest)
      return;
    st_.timer_at = earliest;
    auto delay = std::max(caf::timespan{0},
                          std::chrono::duration_cast<caf::timespan>(
                            earliest - clock_type::now()));
    self_->delayed_send(self_, delay, atom::deadline_v);
  }

  // Forgets a job (its result has been reported, or it was cancelled).
  void drop(worker_job& j) {
    st_.deadlines.erase(j.deadline_pos);
    st_.jobs.erase(j.id); // j dangles from here on
  }

  // Runs the job's next step after `delay`; at once without the clock.
  void step_after(worker_job& j, caf::timespan delay) {
    j.tag = ++st_.next_tag;
    if (delay.count() <= 0)
      self_->send(self_, atom::step_v, j.id, j.tag);
    else
      self_->delayed_send(self_, delay, atom::step_v, j.id, j.tag);
  }

  void retry_later(worker_job& j, const retry_decision& decision) {
    self_->send(st_.pool, atom::retried_v, decision.cause);
    if (decision.delay >= remaining(j))
      return fail(j, make_error(errc::timeout, "sample deadline expires before "
                                                 "the next retry ("
                                                 + decision.cause + ")"));
    step_after(j, decision.delay);
  }

  void schedule_poll(worker_job& j) {
    auto& t = *j.timing;
    auto& opts = *st_.opts;
    auto quarter = std::max(caf::timespan{1}, j.limit / 4);
    if (j.job.webhook) {
      // The webhook is expected here: poll only as the safety net.
      j.poll_interval = std::min(j.polls == 0 ? t.webhook_first_poll : t.webhook_poll,
                                 quarter);
    } else if (auto planned = next_planned(j)) {
      j.poll_interval = *planned;
    } else if (j.poll_interval.count() == 0) {
      j.poll_interval = t.first_poll;
    } else {
      auto grown = std::chrono::duration_cast<caf::timespan>(
        j.poll_interval * opts.poll_growth);
      j.poll_interval = std::min(grown, t.max_poll);
    }
    std::uniform_real_distribution<double> jitter{1.0 - opts.poll_jitter,
                                                  1.0 + opts.poll_jitter};
    auto delay = std::chrono::duration_cast<caf::timespan>(
      j.poll_interval * jitter(st_.rng));
    // No need to stop at the deadline: the deadline timer ends the job.
    step_after(j, delay);
  }

  /// The delay to the plan's next poll that is at least first_poll away;
  /// none once the plan is used up.
  std::optional<caf::timespan> next_planned(worker_job& j) {
    if (j.plan_next >= j.plan.offsets.size() || !j.accepted_at)
      return std::nullopt;
    auto min_gap = j.timing->first_poll;
    auto elapsed = std::chrono::duration_cast<caf::timespan>(clock_type::now()
                                                             - *j.accepted_at);
    auto& xs = j.plan.offsets;
    while (j.plan_next < xs.size() && xs[j.plan_next] < elapsed + min_gap)
      ++j.plan_next;
    if (j.plan_next >= xs.size())
      return std::nullopt;
    return xs[j.plan_next++] - elapsed;
  }

  http_request base_request(worker_job& j, http::verb verb, std::string url) {
    http_request req;
    req.method = verb;
    req.url = std::move(url);
    auto call = j.job.call_timeout.count() > 0 ? j.job.call_timeout
                                               : st_.opts->call_timeout;
    req.deadline = std::max(caf::timespan{1}, std::min(call, remaining(j)));
    return req;
  }

  void send_create(worker_job& j) {
    // No request ever carries an expired signed URL (completers stop using a
    // URL a margin before its expiry; this catches creates still retrying).
    if (j.job.url_expires != caf::timestamp{}
        && caf::make_timestamp() >= j.job.url_expires)
      return fail(j, make_error(errc::timeout,
                                "the sample's signed checkpoint URL expired "
                                "before its create was accepted",
                                "tinker_lora_signed_url"));
    auto req = base_request(j, http::verb::post,
                            st_.opts->base_url + std::string{create_target});
    req.headers = j.job.headers;
    req.headers.push_back(bearer_auth(st_.opts->api_key));
    req.body = j.job.body; // byte-identical on every attempt
    start(j, std::move(req));
  }

  void send_poll(worker_job& j) {
    ++j.polls;
    auto req = base_request(j, http::verb::get,
                            st_.opts->base_url + poll_target(j.response_id));
    req.headers.push_back(bearer_auth(st_.opts->api_key));
    start(j, std::move(req));
  }

  void start(worker_job& j, http_request req) {
    ++j.http_attempt;
    j.tag = ++st_.next_tag;
    start_http(self_, *st_.client, std::move(req), j.id, j.tag);
  }

  void finish(worker_job& j, const std::string& body, const response_state& state,
              bool via_webhook) {
    auto result = decode_result(body);
    if (!result)
      return fail(j, std::move(result.error()));
    sample_report report;
    report.polls = j.polls;
    report.via_webhook = via_webhook;
    auto now = clock_type::now();
    if (j.accepted_at) {
      // A webhook arrives at completion; a poll only brackets it between
      // the last pending answer and this one.
      auto lower = via_webhook ? now : std::max(j.last_pending_at, *j.accepted_at);
      auto mid = lower + (now - lower) / 2;
      report.latency = std::chrono::duration_cast<caf::timespan>(mid - *j.accepted_at);
    }
    if (state.completed_at) {
      auto wall = std::chrono::duration<double>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
      report.notice_ms = std::max<int64_t>(
        0, static_cast<int64_t>(std::llround((wall - *state.completed_at) * 1000.0)));
    }
    self_->send(st_.pool, atom::done_v, j.id, j.attempt, std::move(*result), report);
    drop(j);
  }

  void fail(worker_job& j, caf::error err) {
    self_->send(st_.pool, atom::failed_v, j.id, j.attempt, std::move(err));
    drop(j);
  }

  http_worker_ptr self_;
  http_worker_state& st_;
};

} // namespace

http_worker_actor::behavior_type
http_worker(http_worker_ptr self, http_client* client,
            std::shared_ptr<const pool_options> opts, pool_actor pool) {
  auto& st = self->state;
  st.client = client;
  st.retry = std::make_unique<retry_policy>(opts->retry, opts->seed);
  st.rng.seed(opts->seed != 0 ? opts->seed : std::random_device{}());
  st.opts = std::move(opts);
  st.pool = std::move(pool);
  return {
    [=](atom::submit, uint64_t id, uint32_t attempt, sail_job& job, poll_plan& plan) {
      worker_logic{self}.submit(id, attempt, std::move(job), std::move(plan));
    },
    [=](atom::cancel, uint64_t id) { worker_logic{self}.cancel(id); },
    [=](atom::webhook, uint64_t id, webhook_delivery& d) {
      worker_logic{self}.on_webhook(id, d);
    },
    [=](atom::http_done, http_completion& c) { worker_logic{self}.on_http(c); },
    [=](atom::step, uint64_t id, uint64_t tag) {
      worker_logic{self}.on_step(id, tag);
    },
    [=](atom::deadline) { worker_logic{self}.on_deadline(); },
    [=](atom::crash) {
      throw std::runtime_error("crash injected by test hook");
    },
  };
}

} // namespace sail
