#include "sail_tinker/rollout/samples_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <charconv>
#include <cstdio>
#include <cstring>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value.hpp>

#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/redact.hpp"
#include "sail_tinker/rollout/failpoint.hpp"
#include "sail_tinker/rollout/prompts_file.hpp"

namespace sail::rollout {

namespace json = boost::json;

namespace {

void append_json_string(std::string& out, std::string_view s) {
  out += json::serialize(json::string{s});
}

caf::error io_failure(const std::string& path, const std::string& what) {
  return make_error(errc::io_error, what + " " + path + ": " + std::strerror(errno), "output");
}

caf::error bad_output(const std::string& path, uint64_t offset, const std::string& what) {
  return invalid_argument("output", path + " at byte " + std::to_string(offset) + ": " + what
                                      + "; it was changed outside the rollout (--restart "
                                        "starts over)");
}

} // namespace

// -- formatting ---------------------------------------------------------------------

std::string format_result(const tokens_with_logprobs& res, std::optional<double> cost_usd) {
  std::string out = "{\"tokens\":[";
  for (size_t i = 0; i < res.tokens.size(); ++i) {
    if (i > 0)
      out += ',';
    out += std::to_string(res.tokens[i]);
  }
  out += "],\"logprobs\":";
  if (res.maybe_logprobs) {
    out += '[';
    char buf[64];
    for (size_t i = 0; i < res.maybe_logprobs->size(); ++i) {
      if (i > 0)
        out += ',';
      auto r = std::to_chars(buf, buf + sizeof(buf), (*res.maybe_logprobs)[i]);
      out.append(buf, r.ptr);
    }
    out += ']';
  } else {
    out += "null";
  }
  out += ",\"stop_reason\":";
  append_json_string(out, res.stop_reason);
  out += ",\"usage\":";
  if (res.usage) {
    auto& u = *res.usage;
    out += "{\"input_tokens\":" + std::to_string(u.input_tokens)
           + ",\"cached_tokens\":" + std::to_string(u.cached_tokens)
           + ",\"output_tokens\":" + std::to_string(u.output_tokens)
           + ",\"reasoning_tokens\":" + std::to_string(u.reasoning_tokens) + '}';
  } else {
    out += "null";
  }
  if (cost_usd && std::isfinite(*cost_usd)) {
    out += ",\"cost_usd\":";
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof(buf), *cost_usd);
    out.append(buf, r.ptr);
  }
  out += '}';
  return out;
}

std::optional<sample_usage> parse_result_usage(std::string_view text) {
  // The layout is format_result's: the sample's top-level "usage" member.
  json::error_code ec;
  auto doc = json::parse(text, ec);
  if (ec || !doc.is_object())
    return std::nullopt;
  auto* u = doc.get_object().if_contains("usage");
  if (u == nullptr || !u->is_object())
    return std::nullopt;
  auto& o = u->get_object();
  sample_usage x;
  auto get = [&o](std::string_view key, int64_t& out) {
    auto* v = o.if_contains(key);
    if (v == nullptr || !v->is_int64())
      return false;
    out = v->get_int64();
    return true;
  };
  if (!get("input_tokens", x.input_tokens) || !get("cached_tokens", x.cached_tokens)
      || !get("output_tokens", x.output_tokens) || !get("reasoning_tokens", x.reasoning_tokens)
      || !x.valid())
    return std::nullopt;
  return x;
}

std::string format_error(const caf::error& err) {
  std::string kind;
  std::string message;
  if (auto code = code_of(err)) {
    kind = to_string(*code);
    auto* info = info_of(err);
    message = info != nullptr ? info->message : "";
  } else if (err == caf::sec::request_timeout) {
    kind = "timeout";
    message = "the sample did not finish in time";
  } else {
    kind = "transport_error";
    message = caf::to_string(err);
  }
  std::string out = "{\"error\":{\"kind\":";
  append_json_string(out, kind);
  out += ",\"message\":";
  append_json_string(out, redact_secrets(message));
  out += "}}";
  return out;
}

std::string format_line(std::string_view id, const std::vector<std::string>& samples,
                        const std::optional<std::string>& meta) {
  size_t len = id.size() + 32;
  for (auto& s : samples)
    len += s.size() + 1;
  if (meta)
    len += meta->size() + 8;
  std::string out;
  out.reserve(len);
  out += "{\"id\":";
  append_json_string(out, id);
  out += ",\"samples\":[";
  for (size_t i = 0; i < samples.size(); ++i) {
    if (i > 0)
      out += ',';
    out += samples[i];
  }
  out += ']';
  if (meta) {
    out += ",\"meta\":";
    out += *meta;
  }
  out += '}';
  return out;
}

// -- writer -------------------------------------------------------------------------

caf::expected<std::unique_ptr<samples_writer>> samples_writer::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return io_failure(path, "cannot open");
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    auto err = io_failure(path, "cannot stat");
    ::close(fd);
    return err;
  }
  return std::unique_ptr<samples_writer>{
    new samples_writer(fd, path, static_cast<uint64_t>(st.st_size))};
}

samples_writer::~samples_writer() {
  static_cast<void>(flush_locked());
  ::close(fd_);
}

caf::error samples_writer::write_all(std::string_view data) {
  while (!data.empty()) {
    auto n = ::write(fd_, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return io_failure(path_, "cannot write");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return caf::none;
}

caf::error samples_writer::append(std::string_view line) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (failpoint::fires("output_line")) {
    // A torn line: the first half reaches the file, then the process dies.
    static_cast<void>(flush_locked());
    static_cast<void>(write_all(line.substr(0, line.size() / 2)));
    failpoint::kill_now();
  }
  buf_.append(line);
  buf_ += '\n';
  size_ += line.size() + 1;
  if (buf_.size() >= 256 * 1024)
    return flush_locked();
  return caf::none;
}

caf::error samples_writer::flush_locked() {
  if (buf_.empty())
    return caf::none;
  auto err = write_all(buf_);
  buf_.clear();
  return err;
}

caf::error samples_writer::flush() {
  std::lock_guard<std::mutex> guard{mtx_};
  return flush_locked();
}

caf::error samples_writer::sync() {
  if (auto err = flush())
    return err;
  // Outside the lock: appends go on while the disk syncs; what was written
  // before this call is covered.
  if (::fdatasync(fd_) != 0)
    return io_failure(path_, "cannot sync");
  return caf::none;
}

// -- repair -------------------------------------------------------------------------

caf::expected<repair_result>
repair_samples_file(const std::string& path, uint64_t offset,
                    const std::function<caf::error(std::string_view id)>& on_line) {
  repair_result out;
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT)
      return io_failure(path, "cannot open");
    if (offset > 0)
      return bad_output(path, 0, "the file is missing but the journal records "
                                   + std::to_string(offset) + " bytes of it");
    return out;
  }
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } guard{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0)
    return io_failure(path, "cannot stat");
  auto size = static_cast<uint64_t>(st.st_size);
  if (size < offset)
    return bad_output(path, size, "the file is shorter than the " + std::to_string(offset)
                                    + " bytes the journal records");
  if (offset > 0) {
    char c = 0;
    if (::pread(fd, &c, 1, static_cast<off_t>(offset - 1)) != 1)
      return io_failure(path, "cannot read");
    if (c != '\n')
      return bad_output(path, offset, "the journal's offset is not at a line start");
  }
  // Stream the tail line by line.
  std::string line;
  std::string chunk(65536, '\0');
  uint64_t pos = offset;           // file position of chunk's next read
  uint64_t line_start = offset;    // file offset of `line`'s first byte
  uint64_t complete_end = offset;  // end of the last complete line
  for (;;) {
    auto n = ::pread(fd, chunk.data(), chunk.size(), static_cast<off_t>(pos));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return io_failure(path, "cannot read");
    }
    if (n == 0)
      break;
    std::string_view data{chunk.data(), static_cast<size_t>(n)};
    pos += static_cast<uint64_t>(n);
    while (!data.empty()) {
      auto nl = data.find('\n');
      if (nl == std::string_view::npos) {
        line.append(data);
        break;
      }
      line.append(data.substr(0, nl));
      data.remove_prefix(nl + 1);
      // A line nests as deep as the input's meta allows (the default limit
      // of 32 refused the rollout's own lines; found by
      // fuzz/prompts_line_fuzz).
      json::error_code ec;
      json::parse_options popts;
      popts.max_depth = prompt_limits{}.max_depth;
      auto v = json::parse(line, ec, {}, popts);
      if (ec || !v.is_object() || !v.get_object().contains("id")
          || !v.get_object().at("id").is_string() || !v.get_object().contains("samples"))
        return bad_output(path, line_start, "not a samples line");
      auto& id = v.get_object().at("id").get_string();
      if (auto err = on_line({id.data(), id.size()}))
        return err;
      ++out.lines;
      complete_end = line_start + line.size() + 1;
      line_start = complete_end;
      line.clear();
    }
  }
  if (complete_end < size) {
    if (::ftruncate(fd, static_cast<off_t>(complete_end)) != 0)
      return io_failure(path, "cannot truncate");
    out.torn_bytes = size - complete_end;
  }
  // The lines found are about to be journaled as written: durable first.
  if ((out.lines > 0 || out.torn_bytes > 0) && ::fdatasync(fd) != 0)
    return io_failure(path, "cannot sync");
  out.size = complete_end;
  return out;
}

} // namespace sail::rollout
