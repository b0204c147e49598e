// sail-tinker: the command-line entry point (subcommands arrive with the CLI
// issue; for now it prints its version and the registered vocabulary).
#include <iostream>
#include <string_view>

#include "sail_tinker/messages/fwd.hpp"

int main(int argc, char** argv) {
  if (argc > 1 && (std::string_view{argv[1]} == "--version"
                   || std::string_view{argv[1]} == "version")) {
    std::cout << "sail-tinker 0.1.0 (" << sail::protocol_version << ")\n";
    return 0;
  }
  std::cerr << "usage: sail-tinker --version\n";
  return 2;
}
