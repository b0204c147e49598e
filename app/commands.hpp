// The subcommands of sail-tinker. Each takes the arguments after its name and
// returns the process exit code.
#pragma once

#include <string>
#include <vector>

namespace sail::app {

int cmd_sample(const std::vector<std::string>& args);
int cmd_resolve(const std::vector<std::string>& args);
int cmd_emulate(const std::vector<std::string>& args);
int cmd_serve(const std::vector<std::string>& args);
int cmd_rollout(const std::vector<std::string>& args);
int cmd_doctor(const std::vector<std::string>& args);
int cmd_report(const std::vector<std::string>& args);

} // namespace sail::app
