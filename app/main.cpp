// sail-tinker: one executable, six subcommands (sample, resolve, emulate,
// serve, rollout, doctor, report). See docs/operations.md.
#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "sail_tinker/app/cli.hpp"
#include "sail_tinker/app/commands.hpp"
#include "sail_tinker/messages/fwd.hpp"
#include "sail_tinker/messages/redact.hpp"

namespace {

constexpr const char* top_usage =
  "usage: sail-tinker <command> [flags] [--group.key=value ...]\n"
  "\n"
  "commands:\n"
  "  sample     one sample from Sail; prints one JSON object\n"
  "  resolve    a Tinker checkpoint's signed archive URL\n"
  "  emulate    run the Sail + Tinker emulator\n"
  "  serve      a completer service node with Prometheus /metrics\n"
  "  rollout    the rollout run: prompts file in, samples file out, journal and\n"
  "             resume (--input); or synthetic load; against Sail, service\n"
  "             nodes or an embedded emulator (--emulator)\n"
  "  report     what a rollout journal's run cost: samples, tokens, cost,\n"
  "             latency and failures per step, version and window\n"
  "\n"
  "  doctor     check the unpublished wire details ([wire]) against Sail\n"
  "\n"
  "  --version  print the version\n"
  "  --help     print this help\n"
  "\n"
  "Run `sail-tinker <command> --help` for the flags of a command.\n";

} // namespace

int main(int argc, char** argv) {
  using namespace sail::app;
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fputs(top_usage, stderr);
    return exit_usage;
  }
  std::string_view cmd = args.front();
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (cmd == "--version" || cmd == "version") {
    std::cout << "sail-tinker " << version << " (" << sail::protocol_version << ")\n";
    return exit_ok;
  }
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::cout << top_usage;
    return exit_ok;
  }
  if (cmd == "sample")
    return cmd_sample(rest);
  if (cmd == "resolve")
    return cmd_resolve(rest);
  if (cmd == "emulate")
    return cmd_emulate(rest);
  if (cmd == "serve")
    return cmd_serve(rest);
  if (cmd == "rollout")
    return cmd_rollout(rest);
  if (cmd == "doctor")
    return cmd_doctor(rest);
  if (cmd == "report")
    return cmd_report(rest);
  std::fprintf(stderr, "error: invalid_argument: unknown command \"%s\" [field=command]\n",
               sail::redact_secrets(cmd).c_str());
  std::fputs(top_usage, stderr);
  return exit_usage;
}
