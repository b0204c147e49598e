#include "support/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

extern char** environ;

namespace sail::test {

namespace {

using clock_type = std::chrono::steady_clock;

int remaining_ms(clock_type::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
  return left.count() < 0 ? 0 : static_cast<int>(std::min<long long>(left.count(), 1'000'000));
}

} // namespace

subprocess::subprocess(const std::string& program, const std::vector<std::string>& args,
                       const process_options& opts) {
  int out_pipe[2];
  int err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0)
    throw std::runtime_error("pipe2 failed");
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    throw std::runtime_error("pipe2 failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  if (!opts.cwd.empty())
    posix_spawn_file_actions_addchdir_np(&actions, opts.cwd.c_str());
  // A clean signal state: the test runner may block or ignore signals.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  sigset_t all;
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  // Environment.
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv{*e};
    auto eq = kv.find('=');
    if (eq != std::string::npos)
      env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (auto& [k, v] : opts.env) {
    if (v)
      env[k] = *v;
    else
      env.erase(k);
  }
  std::vector<std::string> env_strings;
  for (auto& [k, v] : env)
    env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings)
    envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings{program};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_strings)
    argv.push_back(s.data());
  argv.push_back(nullptr);
  auto rc = posix_spawn(&pid_, program.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    throw std::runtime_error("posix_spawn " + program + ": " + std::strerror(rc));
  }
  out_fd_ = out_pipe[0];
  err_fd_ = err_pipe[0];
  pid_fd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
}

subprocess::~subprocess() {
  if (!reaped_) {
    kill(pid_, SIGKILL);
    reap(true);
  }
  for (int fd : {out_fd_, err_fd_, pid_fd_})
    if (fd >= 0)
      close(fd);
}

void subprocess::reap(bool block) {
  if (reaped_)
    return;
  int status = 0;
  auto rc = waitpid(pid_, &status, block ? 0 : WNOHANG);
  if (rc == pid_) {
    reaped_ = true;
    status_ = status;
  } else if (rc < 0 && errno == ECHILD) {
    reaped_ = true;
  }
}

bool subprocess::pump(clock_type::time_point deadline) {
  pollfd fds[3];
  nfds_t n = 0;
  int* owners[3] = {nullptr, nullptr, nullptr};
  std::string* sinks[3] = {nullptr, nullptr, nullptr};
  if (out_fd_ >= 0) {
    fds[n] = {out_fd_, POLLIN, 0};
    owners[n] = &out_fd_;
    sinks[n++] = &out_;
  }
  if (err_fd_ >= 0) {
    fds[n] = {err_fd_, POLLIN, 0};
    owners[n] = &err_fd_;
    sinks[n++] = &err_;
  }
  bool watch_pid = pid_fd_ >= 0 && !reaped_;
  if (watch_pid)
    fds[n++] = {pid_fd_, POLLIN, 0};
  if (n == 0)
    return false;
  // Without a pidfd, re-check the child at least every 50 ms.
  int timeout = remaining_ms(deadline);
  if (pid_fd_ < 0 && !reaped_ && out_fd_ < 0 && err_fd_ < 0)
    timeout = std::min(timeout, 50);
  auto rc = poll(fds, n, timeout);
  if (rc < 0)
    return errno == EINTR;
  if (rc == 0) {
    if (pid_fd_ < 0)
      reap(false);
    return clock_type::now() < deadline;
  }
  for (nfds_t i = 0; i < n; ++i) {
    if (fds[i].revents == 0)
      continue;
    if (owners[i] == nullptr) {
      reap(false);
      continue;
    }
    char buf[4096];
    auto got = read(fds[i].fd, buf, sizeof(buf));
    if (got > 0) {
      sinks[i]->append(buf, static_cast<size_t>(got));
    } else if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) {
      close(*owners[i]);
      *owners[i] = -1;
    }
  }
  return true;
}

std::optional<std::string> subprocess::wait_for_line(const std::string& prefix,
                                                     std::chrono::milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  for (;;) {
    for (;;) {
      auto nl = out_.find('\n', scanned_);
      if (nl == std::string::npos)
        break;
      auto line = out_.substr(scanned_, nl - scanned_);
      scanned_ = nl + 1;
      if (line.compare(0, prefix.size(), prefix) == 0)
        return line;
    }
    if (out_fd_ < 0 || clock_type::now() >= deadline)
      return std::nullopt;
    if (!pump(deadline) && out_fd_ >= 0 && clock_type::now() >= deadline)
      return std::nullopt;
  }
}

void subprocess::signal(int sig) {
  if (!reaped_)
    kill(pid_, sig);
}

process_result subprocess::wait(std::chrono::milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  process_result res;
  while ((out_fd_ >= 0 || err_fd_ >= 0 || !reaped_) && clock_type::now() < deadline) {
    if (out_fd_ < 0 && err_fd_ < 0 && pid_fd_ < 0) {
      reap(false);
      if (reaped_)
        break;
    }
    if (!pump(deadline))
      break;
  }
  if (!reaped_) {
    reap(false);
    if (!reaped_) {
      res.timed_out = true;
      kill(pid_, SIGKILL);
      reap(true);
    }
  }
  // Drain what is left after the exit (bounded: the writers are gone).
  auto drain_deadline = clock_type::now() + std::chrono::seconds(2);
  while ((out_fd_ >= 0 || err_fd_ >= 0) && clock_type::now() < drain_deadline
         && pump(drain_deadline)) {
  }
  if (WIFEXITED(status_)) {
    res.exited = true;
    res.exit_code = WEXITSTATUS(status_);
  } else if (WIFSIGNALED(status_)) {
    res.term_signal = WTERMSIG(status_);
  }
  res.out = out_;
  res.err = err_;
  return res;
}

process_result run_process(const std::string& program, const std::vector<std::string>& args,
                           const process_options& opts, std::chrono::milliseconds timeout) {
  subprocess proc{program, args, opts};
  return proc.wait(timeout);
}

} // namespace sail::test
