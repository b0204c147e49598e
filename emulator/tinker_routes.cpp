// Tinker: PUT .../checkpoints/{kind}/{name}/ttl and GET .../archive.
#include <boost/beast/http/field.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "sail_tinker/emulator/emulator_impl.hpp"

namespace sail::emulator {

namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

std::string detail_body(std::string_view message) {
  json::object o;
  o["detail"] = message;
  return json::serialize(o);
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  for (;;) {
    auto next = s.find(sep, pos);
    out.push_back(s.substr(pos, next - pos));
    if (next == std::string_view::npos)
      break;
    pos = next + 1;
  }
  return out;
}

} // namespace

void server::impl::handle_tinker(http_server_context&& ctx,
                                 std::string_view path) {
  auto& req = ctx.request();
  constexpr std::string_view prefix = "/api/v1/training_runs/";
  auto parts = split(path.substr(prefix.size()), '/');
  if (parts.size() != 5 || parts[1] != "checkpoints"
      || (parts[4] != "ttl" && parts[4] != "archive"))
    return finish(std::move(ctx), route::other,
                  json_reply(404, detail_body("Not Found")));
  bool is_ttl = parts[4] == "ttl";
  const char* route_name = is_ttl ? route::ttl : route::archive;
  if (req.method() != (is_ttl ? http::verb::put : http::verb::get))
    return finish(std::move(ctx), route_name,
                  json_reply(405, detail_body("Method Not Allowed")));
  if (req["X-API-Key"] != opts.tinker_api_key)
    return finish(std::move(ctx), route_name,
                  json_reply(401, detail_body("Invalid or missing API key")));
  auto run = parts[0];
  auto kind = parts[2];
  auto name = parts[3];
  if (run.empty() || name.empty()
      || (kind != "weights" && kind != "sampler_weights"
          && kind != "external_weights"))
    return finish(std::move(ctx), route_name,
                  json_reply(400, detail_body("Invalid checkpoint id")));
  std::string ckpt = "tinker://" + std::string{run} + "/" + std::string{kind}
                     + "/" + std::string{name};
  if (!opts.known_checkpoints.empty() && !opts.known_checkpoints.count(ckpt))
    return finish(std::move(ctx), route_name,
                  json_reply(404, detail_body("Checkpoint not found")));
  {
    std::lock_guard guard{mtx};
    st.tinker_calls[ckpt].emplace_back(parts[4]);
    st_changed.notify_all();
  }
  auto d = draw_faults(route_tinker);
  std::string fault_name;
  bool truncate = false;
  bool malformed = false;
  if (d.kind) {
    auto k = *d.kind;
    if (k <= fault_kind::status_504 || k == fault_kind::connection_reset) {
      count_fault(k);
      fault_reply reply;
      if (k == fault_kind::connection_reset)
        reply.fault = wire_fault::reset;
      else
        reply = fault_status_reply(k, d, true);
      if (d.slow) {
        reply.delay = d.slow_delay;
        count_fault(fault_kind::slow_response);
      }
      return finish(std::move(ctx), route_name, std::move(reply), to_string(k));
    }
    truncate = k == fault_kind::truncated_body;
    malformed = k == fault_kind::malformed_json;
  }
  fault_reply reply;
  if (is_ttl) {
    boost::system::error_code ec;
    auto body = json::parse(req.body(), ec);
    const json::value* ttl = nullptr;
    if (!ec && body.is_object())
      ttl = body.get_object().if_contains("ttl_seconds");
    std::optional<int64_t> seconds;
    if (!ttl)
      return finish(std::move(ctx), route_name,
                    json_reply(400, detail_body("ttl_seconds is required")));
    if (!ttl->is_null()) {
      if (ttl->is_int64())
        seconds = ttl->get_int64();
      else if (ttl->is_uint64())
        seconds = INT64_MAX;
      if (!seconds || *seconds <= 0)
        return finish(std::move(ctx), route_name,
                      json_reply(400, detail_body(
                                        "ttl_seconds must be a positive "
                                        "integer or null")));
    }
    {
      std::lock_guard guard{mtx};
      checkpoints[ckpt].ttl = seconds.value_or(0);
    }
    json::object o;
    o["checkpoint_id"] = std::string{kind} + "/" + std::string{name};
    if (seconds)
      o["ttl_seconds"] = *seconds;
    else
      o["ttl_seconds"] = nullptr;
    reply = json_reply(200, json::serialize(o));
  } else {
    bool building;
    archive_mode mode;
    {
      std::lock_guard guard{mtx};
      auto& cs = checkpoints[ckpt];
      ++cs.archive_calls;
      building = cs.archive_calls <= still_building_calls;
      mode = archive;
    }
    if (building) {
      reply = json_reply(503, detail_body("Archive is still being built"));
    } else {
      // Exact expiry in milliseconds (enforced on creates); advertised
      // rounded down to the second, so a client never believes a URL valid
      // after it expired.
      auto expires_ms
        = std::chrono::duration_cast<std::chrono::milliseconds>(
            (std::chrono::system_clock::now() + opts.archive_url_ttl)
              .time_since_epoch())
            .count();
      std::chrono::system_clock::time_point expires{
        std::chrono::seconds{expires_ms / 1000}};
      auto path = "/_emulator/archive/" + std::string{run} + "/"
                  + std::string{kind} + "/" + std::string{name} + ".tar";
      auto url = base_url + path + "?Expires=" + std::to_string(expires_ms / 1000)
                 + "&ExpiresMs=" + std::to_string(expires_ms)
                 + "&Signature=" + sign_archive(path, expires_ms);
      if (mode == archive_mode::redirect) {
        reply = json_reply(302, {});
        reply.response.erase(http::field::content_type);
        reply.response.set(http::field::location, url);
        reply.response.set(http::field::expires, http_date(expires));
      } else {
        json::object o;
        o["url"] = url;
        o["expires"] = iso8601(expires);
        reply = json_reply(200, json::serialize(o));
      }
    }
  }
  auto& body = reply.response.body();
  if (malformed && !body.empty()) {
    body.resize(body.size() / 2);
    body += "\"<<malformed";
    fault_name = to_string(fault_kind::malformed_json);
  }
  if (truncate && !body.empty()) {
    reply.fault = wire_fault::truncate_body;
    reply.truncate_at = body.size() / 2;
    fault_name = to_string(fault_kind::truncated_body);
  }
  if (!fault_name.empty())
    count_fault(*d.kind);
  if (d.slow) {
    reply.delay = d.slow_delay;
    count_fault(fault_kind::slow_response);
  }
  finish(std::move(ctx), route_name, std::move(reply), fault_name);
}

std::string server::impl::sign_archive(std::string_view path,
                                       int64_t expires_ms) const {
  return sha256_hex("emulator-archive\n" + std::to_string(opts.seed) + "\n"
                    + std::string{path} + "\n" + std::to_string(expires_ms))
    .substr(0, 32);
}

bool server::impl::is_expired_archive_url(std::string_view url) const {
  std::string_view prefix = base_url;
  if (!url.starts_with(prefix))
    return false;
  url.remove_prefix(prefix.size());
  auto q = url.find('?');
  if (q == std::string_view::npos)
    return false;
  auto path = url.substr(0, q);
  if (!path.starts_with("/_emulator/archive/"))
    return false;
  auto param = [&](std::string_view name) -> std::string_view {
    auto query = url.substr(q + 1);
    for (auto& part : split(query, '&'))
      if (part.size() > name.size() && part.starts_with(name)
          && part[name.size()] == '=')
        return part.substr(name.size() + 1);
    return {};
  };
  auto ms_text = param("ExpiresMs");
  auto sig = param("Signature");
  if (ms_text.empty() || ms_text.size() > 18 || sig.empty())
    return false;
  int64_t expires_ms = 0;
  for (auto c : ms_text) {
    if (c < '0' || c > '9')
      return false;
    expires_ms = expires_ms * 10 + (c - '0');
  }
  if (sign_archive(path, expires_ms) != sig)
    return false; // not handed out by this emulator
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  return now_ms >= expires_ms;
}

} // namespace sail::emulator
