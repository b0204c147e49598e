// Flags that configure the Sail + Tinker emulator: used by `emulate` (plain
// names) and by `rollout` for its embedded emulator (prefixed "emu-").
#pragma once

#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "sail_tinker/app/cli.hpp"
#include "sail_tinker/emulator/emulator.hpp"

namespace sail::app {

/// Fault and latency flags, each name prefixed with `prefix`.
std::vector<flag_spec> emulator_fault_latency_flags(const std::string& prefix);

/// Applies those flags to `opts` (invalid_argument naming the flag).
caf::error apply_emulator_flags(const parsed_args& args, const std::string& prefix,
                                emulator::options& opts);

/// "log_uniform:MIN_MS:MAX_MS" or "log_normal:MEDIAN_MS:SIGMA:MIN_MS:MAX_MS"
/// (invalid_argument naming `flag`).
caf::expected<emulator::latency_spread> parse_latency_spread(const std::string& flag,
                                                             std::string_view spec);

} // namespace sail::app
