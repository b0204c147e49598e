#include "sail_tinker/messages/error.hpp"

#include <array>

#include <caf/message.hpp>

#include "sail_tinker/messages/redact.hpp"
#include "sail_tinker/messages/type_ids.hpp"

namespace sail {

namespace {

constexpr std::array<const char*, errc_count> errc_names = {
  "invalid_argument", "inference_error", "http_error",
  "timeout",          "overloaded",      "transport_error",
  "cancelled",        "not_configured",  "node_down",
  "io_error",        "unavailable",     "budget_exceeded",
};

static_assert(static_cast<uint8_t>(errc::budget_exceeded) == errc_count,
              "errc_names must list every enumerator");

std::string render_info(const char* kind, const error_info* info) {
  std::string out = kind;
  if (info == nullptr)
    return out;
  if (!info->message.empty()) {
    out += ": ";
    out += info->message;
  }
  if (!info->field.empty()) {
    out += " [field=";
    out += info->field;
    out += ']';
  }
  if (info->http_status != 0) {
    out += " [status=";
    out += std::to_string(info->http_status);
    out += ']';
  }
  if (!info->body.empty()) {
    out += " [body=";
    out += info->body;
    out += ']';
  }
  return out;
}

const error_info* info_in(const caf::message& ctx) noexcept {
  if (ctx.size() == 1 && ctx.match_element<error_info>(0))
    return &ctx.get_as<error_info>(0);
  return nullptr;
}

} // namespace

const char* to_string(errc code) noexcept {
  auto i = static_cast<uint8_t>(code);
  if (i == 0 || i > errc_count)
    return "unknown";
  return errc_names[i - 1];
}

std::optional<errc> parse_errc(std::string_view name) noexcept {
  for (uint8_t i = 0; i < errc_count; ++i)
    if (name == errc_names[i])
      return static_cast<errc>(i + 1);
  return std::nullopt;
}

caf::error make_error(errc code, std::string message, std::string field,
                      uint16_t http_status, std::string body) {
  // The field too: it can come from untrusted text (an unknown key of a
  // prompts line, found by fuzz/prompts_line_fuzz) and render() shows it.
  error_info info{redact_secrets(message), redact_secrets(field), http_status,
                  redact_secrets(body)};
  return caf::error{static_cast<uint8_t>(code), error_category,
                    caf::make_message(std::move(info))};
}

caf::error invalid_argument(std::string field, std::string message) {
  return make_error(errc::invalid_argument, std::move(message),
                    std::move(field));
}

caf::error inference_error(std::string message, std::string body) {
  return make_error(errc::inference_error, std::move(message), {}, 0,
                    std::move(body));
}

caf::error http_error(uint16_t status, std::string body, std::string message) {
  if (message.empty())
    message = "HTTP status " + std::to_string(status);
  return make_error(errc::http_error, std::move(message), {}, status,
                    std::move(body));
}

std::optional<errc> code_of(const caf::error& err) noexcept {
  if (!err || err.category() != error_category || err.code() == 0
      || err.code() > errc_count)
    return std::nullopt;
  return static_cast<errc>(err.code());
}

const error_info* info_of(const caf::error& err) noexcept {
  if (!code_of(err))
    return nullptr;
  return info_in(err.context());
}

std::string render(const caf::error& err) {
  if (!err)
    return "none";
  if (auto code = code_of(err))
    return render_info(to_string(*code), info_of(err));
  return redact_secrets(caf::to_string(err));
}

std::string render_error(uint8_t code, caf::atom_value category,
                         const caf::message& context) {
  if (category != error_category || code == 0 || code > errc_count)
    return "unknown sail error " + std::to_string(code);
  return render_info(to_string(static_cast<errc>(code)), info_in(context));
}

} // namespace sail
