#include "sail_tinker/actors/http_worker.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include <boost/beast/http/verb.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/sail_codec.hpp"

namespace sail {

namespace {

using clock_type = std::chrono::steady_clock;
namespace http = boost::beast::http;

caf::timespan remaining(const running_job& j) {
  return std::chrono::duration_cast<caf::timespan>(j.deadline - clock_type::now());
}

} // namespace

void http_worker_state::submit(uint64_t id, uint32_t attempt, shared_job job, poll_plan plan) {
  auto& opts = *this->opts;
  running_job j;
  j.id = id;
  j.attempt = attempt;
  j.timing = &opts.timing(job->completion_window);
  auto limit = job->deadline.count() > 0 ? job->deadline : j.timing->deadline;
  j.limit = limit;
  j.plan = std::move(plan);
  j.deadline = clock_type::now() + limit;
  j.job = std::move(job);
  if (auto old = jobs.find(id); old != jobs.end())
    drop(old->second);
  auto& stored = jobs.emplace(id, std::move(j)).first->second;
  stored.deadline_pos = deadlines.emplace(stored.deadline, id);
  stored.step_pos = steps.end();
  arm_deadline_timer();
  if (!stored.job->response_id.empty()) {
    // Attach: the create happened before (e.g. in a process that crashed).
    stored.response_id = stored.job->response_id;
    stored.attached = true;
    // Deliveries for it can reach the job at once (only a body naming this
    // node's receiver brings any: no message otherwise).
    if (stored.job->webhook)
      self->send(pool, atom::created_v, id, attempt, stored.response_id);
    stored.call.start(request_kind::sail_poll, stored.deadline);
  } else {
    stored.call.start(request_kind::sail_create, stored.deadline);
  }
  next_attempt(stored);
}

void http_worker_state::cancel(uint64_t id) {
  if (auto i = jobs.find(id); i != jobs.end())
    drop(i->second);
}

void http_worker_state::on_deadline() {
  timer_at.reset();
  auto now = clock_type::now();
  std::vector<uint64_t> expired;
  for (auto i = deadlines.begin(); i != deadlines.end() && i->first <= now; ++i)
    expired.push_back(i->second);
  for (auto id : expired) {
    auto& j = jobs.at(id);
    auto msg = "sample deadline expired after " + std::to_string(j.polls) + " polls";
    if (!j.call.last_cause.empty())
      msg += "; attempt " + std::to_string(j.call.attempt) + " of its "
             + to_string(j.call.kind) + " failed (" + j.call.last_cause + ")";
    if (j.held)
      msg += "; Sail unavailable: waiting for the circuit breaker to close";
    fail(j, make_error(errc::timeout, std::move(msg), {},
                       static_cast<uint16_t>(j.call.last_status)));
  }
  arm_deadline_timer();
}

void http_worker_state::on_step_timer() {
  step_timer_at.reset();
  auto now = clock_type::now();
  std::vector<uint64_t> due;
  while (!steps.empty() && steps.begin()->first <= now) {
    auto id = steps.begin()->second;
    steps.erase(steps.begin());
    if (auto i = jobs.find(id); i != jobs.end()) {
      i->second.step_pos = steps.end();
      due.push_back(id);
    }
  }
  // Collected first: a step may schedule the next one into `steps`.
  for (auto id : due)
    if (auto i = jobs.find(id); i != jobs.end())
      next_attempt(i->second);
  arm_step_timer();
}

void http_worker_state::on_step(uint64_t id, uint64_t tag) {
  auto i = jobs.find(id);
  if (i == jobs.end() || i->second.tag != tag)
    return;
  next_attempt(i->second);
}

void http_worker_state::on_http(http_completion& c) {
  auto i = jobs.find(c.tag);
  if (i == jobs.end() || i->second.tag != c.generation)
    return; // cancelled, timed out or superseded
  auto& j = i->second;
  auto now = clock_type::now();
  auto v = retry->judge(j.call, c.result, std::chrono::system_clock::now(), now);
  guard->after_attempt(now, v.health, std::exchange(j.probe, 0), v.cause);
  if (j.call.kind == request_kind::sail_create && (v.status == 429 || v.status == 529))
    self->send(pool, atom::pause_v, v.delay);
  if (v.outcome == verdict::retry) {
    self->send(pool, atom::retried_v, v.cause);
    return step_after(j, v.delay);
  }
  if (j.attached && v.status == 404) {
    // Sail no longer knows the attached id: create under the same key,
    // which Sail replays (no second inference) within its key retention.
    j.attached = false;
    j.response_id.clear();
    j.call.start(request_kind::sail_create, j.deadline);
    return next_attempt(j);
  }
  if (v.outcome == verdict::fail)
    return fail(j, v.error ? std::move(v.error)
                           : error_from_status(v.status, c.result->body));
  auto& res = *c.result;
  j.attached = false;
  auto state = decode_state(res.body);
  if (!state)
    return fail(j, std::move(state.error()));
  if (j.response_id.empty()) {
    if (state->id.empty())
      return fail(j, inference_error("create response without an id", res.body));
    j.response_id = std::move(state->id);
    // Deliveries for this id can reach the job from now on; Sail calls the
    // completion_webhook of the body it got, so only a body naming this
    // node's receiver needs the pool to route by response id.
    if (j.job->webhook)
      self->send(pool, atom::created_v, j.id, j.attempt, j.response_id);
    if (j.job->observer)
      caf::anon_send(j.job->observer, atom::accepted_v, j.job->idempotency_key,
                     j.response_id);
  }
  if (!j.accepted_at)
    j.accepted_at = now;
  if (state->phase == response_phase::terminal)
    return finish(j, res.body, *state, false);
  j.last_pending_at = now;
  schedule_poll(j);
}

/// A webhook delivery for job `id`: decoded exactly like a poll's answer.
void http_worker_state::on_webhook(uint64_t id, webhook_delivery& d) {
  auto i = jobs.find(id);
  if (i == jobs.end()
      || (!i->second.response_id.empty() && i->second.response_id != d.response_id)) {
    // Its sample finished an instant ago (a poll or another delivery won
    // the race) or was cancelled.
    self->send(pool, atom::webhook_v, std::string{"duplicate"});
    return;
  }
  auto& j = i->second;
  auto state = decode_state(d.body);
  if (!state || state->phase != response_phase::terminal) {
    // Sail delivers on completion; anything else changes nothing.
    self->send(pool, atom::webhook_v, std::string{"ignored"});
    return;
  }
  // Whatever call or timer the job was waiting for is stale from now on.
  j.tag = ++next_tag;
  finish(j, d.body, *state, true);
}

void http_worker_state::arm_deadline_timer() {
  if (deadlines.empty())
    return;
  auto earliest = deadlines.begin()->first;
  if (timer_at && *timer_at <= earliest)
    return;
  timer_at = earliest;
  auto delay = std::max(caf::timespan{0},
                        std::chrono::duration_cast<caf::timespan>(
                          earliest - clock_type::now()));
  self->delayed_send(self, delay, atom::deadline_v);
}

void http_worker_state::arm_step_timer() {
  if (steps.empty())
    return;
  auto earliest = steps.begin()->first;
  if (step_timer_at && *step_timer_at <= earliest)
    return;
  step_timer_at = earliest;
  auto delay = std::max(caf::timespan{0},
                        std::chrono::duration_cast<caf::timespan>(
                          earliest - clock_type::now()));
  self->delayed_send(self, delay, atom::step_v);
}

// Forgets a job (its result has been reported, or it was cancelled).
void http_worker_state::drop(running_job& j) {
  if (j.probe != 0)
    guard->abandon_probe(clock_type::now(), j.probe);
  deadlines.erase(j.deadline_pos);
  if (j.step_pos != steps.end())
    steps.erase(j.step_pos);
  jobs.erase(j.id); // j dangles from here on
}

// Runs the job's next step after `delay`; at once without the clock.
void http_worker_state::step_after(running_job& j, caf::timespan delay) {
  j.tag = ++next_tag;
  if (j.step_pos != steps.end()) {
    steps.erase(j.step_pos);
    j.step_pos = steps.end();
  }
  if (delay.count() <= 0)
    return self->send(self, atom::step_v, j.id, j.tag);
  j.step_pos = steps.emplace(clock_type::now() + delay, j.id);
  arm_step_timer();
}

// Sends the job's next attempt once the pool's retry guard lets it go:
// while the breaker is open or the retry budget is spent, the job waits
// (its deadline timer still runs) and asks again.
void http_worker_state::next_attempt(running_job& j) {
  auto p = guard->before_attempt(clock_type::now(), j.call.retry_due);
  if (!p.go) {
    if (p.held_by_breaker) {
      j.held = true;
      j.call.retry_due = false; // the breaker's wait replaced the backoff
    }
    // Spread the waiters so that they do not all ask at once.
    std::uniform_real_distribution<double> spread{1.0, 1.5};
    auto wait = std::chrono::duration_cast<caf::timespan>(p.wait * spread(rng));
    return step_after(j, std::max(wait, caf::timespan{std::chrono::milliseconds(1)}));
  }
  j.held = false;
  j.probe = p.probe;
  if (j.response_id.empty())
    send_create(j);
  else
    send_poll(j);
}

void http_worker_state::schedule_poll(running_job& j) {
  j.call.start(request_kind::sail_poll, j.deadline);
  auto& t = *j.timing;
  auto& opts = *this->opts;
  auto quarter = std::max(caf::timespan{1}, j.limit / 4);
  if (j.job->webhook) {
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
    j.poll_interval * jitter(rng));
  // No need to stop at the deadline: the deadline timer ends the job.
  step_after(j, delay);
}

/// The delay to the plan's next poll that is at least first_poll away;
/// none once the plan is used up.
std::optional<caf::timespan> http_worker_state::next_planned(running_job& j) {
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

http_request http_worker_state::base_request(running_job& j, http::verb verb, std::string url) {
  http_request req;
  req.method = verb;
  req.url = std::move(url);
  auto call = j.job->call_timeout.count() > 0 ? j.job->call_timeout
                                             : opts->call_timeout;
  req.deadline = std::max(caf::timespan{1}, std::min(call, remaining(j)));
  return req;
}

void http_worker_state::send_create(running_job& j) {
  // No request ever carries an expired signed URL (completers stop using a
  // URL a margin before its expiry; this catches creates still retrying).
  if (j.job->url_expires != caf::timestamp{}
      && caf::make_timestamp() >= j.job->url_expires)
    return fail(j, make_error(errc::timeout,
                              "the sample's signed checkpoint URL expired "
                              "before its create was accepted",
                              "tinker_lora_signed_url"));
  auto req = base_request(j, http::verb::post,
                          opts->base_url + std::string{create_target});
  auto& hs = j.job->headers;
  req.headers.reserve(hs.size() + 1); // no regrowth while it waits for a connection
  req.headers.assign(hs.begin(), hs.end());
  req.headers.push_back(bearer_auth(opts->api_key));
  req.body = j.job->body; // byte-identical on every attempt
  start(j, std::move(req));
}

void http_worker_state::send_poll(running_job& j) {
  ++j.polls;
  auto req = base_request(j, http::verb::get,
                          opts->base_url + poll_target(j.response_id));
  req.headers.push_back(bearer_auth(opts->api_key));
  start(j, std::move(req));
}

void http_worker_state::start(running_job& j, http_request req) {
  j.call.sent();
  j.tag = ++next_tag;
  start_http(self, *client, std::move(req), j.id, j.tag);
}

void http_worker_state::finish(running_job& j, const std::string& body, const response_state& state,
                               bool via_webhook) {
  auto result = decode_result(body, opts->wire);
  if (!result) {
    // A failed / cancelled / malformed response that came by webhook ends
    // its sample as well (typed, exactly as by poll): the delivery applied.
    if (via_webhook)
      self->send(pool, atom::webhook_v, std::string{"applied"});
    return fail(j, std::move(result.error()));
  }
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
  self->send(pool, atom::done_v, j.id, j.attempt, std::move(*result), report);
  drop(j);
}

void http_worker_state::fail(running_job& j, caf::error err) {
  self->send(pool, atom::failed_v, j.id, j.attempt, std::move(err));
  drop(j);
}

http_worker_actor::behavior_type
http_worker(http_worker_ptr self, http_client* client,
            std::shared_ptr<const pool_options> opts, pool_impl_actor pool,
            std::shared_ptr<retry_guard> guard) {
  auto& st = self->state;
  st.client = client;
  st.guard = std::move(guard);
  st.retry = std::make_unique<retry_policy>(opts->retry, opts->seed);
  st.rng.seed(opts->seed != 0 ? opts->seed : std::random_device{}());
  st.opts = std::move(opts);
  st.pool = std::move(pool);
  // No worker outlives its pool: a pool that ends without stopping its
  // workers (killed, or a handler threw) takes them along. The pool is the
  // only actor a worker monitors.
  self->monitor(st.pool);
  self->set_down_handler([self](caf::down_msg& dm) { self->quit(dm.reason); });
  return {
    [self](atom::submit, uint64_t id, uint32_t attempt, shared_job& job, poll_plan& plan) {
      self->state.submit(id, attempt, std::move(job), std::move(plan));
    },
    [self](atom::cancel, uint64_t id) { self->state.cancel(id); },
    [self](atom::webhook, uint64_t id, webhook_delivery& d) { self->state.on_webhook(id, d); },
    [self](atom::http_done, http_completion& c) { self->state.on_http(c); },
    [self](atom::step, uint64_t id, uint64_t tag) { self->state.on_step(id, tag); },
    [self](atom::step) { self->state.on_step_timer(); },
    [self](atom::deadline) { self->state.on_deadline(); },
  };
}

} // namespace sail
