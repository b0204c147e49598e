#include "sail_tinker/net/retrying_client.hpp"

#include <chrono>
#include <optional>
#include <random>

#include <boost/asio/steady_timer.hpp>

#include "sail_tinker/messages/error.hpp"

namespace sail {

namespace {

using steady = std::chrono::steady_clock;

struct retry_call : std::enable_shared_from_this<retry_call> {
  retry_call(std::shared_ptr<http_client> c, http_request r, request_kind k,
             retrying_client::callback d, retry_options opts, uint64_t seed)
    : client(std::move(c)),
      req(std::move(r)),
      kind(k),
      done(std::move(d)),
      policy(opts, seed),
      timer(client->get_executor()) {
    if (req.deadline > caf::timespan::zero())
      deadline = steady::now()
                 + std::chrono::duration_cast<steady::duration>(req.deadline);
  }

  std::shared_ptr<http_client> client;
  http_request req;
  request_kind kind;
  retrying_client::callback done;
  retry_policy policy;
  boost::asio::steady_timer timer;
  std::optional<steady::time_point> deadline;
  retry_report report;
  uint32_t attempt = 0;

  void start_attempt() {
    ++attempt;
    http_request copy = req;
    if (deadline)
      copy.deadline = std::chrono::duration_cast<caf::timespan>(*deadline
                                                                - steady::now());
    if (deadline && copy.deadline <= caf::timespan::zero())
      copy.deadline = caf::timespan{1}; // expires at once -> timeout error
    client->async_request(std::move(copy),
                          [self = shared_from_this()](
                            caf::expected<http_response> r) {
                            self->on_result(std::move(r));
                          });
  }

  void on_result(caf::expected<http_response> r) {
    retry_attempt a;
    a.number = attempt;
    retry_decision d;
    if (r) {
      a.status = r->status;
      if (r->status < 400) {
        a.cause = "ok";
        report.attempts.push_back(std::move(a));
        return finish(std::move(r));
      }
      d = policy.on_status(kind, attempt, r->status, r->header("retry-after"),
                           std::chrono::system_clock::now());
    } else {
      d = policy.on_transport_error(kind, attempt, r.error());
    }
    a.cause = d.cause;
    report.attempts_exhausted = d.attempts_exhausted;
    if (d.retry && deadline
        && steady::now() + std::chrono::duration_cast<steady::duration>(d.delay)
             >= *deadline) {
      report.deadline_reached = true;
      d.retry = false;
    }
    if (!d.retry) {
      report.attempts.push_back(std::move(a));
      return finish(std::move(r));
    }
    a.retried = true;
    a.delay = d.delay;
    report.attempts.push_back(std::move(a));
    timer.expires_after(d.delay);
    timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec)
        return self->finish(make_error(errc::cancelled, "retry wait cancelled"));
      self->start_attempt();
    });
  }

  void finish(caf::expected<http_response> r) {
    auto d = std::move(done);
    d(std::move(r), std::move(report));
  }
};

} // namespace

retrying_client::retrying_client(std::shared_ptr<http_client> client,
                                 retry_options opts, uint64_t seed)
  : client_(std::move(client)), opts_(opts), seed_(seed) {
  if (seed_ == 0) {
    std::random_device rd;
    seed_ = (static_cast<uint64_t>(rd()) << 32) | rd();
    if (seed_ == 0)
      seed_ = 1;
  }
}

void retrying_client::async_request(http_request req, request_kind kind,
                                    callback done) {
  auto n = calls_.fetch_add(1, std::memory_order_relaxed);
  // Distinct, deterministic per-call seeds (never 0, which means "random").
  auto seed = seed_ + (n + 1) * 0x9E3779B97F4A7C15ull;
  if (seed == 0)
    seed = 1;
  auto call = std::make_shared<retry_call>(client_, std::move(req), kind,
                                           std::move(done), opts_, seed);
  call->start_attempt();
}

} // namespace sail
