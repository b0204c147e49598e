// Builds against the installed package: validates a configuration, starts an
// actor system with the sail vocabulary, and round-trips a typed error.
#include <iostream>

#include <caf/actor_system.hpp>

#include <sail_tinker/actors/system_config.hpp>
#include <sail_tinker/messages/error.hpp>
#include <sail_tinker/messages/validation.hpp>

int main() {
  sail::completer_config cfg;
  cfg.model = "moonshotai/Kimi-K2.6";
  cfg.max_tokens = 64;
  if (auto err = sail::validate(cfg)) {
    std::cerr << "unexpected: " << sail::render(err) << '\n';
    return 1;
  }
  cfg.temperature = 3.0;
  auto err = sail::validate(cfg);
  sail::system_config sys_cfg;
  caf::actor_system sys{sys_cfg};
  std::cout << "consumer: " << sys.render(err) << '\n';
  return err == sail::errc::invalid_argument ? 0 : 1;
}
