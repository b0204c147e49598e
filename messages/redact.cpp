#include "sail_tinker/messages/redact.hpp"

#include <cctype>

namespace sail {

namespace {

constexpr std::string_view redacted = "[REDACTED]";

bool is_token_char(char c) noexcept {
  auto u = static_cast<unsigned char>(c);
  return std::isalnum(u) || c == '_' || c == '-' || c == '.' || c == '~'
         || c == '+' || c == '/' || c == '=';
}

bool starts_with_ci(std::string_view text, size_t pos, std::string_view prefix) {
  if (text.size() - pos < prefix.size())
    return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(text[pos + i]))
        != std::tolower(static_cast<unsigned char>(prefix[i])))
      return false;
  return true;
}

bool at_word_start(std::string_view text, size_t pos) noexcept {
  return pos == 0 || !is_token_char(text[pos - 1]);
}

// Length of the secret-looking token starting at pos (0 if none).
size_t secret_length(std::string_view text, size_t pos) {
  if (!at_word_start(text, pos))
    return 0;
  auto token_end = [&](size_t from) {
    while (from < text.size() && is_token_char(text[from]))
      ++from;
    return from;
  };
  // whk_: this project's webhook tokens (webhook_receiver.hpp).
  for (std::string_view prefix : {std::string_view{"sk_"}, std::string_view{"sk-"},
                                  std::string_view{"tml-"}, std::string_view{"eyJ"},
                                  std::string_view{"whk_"}}) {
    if (text.compare(pos, prefix.size(), prefix) == 0) {
      auto end = token_end(pos + prefix.size());
      // Short words ("sk_" alone, "tml-x") are not keys worth hiding but
      // hiding them costs nothing either; require some length to keep
      // ordinary prose readable.
      if (end - pos >= prefix.size() + 4)
        return end - pos;
    }
  }
  return 0;
}

} // namespace

std::string redact_url(std::string_view url) {
  std::string out;
  auto scheme_end = url.find("://");
  // A "://" after the first '/', '?' or '#' is inside the path or query (a
  // relative reference such as "/a.tar?sig=S&next=http://x"), not a scheme:
  // taking it for one would copy the query before it unredacted.
  if (scheme_end != std::string_view::npos
      && url.substr(0, scheme_end).find_first_of("/?#") != std::string_view::npos)
    scheme_end = std::string_view::npos;
  size_t authority = scheme_end == std::string_view::npos ? 0 : scheme_end + 3;
  out.append(url.substr(0, authority));
  auto rest = url.substr(authority);
  auto path_start = rest.find_first_of("/?#");
  auto auth_part = rest.substr(0, path_start);
  if (auto at = auth_part.rfind('@'); at != std::string_view::npos)
    auth_part = auth_part.substr(at + 1);
  out.append(auth_part);
  if (path_start == std::string_view::npos)
    return out;
  rest = rest.substr(path_start);
  auto q = rest.find_first_of("?#");
  out.append(rest.substr(0, q));
  if (q != std::string_view::npos)
    out.append("?").append(redacted);
  return out;
}

std::string redact_secrets(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    // http(s) URLs: keep scheme, host and path, hide query and userinfo.
    if ((starts_with_ci(text, i, "http://") || starts_with_ci(text, i, "https://"))
        && at_word_start(text, i)) {
      size_t end = i;
      while (end < text.size()) {
        auto c = text[end];
        if (std::isspace(static_cast<unsigned char>(c)) || c == '"' || c == '\''
            || c == '<' || c == '>' || c == '\\')
          break;
        ++end;
      }
      out += redact_url(text.substr(i, end - i));
      i = end;
      continue;
    }
    // "Bearer <token>": hide the token whatever it looks like.
    if (starts_with_ci(text, i, "bearer ") && at_word_start(text, i)) {
      out.append(text.substr(i, 7));
      i += 7;
      size_t end = i;
      while (end < text.size() && is_token_char(text[end]))
        ++end;
      if (end > i) {
        out += redacted;
        i = end;
      }
      continue;
    }
    if (auto n = secret_length(text, i); n > 0) {
      out += redacted;
      i += n;
      continue;
    }
    out += text[i++];
  }
  return out;
}

} // namespace sail
