// libFuzzer target for the rollout's samples file as a resume reads it
// (rollout/samples_file.*: repair_samples_file). After a crash the output may
// end in a torn line, and anything may have happened to it outside the
// rollout: the resume reads every line after the offset the journal knows to
// be durable, reports each line's id as a finished prompt, and cuts a partial
// last line.
//
// Input: byte 0 picks the journal's offset (bit 7 clear: the start of line
// `byte % (lines + 1)`; set: any position, up to one byte past the end),
// byte 1 makes the caller's callback fail at that line (0: never), byte 2
// from 0xF0 puts a long valid line first so that the lines after it straddle
// the reader's 64 KiB chunk boundary (below: none); the rest is the file (a
// memfd, reached by its /proc path like a file).
//
// Invariants beyond "no crash, no UB, no leak", against an independent
// reading of the same bytes:
//   - an offset beyond the end or inside a line, or a complete line after it
//     that is not a samples line (an object with a string "id" and
//     "samples"), is invalid_argument naming "output", and the file is left
//     as it was;
//   - the callback hears exactly the ids of the complete lines after the
//     offset, in order; its error is returned as it is, the file left as it
//     was;
//   - on success: the reported line count, the new size (the end of the
//     last complete line) and the torn bytes match, the file is truncated to
//     that size and nothing before it changed.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "fuzz_util.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/rollout/prompts_file.hpp"
#include "sail_tinker/rollout/samples_file.hpp"

namespace {

using namespace sail;
using sail::fuzz::require;
namespace json = boost::json;

std::string contents(int fd) {
  struct stat st;
  require(::fstat(fd, &st) == 0, "cannot stat the memfd");
  std::string out(static_cast<size_t>(st.st_size), '\0');
  if (!out.empty())
    require(::pread(fd, out.data(), out.size(), 0) == static_cast<ssize_t>(out.size()),
            "cannot read the memfd");
  return out;
}

/// The id of a samples line, or nullopt when it is not one.
std::optional<std::string> id_of(std::string_view line) {
  json::parse_options popts;
  popts.max_depth = rollout::prompt_limits{}.max_depth;
  json::error_code ec;
  auto v = json::parse(line, ec, {}, popts);
  if (ec || !v.is_object())
    return std::nullopt;
  auto& obj = v.get_object();
  auto* id = obj.if_contains("id");
  if (id == nullptr || !id->is_string() || !obj.contains("samples"))
    return std::nullopt;
  return std::string{id->get_string()};
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3)
    return 0;
  auto offset_pick = data[0];
  auto fail_at = data[1];
  auto pad = data[2];
  std::string file;
  if (pad >= 0xF0) {
    // One valid line of 65536 - 32 * (pad - 0xEF) bytes (newline included).
    size_t len = 65536 - 32 * size_t{pad - 0xEFu};
    std::string head = R"({"id":"pad","samples":[],"meta":")";
    std::string tail = "\"}\n";
    file = head + std::string(len - head.size() - tail.size(), 'x') + tail;
  }
  file.append(fuzz::as_text(data + 3, size - 3));

  // The offset the "journal" records.
  uint64_t offset = 0;
  if ((offset_pick & 0x80) == 0) {
    std::vector<uint64_t> starts{0};
    for (size_t i = 0; i < file.size(); ++i)
      if (file[i] == '\n')
        starts.push_back(i + 1);
    offset = starts[offset_pick % starts.size()];
  } else {
    offset = (offset_pick & 0x7f) * (file.size() + 1) / 127;
  }

  // The independent reading.
  enum class expect { ok, bad_output, callback } expected = expect::ok;
  std::vector<std::string> ids;
  uint64_t complete_end = offset;
  if (offset > file.size() || (offset > 0 && file[offset - 1] != '\n')) {
    expected = expect::bad_output;
  } else {
    for (auto pos = offset; pos < file.size();) {
      auto nl = file.find('\n', pos);
      if (nl == std::string::npos)
        break;
      auto id = id_of(std::string_view{file}.substr(pos, nl - pos));
      if (!id) {
        expected = expect::bad_output;
        break;
      }
      ids.push_back(std::move(*id));
      if (fail_at != 0 && ids.size() == fail_at) {
        expected = expect::callback;
        break;
      }
      complete_end = nl + 1;
      pos = nl + 1;
    }
  }

  int fd = ::memfd_create("samples", MFD_CLOEXEC);
  if (fd < 0)
    return 0;
  require(::pwrite(fd, file.data(), file.size(), 0) == static_cast<ssize_t>(file.size()),
          "cannot write the memfd");
  auto path = "/proc/self/fd/" + std::to_string(fd);
  std::vector<std::string> heard;
  auto callback_error = make_error(errc::io_error, "journal full", "journal");
  auto res = rollout::repair_samples_file(path, offset, [&](std::string_view id) -> caf::error {
    heard.emplace_back(id);
    if (fail_at != 0 && heard.size() == fail_at)
      return callback_error;
    return caf::none;
  });
  auto after = contents(fd);
  ::close(fd);

  switch (expected) {
    case expect::bad_output:
      require(!res, "repair accepts a file it should refuse");
      fuzz::require_kind(res.error(), errc::invalid_argument, "bad output refused untyped");
      require(info_of(res.error())->field == "output", "bad output error names another field");
      require(after == file, "a refused file was changed");
      require(heard.size() == ids.size(), "repair reports lines past a bad one");
      break;
    case expect::callback:
      require(!res, "repair ignores its callback's error");
      require(res.error() == callback_error, "repair changes its callback's error");
      require(after == file, "the file was changed although the callback failed");
      break;
    case expect::ok:
      require(static_cast<bool>(res), "repair refuses a good file");
      require(res->lines == ids.size(), "repair counts another number of lines");
      require(res->size == complete_end, "repair reports another size");
      require(res->torn_bytes == file.size() - complete_end, "repair cuts another torn length");
      require(after == file.substr(0, complete_end), "repair leaves other bytes");
      break;
  }
  require(heard == ids, "repair reports other ids");
  return 0;
}
