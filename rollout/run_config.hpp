// The configuration fingerprint of a run: the settings that shape a request
// body (and so must not change under the same Idempotency-Keys: Sail answers
// a key reused with another body with 400), as a canonical JSON object, and a
// readable difference between two of them (what a refused resume names).
#pragma once

#include <cstdint>
#include <string>

#include "sail_tinker/messages/types.hpp"

namespace sail::rollout {

/// Canonical JSON object (sorted keys) of the settings of `c` that shape a
/// request body, plus the group size. The signed URL is a secret: only its
/// SHA-256 is kept.
std::string canonical_config(const completer_config& c, uint32_t group_size);

/// "name (journal X, now Y), ..." of the settings that differ between two
/// canonical configurations (a signed URL is shown as "(a signed URL)");
/// the first differing name (sorted) goes to `first` when given.
std::string config_difference(const std::string& journal, const std::string& now,
                              std::string* first = nullptr);

} // namespace sail::rollout
