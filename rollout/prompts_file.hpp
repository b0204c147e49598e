// The rollout's input: a prompts file, one JSON object per line
// (docs/operations.md, "The rollout run"):
//
//   {"id":"p-1","prompt":[1,2,3],"n":4,"max_tokens":64,"stop":[2],"meta":{"k":"v"}}
//
// id (string, 1..128 characters, unique in the file) and prompt (1..2,000,000
// token ids in 0..2,147,483,647) are required; n (group size, >= 1),
// max_tokens (a per-call cap >= 1), stop (int, [int], string or [string], the
// completer's rules) and meta (any JSON value, kept byte for byte) are
// optional. Blank lines are ignored. Anything else is invalid_argument with
// the message "input:LINE: FIELD: message".
//
// The file is read twice, streaming, and never held in memory: once by
// validate_prompts (every line checked, ids unique, the SHA-256 fingerprint
// of the bytes) before anything is sent, then again for the run. Standard
// input is first spooled to an unlinked temporary file (spool_stdin).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "sail_tinker/messages/types.hpp"

namespace sail::rollout {

struct prompt_limits {
  /// Largest n (the completer's max_group_size).
  uint32_t max_group_size = 4096;
  /// Longest line in bytes.
  size_t max_line_bytes = 64u * 1024 * 1024;
  /// Deepest JSON nesting of a line (meta included).
  size_t max_depth = 64;
};

/// One prompt of the input.
struct prompt_line {
  uint64_t line = 0;  ///< 1-based line number
  std::string id;
  std::vector<int64_t> prompt;
  std::optional<uint32_t> n;
  std::optional<int64_t> max_tokens;
  stop_condition stop;
  /// The `meta` value as it appears in the line, byte for byte.
  std::optional<std::string> meta;
};

/// Parses one non-blank line (`line` = its number, for messages).
caf::expected<prompt_line> parse_prompt_line(std::string_view text, uint64_t line,
                                             const prompt_limits& limits = {});

/// Reads a prompts file line by line (blank lines skipped). Owns its FILE.
class prompts_reader {
public:
  /// Opens `path` for reading (io_error naming "input" when it cannot).
  static caf::expected<std::unique_ptr<prompts_reader>> open(const std::string& path);

  /// Takes over `fd` (e.g. from spool_stdin); `name` is for messages.
  static caf::expected<std::unique_ptr<prompts_reader>> adopt(int fd, std::string name);

  ~prompts_reader();
  prompts_reader(const prompts_reader&) = delete;
  prompts_reader& operator=(const prompts_reader&) = delete;

  /// The next non-blank line (without its line break) and its number; false
  /// at the end. The view is valid until the next call. With `raw`, blank
  /// lines are returned too (as empty text) and `raw` receives the line's
  /// bytes including its line break, for fingerprints.
  caf::expected<bool> next(std::string_view& text, uint64_t& line,
                           std::string_view* raw = nullptr);

  /// Back to the first line.
  caf::error rewind();

  /// Physical lines read so far.
  uint64_t lines() const noexcept {
    return line_;
  }

  const std::string& name() const noexcept {
    return name_;
  }

private:
  prompts_reader(FILE* f, std::string name) : file_(f), name_(std::move(name)) {}

  FILE* file_;
  std::string name_;
  char* buf_ = nullptr;
  size_t cap_ = 0;
  uint64_t line_ = 0;
};

/// What the validation pass learned.
struct input_summary {
  std::string sha256;    ///< of every byte of the input
  uint64_t lines = 0;    ///< physical lines
  uint64_t prompts = 0;  ///< non-blank lines
  uint64_t samples = 0;  ///< sum of n (default_n where a line has none)
};

/// The validation pass: every line parsed and checked, ids unique (the first
/// duplicate is reported with the line of its first occurrence), the
/// fingerprint computed. Stops at the first invalid line. Holds 16 bytes per
/// prompt (a hash of its id and its line) while it runs, nothing afterwards.
/// Leaves the reader rewound.
caf::expected<input_summary> validate_prompts(prompts_reader& in, const prompt_limits& limits,
                                              uint32_t default_n);

/// Copies standard input into an unlinked temporary file in `dir` and
/// returns its descriptor, positioned at the start.
caf::expected<int> spool_stdin(const std::string& dir);

} // namespace sail::rollout
