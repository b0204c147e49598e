// bench/rollout_bench: the rollout run, `sail-tinker rollout --input`, run as a
// process against `sail-tinker emulate` in a process of its own (a fresh one
// per run) at zero model latency (queued 0, 0 us per token: one create and
// one poll per sample), so what is measured -- wall time, CPU time and
// memory of the job's process -- is the job itself: reading the input, the
// actor stack, the HTTP client, writing the output and the journal. (The
// emulator keeps every response it served: its memory grows with the run,
// the job's must not.)
//
// 1. samples/s with the journal on and off, side by side in one run
//    (alternating, --rounds each; the median of each side and the cost of
//    the journal in percent);
// 2. the time to resume a job of --resume-samples samples (prompts of n = 4):
//    the full run, a resume with nothing left to do, and a resume after the
//    job was SIGKILLed half way (failpoint sample_completed);
// 3. RSS after --rss-mark prompts and at the end of a --rss-lines-line input
//    (n = 1): memory bounded by the window in flight, not the input.
//
// Usage: rollout_bench [--binary PATH] [--dir DIR] [--prompts 20000]
//                      [--rounds 3] [--concurrency 64] [--resume-samples 100000]
//                      [--rss-lines 1000000] [--rss-mark 10000]
//                      [--skip-throughput] [--skip-resume] [--skip-rss]
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_support.hpp"

extern char** environ;

namespace {

using clock_type = std::chrono::steady_clock;

struct run_result {
  int exit_code = -1;
  int term_signal = 0;
  double wall = 0;         ///< seconds, process start to exit
  double cpu = 0;          ///< user + system CPU seconds of the process
  double throughput = 0;   ///< samples/s from the summary
  double rss_end = 0;      ///< MiB, from the summary
  double peak = 0;         ///< MiB, from the summary
  long rss_mark_kb = -1;   ///< VmRSS when a progress line first reported >= mark
  uint64_t mark_prompts = 0;
  std::string out;
};

/// Runs `binary args...` (SAIL_API_KEY/SAIL_BASE_URL unset, `env` added),
/// reading its stdout; samples the child's VmRSS at the first progress line
/// reporting at least `mark` prompts.
run_result run(const std::string& binary, const std::vector<std::string>& args,
               const std::vector<std::string>& env = {}, uint64_t mark = 0) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0)
    throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv{*e};
    if (kv.rfind("SAIL_API_KEY=", 0) == 0 || kv.rfind("SAIL_BASE_URL=", 0) == 0
        || kv.rfind("SAIL_TINKER_FAILPOINT=", 0) == 0)
      continue;
    env_strings.push_back(kv);
  }
  env_strings.insert(env_strings.end(), env.begin(), env.end());
  std::vector<char*> envp;
  for (auto& s : env_strings)
    envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings{binary};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_strings)
    argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  auto start = clock_type::now();
  auto rc = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (rc != 0)
    throw std::runtime_error("cannot start " + binary + ": " + std::strerror(rc));
  run_result res;
  std::string pending;
  std::regex progress{R"(^progress: (\d+)/)"};
  char buf[65536];
  for (;;) {
    auto n = read(pipe_fds[0], buf, sizeof(buf));
    if (n <= 0)
      break;
    pending.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      auto line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      res.out += line + "\n";
      std::smatch m;
      if (mark > 0 && res.rss_mark_kb < 0 && std::regex_search(line, m, progress)) {
        auto prompts = std::stoull(m[1]);
        if (prompts >= mark) {
          res.rss_mark_kb = sail::bench::rss_kb(pid);
          res.mark_prompts = prompts;
        }
      }
    }
  }
  close(pipe_fds[0]);
  int status = 0;
  rusage ru{};
  wait4(pid, &status, 0, &ru);
  auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
  res.cpu = secs(ru.ru_utime) + secs(ru.ru_stime);
  res.wall = std::chrono::duration<double>(clock_type::now() - start).count();
  if (WIFEXITED(status))
    res.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    res.term_signal = WTERMSIG(status);
  std::smatch m;
  if (std::regex_search(res.out, m, std::regex{R"(throughput\s+([0-9.]+) samples/s)"}))
    res.throughput = std::stod(m[1]);
  if (std::regex_search(res.out, m,
                        std::regex{R"(memory\s+RSS ([0-9.]+) MiB, peak ([0-9.]+) MiB)"})) {
    res.rss_end = std::stod(m[1]);
    res.peak = std::stod(m[2]);
  }
  return res;
}

/// `sail-tinker emulate` at zero latency in a child process.
struct emulator_child {
  pid_t pid = -1;
  int out_fd = -1;
  std::string url;

  explicit emulator_child(const std::string& binary) {
    int fds[2];
    if (pipe(fds) != 0)
      throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    std::vector<std::string> args{binary, "emulate", "--latency-queued-ms", "0",
                                  "--latency-per-token-us", "0", "--threads", "2"};
    std::vector<char*> argv;
    for (auto& s : args)
      argv.push_back(s.data());
    argv.push_back(nullptr);
    auto rc = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0)
      throw std::runtime_error("cannot start the emulator");
    out_fd = fds[0];
    std::string line;
    char c;
    while (read(out_fd, &c, 1) == 1 && c != '\n')
      line += c;
    const std::string prefix = "listening on ";
    if (line.compare(0, prefix.size(), prefix) != 0)
      throw std::runtime_error("the emulator did not start: " + line);
    url = line.substr(prefix.size());
  }

  ~emulator_child() {
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    close(out_fd);
  }
};

/// `prompts` lines of prompts of 16 tokens, each with n = `n`.
void write_input(const std::string& path, uint64_t prompts, int n) {
  std::ofstream out{path};
  for (uint64_t i = 0; i < prompts; ++i) {
    out << "{\"id\":\"p-" << i << "\",\"prompt\":[";
    for (int t = 0; t < 16; ++t)
      out << (t > 0 ? "," : "") << (i * 131 + static_cast<uint64_t>(t) * 7) % 50000;
    out << ']';
    if (n > 1)
      out << ",\"n\":" << n;
    out << "}\n";
  }
}

std::vector<std::string> job_args(const std::string& in, const std::string& out,
                                  const std::string& concurrency, const emulator_child& emu) {
  return {"rollout",      "--input",     in,     "--output", out,
          "--max-tokens", "8",           "--window", "asap", "--concurrency",
          concurrency,    "--run-id",    "bench", "--progress", "lines",
          "--base-url",   emu.url};
}

const std::string api_key = "SAIL_API_KEY=sk_emulator_key";

void remove_outputs(const std::string& out) {
  for (auto suffix : {"", ".journal", ".journal-wal", ".journal-shm"})
    std::remove((out + suffix).c_str());
}

double median(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  return xs.empty() ? 0 : xs[xs.size() / 2];
}

void check(const run_result& r, const char* what) {
  if (r.exit_code != 0) {
    std::fprintf(stderr, "%s failed (exit %d, signal %d):\n%s\n", what, r.exit_code,
                 r.term_signal, r.out.c_str());
    std::exit(1);
  }
}

std::string default_binary() {
  char self[4096];
  auto n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0)
    return "sail-tinker";
  self[n] = '\0';
  std::string dir = dirname(self);
  return dir + "/../sail-tinker";
}

} // namespace

int main(int argc, char** argv) {
  std::string binary = default_binary();
  std::string dir = "/tmp";
  uint64_t prompts = 20'000;
  int rounds = 3;
  std::string concurrency = "64";
  uint64_t resume_samples = 100'000;
  uint64_t rss_lines = 1'000'000;
  uint64_t rss_mark = 10'000;
  bool skip_throughput = false;
  bool skip_resume = false;
  bool skip_rss = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc)
        throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--binary")
      binary = next();
    else if (a == "--dir")
      dir = next();
    else if (a == "--prompts")
      prompts = std::stoull(next());
    else if (a == "--rounds")
      rounds = std::stoi(next());
    else if (a == "--concurrency")
      concurrency = next();
    else if (a == "--resume-samples")
      resume_samples = std::stoull(next());
    else if (a == "--rss-lines")
      rss_lines = std::stoull(next());
    else if (a == "--rss-mark")
      rss_mark = std::stoull(next());
    else if (a == "--skip-throughput")
      skip_throughput = true;
    else if (a == "--skip-resume")
      skip_resume = true;
    else if (a == "--skip-rss")
      skip_rss = true;
    else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  std::string work = dir + "/rollout_bench." + std::to_string(getpid());
  std::string mk = "mkdir -p " + work;
  if (std::system(mk.c_str()) != 0)
    return 1;
  std::printf("rollout_bench: %s, zero model latency (`sail-tinker emulate` in its own "
              "process), max 8 tokens, concurrency %s prompts, window asap\n\n",
              binary.c_str(), concurrency.c_str());

  if (!skip_throughput) {
    auto in = work + "/throughput.jsonl";
    write_input(in, prompts, 1);
    auto out = work + "/throughput.out";
    std::vector<double> on;
    std::vector<double> off;
    std::vector<double> on_cpu;
    std::vector<double> off_cpu;
    for (int r = 0; r < rounds; ++r) {
      for (bool journal : {false, true}) {
        remove_outputs(out);
        emulator_child emu{binary};
        auto args = job_args(in, out, concurrency, emu);
        if (!journal)
          args.push_back("--no-journal");
        auto res = run(binary, args, {api_key});
        check(res, journal ? "journal on" : "journal off");
        (journal ? on : off).push_back(res.throughput);
        auto per_cpu = static_cast<double>(prompts) / res.cpu;
        (journal ? on_cpu : off_cpu).push_back(per_cpu);
        std::printf("  round %d journal %-3s %8.0f samples/s  %8.0f samples per CPU-s  "
                    "(wall %.2f s, CPU %.2f s)\n",
                    r + 1, journal ? "on" : "off", res.throughput, per_cpu, res.wall, res.cpu);
        std::fflush(stdout);
      }
    }
    auto m_on = median(on);
    auto m_off = median(off);
    auto c_on = median(on_cpu);
    auto c_off = median(off_cpu);
    std::printf("\n1. throughput, %llu prompts x 1 sample, median of %d rounds each\n",
                static_cast<unsigned long long>(prompts), rounds);
    std::printf("   journal off %8.0f samples/s  %8.0f samples per CPU-s of the job\n",
                m_off, c_off);
    std::printf("   journal on  %8.0f samples/s  %8.0f samples per CPU-s\n", m_on, c_on);
    std::printf("   cost of the journal: %.1f %% wall, %.1f %% CPU (target <= 5 %%)\n\n",
                m_off > 0 ? (m_off - m_on) / m_off * 100.0 : 0.0,
                c_off > 0 ? (c_off - c_on) / c_off * 100.0 : 0.0);
    std::fflush(stdout);
  }

  if (!skip_resume) {
    auto in = work + "/resume.jsonl";
    auto group = 4;
    auto lines = resume_samples / group;
    write_input(in, lines, group);
    auto out = work + "/resume.out";
    remove_outputs(out);
    std::optional<emulator_child> emu;
    emu.emplace(binary);
    auto full = run(binary, job_args(in, out, concurrency, *emu), {api_key});
    check(full, "full run");
    auto again = run(binary, job_args(in, out, concurrency, *emu), {api_key});
    check(again, "resume with nothing left");
    remove_outputs(out);
    emu.emplace(binary);
    auto half = std::to_string(resume_samples / 2);
    auto killed = run(binary, job_args(in, out, concurrency, *emu),
                      {api_key, "SAIL_TINKER_FAILPOINT=sample_completed:" + half});
    auto resumed = run(binary, job_args(in, out, concurrency, *emu), {api_key});
    check(resumed, "resume after the kill");
    std::smatch m;
    std::string resume_line;
    if (std::regex_search(resumed.out, m, std::regex{R"(resume: [^\n]*)"}))
      resume_line = m[0];
    std::printf("2. resume, %llu prompts x %d = %llu samples\n",
                static_cast<unsigned long long>(lines), group,
                static_cast<unsigned long long>(resume_samples));
    std::printf("   full run                       %7.2f s  (%.0f samples/s)\n", full.wall,
                full.throughput);
    std::printf("   resume, nothing left to do     %7.2f s\n", again.wall);
    std::printf("   killed at sample %s           %7.2f s  (signal %d)\n", half.c_str(),
                killed.wall, killed.term_signal);
    std::printf("   resume after the kill          %7.2f s\n     %s\n\n", resumed.wall,
                resume_line.c_str());
    std::fflush(stdout);
  }

  if (!skip_rss) {
    auto in = work + "/rss.jsonl";
    write_input(in, rss_lines, 1);
    auto out = work + "/rss.out";
    remove_outputs(out);
    emulator_child emu{binary};
    auto res = run(binary, job_args(in, out, concurrency, emu), {api_key}, rss_mark);
    check(res, "RSS run");
    std::printf("3. memory, %llu-line input, 1 sample each (%.0f samples/s, %.1f s)\n",
                static_cast<unsigned long long>(rss_lines), res.throughput, res.wall);
    std::printf("   RSS after %llu prompts   %7.1f MiB\n",
                static_cast<unsigned long long>(res.mark_prompts),
                static_cast<double>(res.rss_mark_kb) / 1024.0);
    std::printf("   RSS at the end            %7.1f MiB (peak %.1f MiB, the validation "
                "pass included)\n",
                res.rss_end, res.peak);
  }
  std::string rm = "rm -rf " + work;
  static_cast<void>(std::system(rm.c_str()));
  return 0;
}
