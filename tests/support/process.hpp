// Runs a program as a subprocess for tests: posix_spawn with stdout and
// stderr captured through pipes, optional environment overrides and working
// directory, signals, and bounded waits (poll on the pipes and on a pidfd --
// no sleeps). A subprocess still running when its handle is destroyed is
// killed (SIGKILL) and reaped.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sail::test {

struct process_options {
  /// Variables to set (value) or remove (nullopt); the rest is inherited.
  std::map<std::string, std::optional<std::string>> env;
  /// Working directory of the child (empty: inherit).
  std::string cwd;
};

struct process_result {
  bool exited = false;     ///< exited normally (exit_code valid)
  int exit_code = -1;
  int term_signal = 0;     ///< signal that ended it, if any
  bool timed_out = false;  ///< it had to be killed by wait()
  std::string out;
  std::string err;
};

class subprocess {
public:
  /// Starts `program` with `args` (argv[0] is `program`). Throws
  /// std::runtime_error when it cannot be started.
  subprocess(const std::string& program, const std::vector<std::string>& args,
             const process_options& opts = {});
  ~subprocess();

  subprocess(const subprocess&) = delete;
  subprocess& operator=(const subprocess&) = delete;

  pid_t pid() const noexcept {
    return pid_;
  }

  /// Reads stdout until a complete line starting with `prefix` arrives and
  /// returns it (without the newline); nullopt on timeout or end of output.
  /// Lines before it stay in the captured output.
  std::optional<std::string> wait_for_line(const std::string& prefix,
                                           std::chrono::milliseconds timeout);

  /// Sends `sig` (no-op once reaped).
  void signal(int sig);

  /// Waits until the process exits and both pipes are at EOF, at most
  /// `timeout`; then kills it (timed_out = true). Returns everything captured.
  process_result wait(std::chrono::milliseconds timeout);

  /// Output captured so far.
  const std::string& out() const noexcept {
    return out_;
  }
  const std::string& err() const noexcept {
    return err_;
  }

private:
  /// One poll round; false when nothing more can happen before `deadline`.
  bool pump(std::chrono::steady_clock::time_point deadline);
  void reap(bool block);

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  int pid_fd_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  std::string out_;
  std::string err_;
  size_t scanned_ = 0;
};

/// Runs a program to completion (bounded by `timeout`).
process_result run_process(const std::string& program, const std::vector<std::string>& args,
                           const process_options& opts = {},
                           std::chrono::milliseconds timeout = std::chrono::seconds(60));

} // namespace sail::test
