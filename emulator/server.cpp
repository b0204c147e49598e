// The emulator's server object: lifecycle, routing, statistics.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

#include <boost/beast/http/field.hpp>
#include <boost/json/serialize.hpp>

#include "sail_tinker/emulator/emulator_impl.hpp"
#include "sail_tinker/messages/error.hpp"

namespace sail::emulator {

namespace http = boost::beast::http;
namespace json = boost::json;

// -- shared helpers ---------------------------------------------------------------

std::string sail_error_body(std::string_view message, std::string_view type,
                            std::optional<std::string_view> param,
                            std::optional<std::string_view> code) {
  json::object err;
  err["message"] = message;
  err["type"] = type;
  err["param"] = param ? json::value(*param) : json::value(nullptr);
  err["code"] = code ? json::value(*code) : json::value(nullptr);
  json::object body;
  body["error"] = std::move(err);
  return json::serialize(body);
}

fault_reply json_reply(unsigned status, std::string body) {
  fault_reply reply;
  reply.response.result(status);
  reply.response.version(11);
  reply.response.set(http::field::content_type, "application/json");
  reply.response.body() = std::move(body);
  return reply;
}

response_phase response_record::phase_at(steady::time_point now) const noexcept {
  if (now < started)
    return response_phase::queued;
  if (now < done)
    return response_phase::in_progress;
  return response_phase::terminal;
}

const std::vector<std::string>& known_windows() {
  // Sail's asap/priority/standard/flex (OpenAPI enum, mid 2026) and
  // asap/balanced/standard/flex (Sept 2026, /completion-windows).
  static const std::vector<std::string> windows{"asap", "priority", "balanced",
                                                "standard", "flex"};
  return windows;
}

const window_latency& latency_model::of(std::string_view window) const noexcept {
  if (window == "asap")
    return asap;
  if (window == "priority")
    return priority;
  if (window == "balanced")
    return balanced;
  if (window == "flex")
    return flex;
  return standard;
}

std::chrono::microseconds latency_spread::draw(uint64_t seed,
                                               std::string_view key) const noexcept {
  using std::chrono::microseconds;
  if (kind == shape::none)
    return microseconds{0};
  // Two independent uniforms in (0, 1) from the seed and the key.
  auto h1 = hash_bytes(key, mix64(seed ^ 0x1a7e0c1u));
  auto h2 = mix64(h1 ^ 0x9e3779b97f4a7c15ull);
  auto unit = [](uint64_t h) {
    return (static_cast<double>(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
  };
  auto lo = static_cast<double>(std::max<int64_t>(min.count(), 1));
  auto hi = static_cast<double>(std::max<int64_t>(max.count(), min.count()));
  double us = lo;
  if (kind == shape::log_uniform) {
    us = lo * std::pow(hi / lo, unit(h1));
  } else {
    // Box-Muller.
    auto z = std::sqrt(-2.0 * std::log(unit(h1))) * std::cos(2.0 * std::numbers::pi * unit(h2));
    us = static_cast<double>(median.count()) * std::exp(sigma * z);
    us = std::clamp(us, static_cast<double>(min.count()), hi);
  }
  return microseconds{static_cast<int64_t>(us)};
}

latency_spread latency_spread::log_normal_p99(std::chrono::microseconds median,
                                              double p99_over_median) noexcept {
  latency_spread s;
  if (!(p99_over_median > 1.0) || median.count() <= 0) {
    s.kind = shape::log_normal;
    s.median = s.min = s.max = median;
    return s;
  }
  // 2.3263: the standard normal's 99th percentile.
  s.kind = shape::log_normal;
  s.median = median;
  s.sigma = std::log(p99_over_median) / 2.3263478740408408;
  auto sq = p99_over_median * p99_over_median;
  auto m = static_cast<double>(median.count());
  s.min = std::chrono::microseconds{std::max<int64_t>(1, static_cast<int64_t>(m / sq))};
  s.max = std::chrono::microseconds{static_cast<int64_t>(m * sq)};
  return s;
}

namespace {

std::chrono::microseconds scaled_ms(double ms, double scale) {
  return std::chrono::microseconds{static_cast<int64_t>(ms * 1000.0 * scale)};
}

} // namespace

const std::vector<std::string>& latency_profiles() {
  static const std::vector<std::string> names{"measured", "targets", "heavy-tail"};
  return names;
}

std::optional<latency_model> latency_profile(std::string_view name, double scale) {
  if (!(scale > 0.0))
    return std::nullopt;
  latency_model m;
  if (name == "measured") {
    // Kimi-K2.6: asap ~1.4 s, priority ~8.5 s, LoRA / checkpoint samples on
    // priority 5.7-12.7 s (docs/wire-contract.md, poll timing row).
    latency_spread pri;
    pri.kind = latency_spread::shape::log_normal;
    pri.median = scaled_ms(8500, scale);
    pri.sigma = 0.25;
    pri.min = scaled_ms(5700, scale);
    pri.max = scaled_ms(12700, scale);
    for (auto* w : m.all())
      w->spread = pri;
    auto asap = pri;
    asap.median = scaled_ms(1400, scale);
    asap.min = scaled_ms(1400.0 * 5700 / 8500, scale);
    asap.max = scaled_ms(1400.0 * 12700 / 8500, scale);
    m.asap.spread = asap;
    return m;
  }
  if (name == "targets") {
    auto at = [&](double ms) { return latency_spread::log_normal_p99(scaled_ms(ms, scale), 3.0); };
    m.asap.spread = at(1400);
    m.priority.spread = at(60'000);
    m.balanced.spread = at(60'000);
    m.standard.spread = at(300'000);
    m.flex.spread = at(3'600'000);
    return m;
  }
  if (name == "heavy-tail") {
    for (auto* w : m.all())
      w->spread = latency_spread::log_normal_p99(scaled_ms(1000, scale), 10.0);
    return m;
  }
  return std::nullopt;
}

const char* to_string(status_vocabulary v) noexcept {
  return v == status_vocabulary::openapi ? "openapi" : "guides";
}

std::string logged_request::header(std::string_view name) const {
  auto lower = [](std::string_view x) {
    std::string out{x};
    for (auto& c : out)
      if (c >= 'A' && c <= 'Z')
        c = static_cast<char>(c - 'A' + 'a');
    return out;
  };
  auto want = lower(name);
  for (auto& [k, v] : headers)
    if (lower(k) == want)
      return v;
  return {};
}

double server::impl::ms_since_start(steady::time_point t) const noexcept {
  return std::chrono::duration<double, std::milli>(t - started_at).count();
}

// -- impl lifecycle ---------------------------------------------------------------

server::impl::impl(options o)
  : opts(std::move(o)),
    started_at(steady::now()),
    faults(opts.faults),
    fault_rng(faults.seed != 0 ? faults.seed : mix64(opts.seed ^ 0xfa17u)),
    webhook_rng(mix64(opts.seed ^ 0x3eb600cu)),
    latency(opts.latency),
    archive(opts.archive),
    still_building_calls(opts.still_building_calls),
    known_loras(opts.known_loras),
    ioc(static_cast<int>(std::max<size_t>(opts.threads, 1))) {
  // nop
}

server::impl::~impl() {
  stop();
}

caf::error server::impl::start() {
  http_server_options hopts;
  hopts.host = opts.host;
  hopts.port = opts.port;
  hopts.header_limit = opts.max_header_bytes;
  hopts.body_limit = opts.max_body_bytes;
  hopts.read_timeout = opts.read_timeout;
  hopts.drain_timeout = opts.drain_timeout;
  hopts.server_name = "sail-tinker-emulator";
  http = std::make_unique<http_server>(
    ioc, hopts, [this](http_server_context&& ctx) { handle(std::move(ctx)); });
  if (auto err = http->start())
    return err;
  base_url = "http://" + opts.host + ":" + std::to_string(http->port());
  work.emplace(ioc.get_executor());
  auto n = std::max<size_t>(opts.threads, 1);
  for (size_t i = 0; i < n; ++i)
    threads.emplace_back([this] { ioc.run(); });
  return {};
}

void server::impl::stop() {
  if (stopped)
    return;
  stopped = true;
  if (http)
    http->stop();
  work.reset();
  ioc.stop();
  for (auto& t : threads)
    if (t.joinable())
      t.join();
  threads.clear();
}

// -- routing ------------------------------------------------------------------------

void server::impl::handle(http_server_context&& ctx) {
  auto& req = ctx.request();
  std::string_view target{req.target().data(), req.target().size()};
  auto q = target.find('?');
  auto path = target.substr(0, q);
  auto query = q == std::string_view::npos ? std::string_view{}
                                           : target.substr(q + 1);
  auto method = req.method();
  constexpr std::string_view responses_prefix = "/v1/responses/";
  constexpr std::string_view tinker_prefix = "/api/v1/training_runs/";
  constexpr std::string_view archive_prefix = "/_emulator/archive/";
  auto not_allowed = [&](const char* route_name) {
    finish(std::move(ctx), route_name,
           json_reply(405, sail_error_body("method not allowed",
                                           "invalid_request_error",
                                           std::nullopt, std::nullopt)));
  };
  if (path == "/v1/responses") {
    if (method != http::verb::post)
      return not_allowed(route::create);
    return handle_create(std::move(ctx));
  }
  if (path.starts_with(responses_prefix)) {
    if (method != http::verb::get)
      return not_allowed(route::poll);
    return handle_poll(std::move(ctx),
                       std::string{path.substr(responses_prefix.size())});
  }
  if (path.starts_with(tinker_prefix))
    return handle_tinker(std::move(ctx), path);
  if (path == "/_emulator/stats")
    return handle_stats(std::move(ctx),
                        query.find("summary=1") != std::string_view::npos);
  if (path == "/_emulator/requests") {
    auto reply = json_reply(200, {});
    {
      std::lock_guard guard{mtx};
      ++st.requests[route::requests][200];
      st_changed.notify_all();
    }
    reply.response.body() = render_request_log(log_copy());
    ctx.respond(std::move(reply));
    return;
  }
  if (path == "/_emulator/health")
    return finish(std::move(ctx), route::health,
                  json_reply(200, R"({"status":"ok"})"));
  if (path == "/_emulator/bytes") {
    // ?n=<bytes>: a body of that many 'x' (for response size limits).
    uint64_t n = 0;
    if (auto i = query.find("n="); i != std::string_view::npos) {
      for (auto c : query.substr(i + 2)) {
        if (c < '0' || c > '9')
          break;
        n = std::min<uint64_t>(n * 10 + static_cast<uint64_t>(c - '0'),
                               uint64_t{1} << 28);
      }
    }
    auto reply = json_reply(200, std::string(n, 'x'));
    reply.response.set(http::field::content_type, "application/octet-stream");
    return finish(std::move(ctx), route::bytes, std::move(reply));
  }
  if (path.starts_with(archive_prefix)) {
    auto reply = json_reply(200, "sail-tinker emulator archive "
                                   + std::string{path.substr(
                                     archive_prefix.size())});
    reply.response.set(http::field::content_type, "application/x-tar");
    return finish(std::move(ctx), route::archive_file, std::move(reply));
  }
  finish(std::move(ctx), route::other,
         json_reply(404, sail_error_body("no such route",
                                         "invalid_request_error", std::nullopt,
                                         "not_found")));
}

void server::impl::finish(http_server_context&& ctx, const char* route_name,
                          fault_reply reply,
                          const std::string& fault_name) {
  int status = reply.fault == wire_fault::reset
                 ? 0
                 : static_cast<int>(reply.response.result_int());
  {
    std::lock_guard guard{mtx};
    ++st.requests[route_name][status];
    st_changed.notify_all();
  }
  if (opts.request_log_capacity > 0)
    log_request(ctx, route_name, reply, status, fault_name);
  send_reply(std::move(ctx), std::move(reply));
}

void server::impl::log_request(const http_server_context& ctx,
                               const char* route_name,
                               const fault_reply& reply, int status,
                               const std::string& fault_name) {
  auto& req = ctx.request();
  logged_request e;
  e.ms = ms_since_start(ctx.received_at());
  e.method = std::string{req.method_string()};
  e.target = std::string{req.target()};
  e.route = route_name;
  e.status = status;
  e.fault = fault_name;
  for (auto& field : req) {
    auto name = field.name_string();
    auto lower = [](char c) {
      return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    };
    std::string n;
    for (auto c : name)
      n.push_back(lower(c));
    if (n == "idempotency-key" || n.starts_with("x-sail-voyage-"))
      e.headers.emplace_back(std::string{name}, std::string{field.value()});
  }
  auto keep = [&](std::string_view body, std::string& out) {
    if (body.size() > opts.request_log_body_cap) {
      body = body.substr(0, opts.request_log_body_cap);
      e.truncated = true;
    }
    out.assign(body.data(), body.size());
  };
  if (req.method() != http::verb::get)
    keep(req.body(), e.request_body);
  if (reply.fault != wire_fault::reset) {
    std::string_view sent = reply.response.body();
    if (reply.fault == wire_fault::truncate_body && !sent.empty())
      sent = sent.substr(0, std::min(reply.truncate_at, sent.size() - 1));
    keep(sent, e.response_body);
  }
  std::lock_guard guard{mtx};
  e.seq = ++request_log_seq;
  request_log.push_back(std::move(e));
  while (request_log.size() > opts.request_log_capacity) {
    request_log.pop_front();
    ++st.request_log_dropped;
  }
}

void server::impl::record_arrival(bool poll, const std::string& key,
                                  steady::time_point at, int status,
                                  const std::string& fault_name) {
  if (!opts.record_arrivals || key.empty())
    return;
  arrival a;
  a.at = at;
  a.ms = std::chrono::duration<double, std::milli>(at - started_at).count();
  a.status = status;
  a.fault = fault_name;
  std::lock_guard guard{mtx};
  (poll ? st.poll_arrivals : st.arrivals)[key].push_back(std::move(a));
  st_changed.notify_all();
}

// -- statistics -------------------------------------------------------------------

void server::impl::handle_stats(http_server_context&& ctx, bool summary) {
  auto reply = json_reply(200, {});
  // Count this request before rendering so the body includes it.
  {
    std::lock_guard guard{mtx};
    ++st.requests[route::stats][200];
    st_changed.notify_all();
  }
  stats copy;
  {
    std::lock_guard guard{mtx};
    copy = st;
  }
  copy.connections_accepted = http ? http->connections_accepted() : 0;
  reply.response.body() = render_stats(copy, summary);
  ctx.respond(std::move(reply));
}

std::string render_stats(const stats& copy, bool summary) {
  json::object o;
  json::object reqs;
  for (auto& [r, by_status] : copy.requests) {
    json::object s;
    for (auto& [code, n] : by_status)
      s[std::to_string(code)] = n;
    reqs[r] = std::move(s);
  }
  o["requests"] = std::move(reqs);
  o["connections_accepted"] = copy.connections_accepted;
  o["inference_runs_total"] = copy.inference_runs_total;
  o["inference_runs_without_key"] = copy.inference_runs_without_key;
  o["max_runs_per_key"] = copy.max_runs_per_key;
  o["responses"] = copy.responses;
  o["billed_input_tokens"] = copy.billed_input_tokens;
  o["billed_cached_tokens"] = copy.billed_cached_tokens;
  o["billed_output_tokens"] = copy.billed_output_tokens;
  json::object faults_o;
  for (auto& [k, n] : copy.faults)
    faults_o[k] = n;
  o["faults"] = std::move(faults_o);
  json::object wh;
  wh["attempts"] = copy.webhooks.attempts;
  wh["delivered"] = copy.webhooks.delivered;
  wh["failed"] = copy.webhooks.failed;
  wh["ignored_invalid"] = copy.webhooks.ignored_invalid;
  wh["dropped"] = copy.webhooks.dropped;
  wh["duplicated"] = copy.webhooks.duplicated;
  json::object answers;
  for (auto& [code, n] : copy.webhooks.answers)
    answers[std::to_string(code)] = n;
  wh["answers"] = std::move(answers);
  o["webhooks"] = std::move(wh);
  o["expired_signed_urls"] = copy.expired_signed_urls;
  o["request_log_dropped"] = copy.request_log_dropped;
  if (!summary) {
    json::object runs;
    for (auto& [k, n] : copy.inference_runs)
      runs[k] = n;
    o["inference_runs"] = std::move(runs);
    auto arrivals = [](const std::map<std::string, std::vector<arrival>>& m) {
      json::object out;
      for (auto& [k, xs] : m) {
        json::array arr;
        for (auto& a : xs) {
          json::object e;
          e["ms"] = a.ms;
          e["status"] = a.status;
          if (!a.fault.empty())
            e["fault"] = a.fault;
          arr.push_back(std::move(e));
        }
        out[k] = std::move(arr);
      }
      return out;
    };
    o["arrivals"] = arrivals(copy.arrivals);
    o["poll_arrivals"] = arrivals(copy.poll_arrivals);
    json::object calls;
    for (auto& [k, xs] : copy.tinker_calls) {
      json::array arr;
      for (auto& x : xs)
        arr.push_back(json::value(x));
      calls[k] = std::move(arr);
    }
    o["tinker_calls"] = std::move(calls);
    json::object pck;
    for (auto& [k, v] : copy.prompt_cache_keys)
      pck[k] = v;
    o["prompt_cache_keys"] = std::move(pck);
    json::object timings;
    for (auto& [k, t] : copy.timings)
      timings[k] = json::object{{"id", t.id},
                                {"accepted_ms", t.accepted_ms},
                                {"done_ms", t.done_ms},
                                {"delivered_ms", t.delivered_ms},
                                {"webhook_ms", t.webhook_ms}};
    o["timings"] = std::move(timings);
  }
  return json::serialize(o);
}

std::vector<logged_request> server::impl::log_copy() const {
  std::lock_guard guard{mtx};
  return {request_log.begin(), request_log.end()};
}

std::string render_request_log(const std::vector<logged_request>& log) {
  json::array out;
  out.reserve(log.size());
  for (auto& e : log) {
    json::object hdrs;
    for (auto& [k, v] : e.headers)
      hdrs[k] = v;
    json::object o{{"seq", e.seq},
                   {"ms", e.ms},
                   {"method", e.method},
                   {"target", e.target},
                   {"route", e.route},
                   {"status", e.status},
                   {"headers", std::move(hdrs)},
                   {"request_body", e.request_body},
                   {"response_body", e.response_body},
                   {"truncated", e.truncated}};
    if (!e.fault.empty())
      o["fault"] = e.fault;
    out.push_back(std::move(o));
  }
  return json::serialize(out);
}

// -- server -------------------------------------------------------------------------

server::server(options opts) : impl_(std::make_unique<impl>(std::move(opts))) {
  if (auto err = impl_->start()) {
    impl_->stop();
    throw std::runtime_error("sail::emulator::server: " + render(err));
  }
}

server::server(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {
  // nop
}

caf::expected<std::unique_ptr<server>> server::make(options opts) {
  auto ptr = std::make_unique<impl>(std::move(opts));
  if (auto err = ptr->start()) {
    ptr->stop();
    return err;
  }
  return std::unique_ptr<server>{new server(std::move(ptr))};
}

server::~server() {
  if (impl_)
    impl_->stop();
}

uint16_t server::port() const noexcept {
  return impl_->http ? impl_->http->port() : 0;
}

std::string server::base_url() const {
  return impl_->base_url;
}

std::chrono::steady_clock::time_point server::started_at() const noexcept {
  return impl_->started_at;
}

const options& server::config() const noexcept {
  return impl_->opts;
}

stats server::snapshot() const {
  stats copy;
  {
    std::lock_guard guard{impl_->mtx};
    copy = impl_->st;
  }
  copy.connections_accepted
    = impl_->http ? impl_->http->connections_accepted() : 0;
  return copy;
}

bool server::wait_until(const std::function<bool(const stats&)>& pred,
                        std::chrono::milliseconds timeout) const {
  auto deadline = steady::now() + timeout;
  std::unique_lock lock{impl_->mtx};
  return impl_->st_changed.wait_until(lock, deadline, [&] {
    // As in snapshot(): the connection count lives in the HTTP server.
    impl_->st.connections_accepted
      = impl_->http ? impl_->http->connections_accepted() : 0;
    return pred(impl_->st);
  });
}

std::string server::stats_json(bool summary) const {
  return render_stats(snapshot(), summary);
}

std::vector<logged_request> server::request_log() const {
  return impl_->log_copy();
}

std::string server::request_log_json() const {
  return render_request_log(impl_->log_copy());
}

void server::set_faults(fault_settings f) {
  std::lock_guard guard{impl_->mtx};
  impl_->fault_rng.seed(f.seed != 0 ? f.seed
                                    : mix64(impl_->opts.seed ^ 0xfa17u));
  impl_->faults = std::move(f);
}

fault_settings server::faults() const {
  std::lock_guard guard{impl_->mtx};
  return impl_->faults;
}

void server::set_latency(latency_model latency) {
  std::lock_guard guard{impl_->mtx};
  impl_->latency = latency;
}

void server::set_archive_mode(archive_mode mode) {
  std::lock_guard guard{impl_->mtx};
  impl_->archive = mode;
}

void server::set_still_building_calls(int n) {
  std::lock_guard guard{impl_->mtx};
  impl_->still_building_calls = n;
}

void server::add_known_lora(std::string name) {
  std::lock_guard guard{impl_->mtx};
  impl_->known_loras.insert(std::move(name));
}

std::optional<int64_t> server::checkpoint_ttl(const std::string& ckpt) const {
  std::lock_guard guard{impl_->mtx};
  auto i = impl_->checkpoints.find(ckpt);
  if (i == impl_->checkpoints.end())
    return std::nullopt;
  return i->second.ttl;
}

void server::stop() {
  impl_->stop();
}

} // namespace sail::emulator
