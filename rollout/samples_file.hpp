// The rollout's output: a samples file, one JSON object per input prompt,
// written when all of its samples are done (docs/operations.md, "The rollout run"):
//
//   {"id":"p-1","samples":[{"tokens":[5,9],"logprobs":[-0.1,-2.3],"stop_reason":"stop"},
//                          {"error":{"kind":"timeout","message":"..."}}],"meta":{"k":"v"}}
//
// samples_writer appends lines (buffered; sync() writes and fdatasyncs), and
// repair_samples_file reconciles a file with what the journal knows after a
// crash: the lines after the last durable offset are reported (their prompts
// are done) and a torn last line is cut off.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "sail_tinker/messages/types.hpp"

namespace sail::rollout {

/// {"tokens":[...],"logprobs":[...] or null,"stop_reason":"...","usage":
/// {"input_tokens":N,"cached_tokens":N,"output_tokens":N,"reasoning_tokens":N}
/// or null (unknown)}, then "cost_usd":X when `cost_usd` is given; doubles in
/// their shortest round-trip form, so equal results give equal bytes.
std::string format_result(const tokens_with_logprobs& res,
                          std::optional<double> cost_usd = std::nullopt);

/// The usage of a sample text written by format_result: nullopt when it has
/// none, a null one, or a malformed one (e.g. a line from before usage was
/// recorded).
std::optional<sample_usage> parse_result_usage(std::string_view text);

/// {"error":{"kind":"<errc name>","message":"..."}} (secrets redacted).
std::string format_error(const caf::error& err);

/// One output line (without its line break): id, the samples in member
/// order (each from format_result / format_error), and `meta` copied as is.
std::string format_line(std::string_view id, const std::vector<std::string>& samples,
                        const std::optional<std::string>& meta);

/// Appends lines to a samples file. Thread-safe: one thread appends while
/// another syncs (the journal's committer).
class samples_writer {
public:
  /// Opens `path` for appending, creating it if missing (io_error naming
  /// "output" when it cannot).
  static caf::expected<std::unique_ptr<samples_writer>> open(const std::string& path);

  /// Writes what is buffered (no sync).
  ~samples_writer();

  samples_writer(const samples_writer&) = delete;
  samples_writer& operator=(const samples_writer&) = delete;

  /// Appends `line` and a line break (buffered). Failpoint "output_line":
  /// writes the first half of the line, then SIGKILL.
  caf::error append(std::string_view line);

  /// Writes the buffer to the file.
  caf::error flush();

  /// flush() + fdatasync(): everything appended before the call is durable.
  caf::error sync();

  /// Size of the file including buffered bytes.
  uint64_t size() const noexcept {
    return size_.load();
  }

  const std::string& path() const noexcept {
    return path_;
  }

private:
  samples_writer(int fd, std::string path, uint64_t size)
    : fd_(fd), path_(std::move(path)), size_(size) {}

  caf::error write_all(std::string_view data);
  caf::error flush_locked();

  int fd_;
  std::string path_;
  std::atomic<uint64_t> size_;
  std::mutex mtx_;
  std::string buf_;
};

struct repair_result {
  uint64_t size = 0;        ///< the file's size afterwards
  uint64_t lines = 0;       ///< complete lines found after the offset
  uint64_t torn_bytes = 0;  ///< bytes of a partial last line that were cut off
};

/// Reconciles a samples file with a journal that knows `offset` bytes of it
/// to be durable: calls on_line(id) for every complete line after `offset`
/// (each is a finished prompt), then truncates a partial last line and syncs
/// the file (before the caller journals those prompts as written). A file
/// shorter than `offset`, an offset inside a line, or a line that is not a
/// samples line: invalid_argument naming "output" (the file was changed
/// outside the rollout). A missing file counts as empty.
caf::expected<repair_result>
repair_samples_file(const std::string& path, uint64_t offset,
                    const std::function<caf::error(std::string_view id)>& on_line);

} // namespace sail::rollout
