// Fault drawing, injected status answers, and the wire faults (reset,
// truncated body) through the HTTP server's raw-answer hook.
#include <algorithm>
#include <sstream>

#include <boost/asio/socket_base.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/serialize.hpp>

#include "sail_tinker/emulator/emulator_impl.hpp"

namespace sail::emulator {

namespace http = boost::beast::http;
namespace json = boost::json;

const char* to_string(fault_kind kind) noexcept {
  switch (kind) {
    case fault_kind::status_429:
      return "status_429";
    case fault_kind::status_529:
      return "status_529";
    case fault_kind::status_500:
      return "status_500";
    case fault_kind::status_502:
      return "status_502";
    case fault_kind::status_503:
      return "status_503";
    case fault_kind::status_504:
      return "status_504";
    case fault_kind::connection_reset:
      return "connection_reset";
    case fault_kind::truncated_body:
      return "truncated_body";
    case fault_kind::malformed_json:
      return "malformed_json";
    case fault_kind::missing_token_ids:
      return "missing_token_ids";
    case fault_kind::logprob_mismatch:
      return "logprob_mismatch";
    case fault_kind::slow_response:
      return "slow_response";
  }
  return "unknown";
}

uint64_t stats::count(const std::string& route_name, int status) const {
  auto i = requests.find(route_name);
  if (i == requests.end())
    return 0;
  auto j = i->second.find(status);
  return j == i->second.end() ? 0 : j->second;
}

uint64_t stats::fault_count(fault_kind kind) const {
  auto i = faults.find(to_string(kind));
  return i == faults.end() ? 0 : i->second;
}

namespace {

/// A request's context that reaches the server's raw-answer hook
/// (http_server_context::respond_raw is protected: only the emulator's
/// answers use it).
class faulty_context : public http_server_context {
public:
  explicit faulty_context(http_server_context&& ctx) : http_server_context(std::move(ctx)) {
  }

  void respond(fault_reply reply) {
    auto fault = reply.fault;
    auto truncate_at = reply.truncate_at;
    http_server_reply plain = std::move(reply);
    switch (fault) {
      case wire_fault::none:
        return http_server_context::respond(std::move(plain));
      case wire_fault::reset:
        // No bytes, SO_LINGER 0: the close is a reset.
        return respond_raw(std::move(plain),
                           [](const http_server_response&, boost::asio::ip::tcp::socket& s) {
                             boost::system::error_code ignored;
                             s.set_option(boost::asio::socket_base::linger{true, 0}, ignored);
                             return std::string{};
                           });
      case wire_fault::truncate_body:
        // The header as prepared (full Content-Length), the body cut short.
        return respond_raw(std::move(plain), [truncate_at](const http_server_response& res,
                                                           boost::asio::ip::tcp::socket&) {
          std::ostringstream os;
          os << res.base();
          auto& body = res.body();
          auto keep = std::min(truncate_at, body.empty() ? size_t{0} : body.size() - 1);
          auto bytes = os.str();
          bytes.append(body.data(), keep);
          return bytes;
        });
    }
  }
};

double draw_unit(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

} // namespace

fault_draw server::impl::draw_faults(uint8_t route_bit) {
  fault_draw d;
  std::lock_guard guard{mtx};
  d.slow_delay = faults.slow_delay;
  d.retry_after = faults.retry_after;
  d.retry_after_http_date = faults.retry_after_http_date;
  d.retry_after_on_503 = faults.retry_after_on_503;
  if ((faults.routes & route_bit) == 0)
    return d;
  if (!faults.scripted.empty()) {
    auto kind = faults.scripted.front();
    faults.scripted.pop_front();
    if (kind == fault_kind::slow_response)
      d.slow = true;
    else
      d.kind = kind;
  } else {
    for (size_t i = 0; i < fault_kind_count; ++i) {
      auto kind = static_cast<fault_kind>(i);
      if (kind == fault_kind::slow_response)
        continue;
      auto p = faults.probability[i];
      if (p > 0 && draw_unit(fault_rng) < p) {
        d.kind = kind;
        break;
      }
    }
    auto p_slow = faults.get(fault_kind::slow_response);
    if (p_slow > 0 && draw_unit(fault_rng) < p_slow)
      d.slow = true;
  }
  if (d.kind)
    d.after_accept = draw_unit(fault_rng) < faults.after_accept_fraction;
  return d;
}

void server::impl::count_fault(fault_kind kind) {
  std::lock_guard guard{mtx};
  ++st.faults[to_string(kind)];
  st_changed.notify_all();
}

fault_reply server::impl::fault_status_reply(fault_kind kind, const fault_draw& d,
                                             bool tinker) {
  unsigned status = 500;
  const char* message = "internal server error";
  const char* type = "server_error";
  const char* code = "internal_error";
  bool retry_after = false;
  switch (kind) {
    case fault_kind::status_429:
      status = 429;
      message = "rate limit exceeded for your organization";
      type = "rate_limit_error";
      code = "rate_limit_exceeded";
      retry_after = true;
      break;
    case fault_kind::status_529:
      status = 529;
      message = "the model is overloaded, retry later";
      type = "overloaded_error";
      code = "model_overloaded";
      retry_after = true;
      break;
    case fault_kind::status_502:
      status = 502;
      message = "upstream proxy error";
      code = "bad_gateway";
      break;
    case fault_kind::status_503:
      status = 503;
      message = "service temporarily unavailable";
      code = "service_unavailable";
      retry_after = d.retry_after_on_503;
      break;
    case fault_kind::status_504:
      status = 504;
      message = "timed out waiting for completion";
      code = "gateway_timeout";
      break;
    default:
      break;
  }
  std::string body;
  if (tinker) {
    json::object o;
    o["detail"] = message;
    body = json::serialize(o);
  } else {
    body = sail_error_body(message, type, std::nullopt, code);
  }
  auto reply = json_reply(status, std::move(body));
  if (retry_after) {
    if (d.retry_after_http_date) {
      // Rounded up to whole seconds so the date is never before the floor.
      auto at = std::chrono::system_clock::now() + d.retry_after
                + std::chrono::seconds{1};
      reply.response.set(http::field::retry_after, http_date(at));
    } else {
      reply.response.set(http::field::retry_after,
                         std::to_string(d.retry_after.count()));
    }
  }
  return reply;
}

void send_reply(http_server_context&& ctx, fault_reply reply) {
  faulty_context{std::move(ctx)}.respond(std::move(reply));
}

} // namespace sail::emulator
