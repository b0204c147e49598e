#include "sail_tinker/rollout/prompts_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/validation.hpp"
#include "sail_tinker/rollout/keys.hpp"

namespace sail::rollout {

namespace json = boost::json;

namespace {

caf::error bad(uint64_t line, std::string_view field, std::string_view message) {
  return invalid_argument(std::string{field}, "input:" + std::to_string(line) + ": "
                                                + std::string{field} + ": "
                                                + std::string{message});
}

caf::error io_failure(const std::string& name, const std::string& what) {
  return make_error(errc::io_error, what + " " + name + ": " + std::strerror(errno), "input");
}

/// Number of UTF-8 code points (the parser has checked the encoding).
size_t code_points(std::string_view s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
  });
}

// -- a raw scanner of the (already validated) top-level object ----------------------

size_t skip_ws(std::string_view s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
    ++i;
  return i;
}

/// `i` at an opening quote; returns the index after the closing quote.
size_t skip_string(std::string_view s, size_t i) {
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\')
      ++i;
    else if (s[i] == '"')
      return i + 1;
  }
  return s.size();
}

/// `i` at the start of a value; returns the index after it.
size_t skip_value(std::string_view s, size_t i) {
  if (i >= s.size())
    return i;
  if (s[i] == '"')
    return skip_string(s, i);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    while (i < s.size()) {
      char c = s[i];
      if (c == '"') {
        i = skip_string(s, i);
        continue;
      }
      if (c == '{' || c == '[')
        ++depth;
      else if (c == '}' || c == ']')
        if (--depth == 0)
          return i + 1;
      ++i;
    }
    return i;
  }
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' '
         && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
    ++i;
  return i;
}

struct raw_member {
  std::string key;
  std::string_view value;
};

/// The members of a valid JSON object text, in order, duplicates included.
std::vector<raw_member> raw_members(std::string_view s) {
  std::vector<raw_member> out;
  auto i = skip_ws(s, 0);
  if (i >= s.size() || s[i] != '{')
    return out;
  i = skip_ws(s, i + 1);
  while (i < s.size() && s[i] == '"') {
    auto key_end = skip_string(s, i);
    json::error_code ec;
    auto key = json::parse(s.substr(i, key_end - i), ec);
    i = skip_ws(s, key_end);
    if (i >= s.size() || s[i] != ':')
      break;
    i = skip_ws(s, i + 1);
    auto value_end = skip_value(s, i);
    raw_member m;
    if (!ec && key.is_string())
      m.key = std::string{key.as_string().data(), key.as_string().size()};
    m.value = s.substr(i, value_end - i);
    out.push_back(std::move(m));
    i = skip_ws(s, value_end);
    if (i < s.size() && s[i] == ',')
      i = skip_ws(s, i + 1);
  }
  return out;
}

// -- field checks -----------------------------------------------------------------------

/// An integer JSON value within [lo, hi]; nullopt if it is not an integer.
std::optional<int64_t> as_integer(const json::value& v) {
  if (v.is_int64())
    return v.get_int64();
  if (v.is_uint64()) {
    auto u = v.get_uint64();
    return u > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(u);
  }
  return std::nullopt;
}

caf::error check_stop(const json::value& v, uint64_t line, stop_condition& out) {
  auto one = [&](const json::value& x, std::vector<int64_t>& ids,
                 std::vector<std::string>& strs) -> caf::error {
    if (auto i = as_integer(x)) {
      ids.push_back(*i);
      return caf::none;
    }
    if (x.is_string()) {
      strs.emplace_back(x.get_string().data(), x.get_string().size());
      return caf::none;
    }
    return bad(line, "stop", "expected an int, a string, or a list of either");
  };
  std::vector<int64_t> ids;
  std::vector<std::string> strs;
  if (v.is_array()) {
    for (auto& x : v.get_array())
      if (auto err = one(x, ids, strs))
        return err;
  } else if (auto err = one(v, ids, strs)) {
    return err;
  }
  if (!ids.empty() && !strs.empty())
    return bad(line, "stop", "mixes token ids and strings");
  stop_condition stop;
  stop.token_ids = std::move(ids);
  stop.strings = std::move(strs);
  if (auto err = validate(stop)) {
    auto* info = info_of(err);
    return bad(line, "stop", info != nullptr ? info->message : "invalid");
  }
  out = std::move(stop);
  return caf::none;
}

} // namespace

caf::expected<prompt_line> parse_prompt_line(std::string_view text, uint64_t line,
                                             const prompt_limits& limits) {
  if (text.size() > limits.max_line_bytes)
    return bad(line, "line", "longer than " + std::to_string(limits.max_line_bytes) + " bytes");
  std::array<unsigned char, 4096> buf;
  json::monotonic_resource mr{buf.data(), buf.size()};
  json::parse_options popts;
  popts.max_depth = limits.max_depth;
  json::error_code ec;
  auto v = json::parse(text, ec, &mr, popts);
  if (ec)
    return bad(line, "line", "not valid JSON (" + ec.message() + ")");
  if (!v.is_object())
    return bad(line, "line", "expected a JSON object");
  auto& obj = v.get_object();
  auto members = raw_members(text);
  {
    std::set<std::string_view> seen;
    for (auto& m : members)
      if (!seen.insert(m.key).second)
        return bad(line, m.key, "key appears twice");
  }
  prompt_line out;
  out.line = line;
  for (auto& [key, value] : obj) {
    std::string_view k{key.data(), key.size()};
    if (k == "id") {
      if (!value.is_string())
        return bad(line, "id", "expected a string");
      auto& s = value.get_string();
      auto n = code_points({s.data(), s.size()});
      if (n == 0 || n > 128)
        return bad(line, "id", "must be 1..128 characters, got " + std::to_string(n));
      out.id.assign(s.data(), s.size());
    } else if (k == "prompt") {
      if (!value.is_array())
        return bad(line, "prompt", "expected an array of token ids");
      auto& arr = value.get_array();
      if (arr.empty())
        return bad(line, "prompt", "must not be empty");
      if (arr.size() > max_prompt_tokens)
        return bad(line, "prompt", "has " + std::to_string(arr.size())
                                     + " tokens, at most 2000000 allowed");
      out.prompt.reserve(arr.size());
      for (size_t i = 0; i < arr.size(); ++i) {
        auto t = as_integer(arr[i]);
        if (!t)
          return bad(line, "prompt", "item " + std::to_string(i) + " is not an integer");
        if (*t < 0 || *t > max_token_id)
          return bad(line, "prompt", "token id " + std::to_string(*t) + " (item "
                                       + std::to_string(i) + ") is outside 0..2147483647");
        out.prompt.push_back(*t);
      }
    } else if (k == "n") {
      auto n = as_integer(value);
      if (!n)
        return bad(line, "n", "expected an integer");
      if (*n < 1 || *n > static_cast<int64_t>(limits.max_group_size))
        return bad(line, "n", "must be within 1.." + std::to_string(limits.max_group_size));
      out.n = static_cast<uint32_t>(*n);
    } else if (k == "max_tokens") {
      auto n = as_integer(value);
      if (!n)
        return bad(line, "max_tokens", "expected an integer");
      if (*n < 1)
        return bad(line, "max_tokens", "must be >= 1");
      out.max_tokens = *n;
    } else if (k == "stop") {
      if (auto err = check_stop(value, line, out.stop))
        return err;
    } else if (k == "meta") {
      for (auto& m : members)
        if (m.key == "meta")
          out.meta = std::string{m.value};
    } else {
      return bad(line, k, "unknown key (allowed: id, prompt, n, max_tokens, stop, meta)");
    }
  }
  if (out.id.empty())
    return bad(line, "id", "missing");
  if (out.prompt.empty())
    return bad(line, "prompt", "missing");
  return out;
}

// -- reader -------------------------------------------------------------------------------

caf::expected<std::unique_ptr<prompts_reader>> prompts_reader::open(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr)
    return io_failure(path, "cannot open");
  return std::unique_ptr<prompts_reader>{new prompts_reader(f, path)};
}

caf::expected<std::unique_ptr<prompts_reader>> prompts_reader::adopt(int fd, std::string name) {
  FILE* f = ::fdopen(fd, "rb");
  if (f == nullptr)
    return io_failure(name, "cannot read");
  return std::unique_ptr<prompts_reader>{new prompts_reader(f, std::move(name))};
}

prompts_reader::~prompts_reader() {
  std::free(buf_);
  if (file_ != nullptr)
    std::fclose(file_);
}

caf::expected<bool> prompts_reader::next(std::string_view& text, uint64_t& line,
                                         std::string_view* raw) {
  for (;;) {
    errno = 0;
    auto n = ::getline(&buf_, &cap_, file_);
    if (n < 0) {
      if (std::ferror(file_))
        return io_failure(name_, "cannot read");
      return false;
    }
    ++line_;
    std::string_view all{buf_, static_cast<size_t>(n)};
    if (raw != nullptr)
      *raw = all;
    auto body = all;
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r'))
      body.remove_suffix(1);
    if (is_blank(body)) {
      if (raw == nullptr)
        continue;
      body = {}; // reported (empty) so that the caller can hash its bytes
    }
    text = body;
    line = line_;
    return true;
  }
}

caf::error prompts_reader::rewind() {
  if (std::fseek(file_, 0, SEEK_SET) != 0)
    return io_failure(name_, "cannot rewind");
  line_ = 0;
  return caf::none;
}

// -- validation pass --------------------------------------------------------------------

namespace {

uint64_t id_hash(std::string_view id) noexcept {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : id) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  h += 0x9e3779b97f4a7c15ull;
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

struct id_entry {
  uint64_t hash;
  uint64_t line;
};

} // namespace

caf::expected<input_summary> validate_prompts(prompts_reader& in, const prompt_limits& limits,
                                              uint32_t default_n) {
  input_summary out;
  sha256 digest;
  std::vector<id_entry> ids;
  caf::error first_error;
  uint64_t error_line = UINT64_MAX;
  for (;;) {
    std::string_view text;
    std::string_view raw;
    uint64_t line = 0;
    auto more = in.next(text, line, &raw);
    if (!more)
      return std::move(more.error());
    if (!*more)
      break;
    digest.update(raw);
    if (text.empty())
      continue; // a blank line (hashed above)
    auto parsed = parse_prompt_line(text, line, limits);
    if (!parsed) {
      first_error = std::move(parsed.error());
      error_line = line;
      break;
    }
    ++out.prompts;
    out.samples += parsed->n.value_or(default_n);
    ids.push_back({id_hash(parsed->id), line});
  }
  out.lines = in.lines();
  // Duplicates: equal hashes are candidates; a second pass compares the ids.
  std::sort(ids.begin(), ids.end(), [](const id_entry& a, const id_entry& b) {
    return a.hash != b.hash ? a.hash < b.hash : a.line < b.line;
  });
  std::vector<uint64_t> candidate_lines;
  for (size_t i = 1; i < ids.size(); ++i)
    if (ids[i].hash == ids[i - 1].hash) {
      candidate_lines.push_back(ids[i - 1].line);
      candidate_lines.push_back(ids[i].line);
    }
  std::vector<id_entry>{}.swap(ids); // give the memory back before the run
  if (!candidate_lines.empty()) {
    std::sort(candidate_lines.begin(), candidate_lines.end());
    candidate_lines.erase(std::unique(candidate_lines.begin(), candidate_lines.end()),
                          candidate_lines.end());
    if (auto err = in.rewind())
      return err;
    std::map<std::string, uint64_t> first_seen;
    size_t next = 0;
    for (;;) {
      std::string_view text;
      uint64_t line = 0;
      auto more = in.next(text, line);
      if (!more)
        return std::move(more.error());
      if (!*more || next >= candidate_lines.size())
        break;
      if (text.empty() || line != candidate_lines[next])
        continue;
      ++next;
      auto parsed = parse_prompt_line(text, line, limits);
      if (!parsed)
        continue;
      auto [pos, fresh] = first_seen.emplace(parsed->id, line);
      if (!fresh && line < error_line) {
        first_error = bad(line, "id", "duplicate id \"" + parsed->id + "\" (first on line "
                                        + std::to_string(pos->second) + ")");
        error_line = line;
        break;
      }
    }
  }
  if (first_error)
    return first_error;
  out.sha256 = digest.finish();
  if (auto err = in.rewind())
    return err;
  return out;
}

caf::expected<int> spool_stdin(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    // No O_TMPFILE on this file system: a named file, unlinked at once.
    std::string pattern = dir + "/.sail-tinker-input-XXXXXX";
    fd = ::mkostemp(pattern.data(), O_CLOEXEC);
    if (fd < 0)
      return make_error(errc::io_error, "cannot create a temporary file in " + dir + ": "
                                          + std::strerror(errno), "input");
    ::unlink(pattern.c_str());
  }
  std::array<char, 65536> buf;
  for (;;) {
    auto n = ::read(STDIN_FILENO, buf.data(), buf.size());
    if (n == 0)
      break;
    if (n < 0) {
      if (errno == EINTR)
        continue;
      ::close(fd);
      return make_error(errc::io_error, std::string{"cannot read standard input: "}
                                          + std::strerror(errno), "input");
    }
    for (ssize_t off = 0; off < n;) {
      auto w = ::write(fd, buf.data() + off, static_cast<size_t>(n - off));
      if (w < 0) {
        if (errno == EINTR)
          continue;
        ::close(fd);
        return make_error(errc::io_error, "cannot spool standard input to " + dir + ": "
                                            + std::strerror(errno), "input");
      }
      off += w;
    }
  }
  ::lseek(fd, 0, SEEK_SET);
  return fd;
}

} // namespace sail::rollout
