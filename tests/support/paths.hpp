// Locations of the source and build trees for tests that need data files or
// built programs.
#pragma once

namespace sail::test {

inline constexpr const char* source_dir = SAIL_TINKER_SOURCE_DIR;
inline constexpr const char* binary_dir = SAIL_TINKER_BINARY_DIR;

} // namespace sail::test
