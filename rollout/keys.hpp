// Deterministic identities of a rollout's samples: the Idempotency-Key of
// member i of prompt p in run r, and the group id (prompt_cache_key) shared by
// a prompt's members. Being pure functions of (run id, prompt id, member), the
// same run re-derives the same keys after a crash, so Sail replays a sample it
// has already accepted instead of running inference again (Sail keeps a key
// for 24 h, docs/wire-contract.md).
//
// Derivation (docs/operations.md, "Keys"):
//   digest = SHA-256("sail-tinker/rollout/v1" "|" len(run) ":" run
//                    "|" len(prompt) ":" prompt "|" part)
//   part   = the member index in decimal for a sample, "group" for the group
//   key    = "st1-" + hex(digest)      (68 printable ASCII characters)
//   group  = "sg1-" + hex(digest)
// Lengths are byte counts in decimal, so no two (run, prompt, part) triples
// share an input; any prompt id (up to 128 characters, any UTF-8, even NUL)
// gives a key within Sail's 255-character, printable-ASCII limit.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <caf/error.hpp>

namespace sail::rollout {

/// The Idempotency-Key of member `member` of prompt `prompt_id` in run `run_id`.
std::string sample_key(std::string_view run_id, std::string_view prompt_id, uint32_t member);

/// The group id (and prompt_cache_key) of prompt `prompt_id` in run `run_id`.
std::string group_key(std::string_view run_id, std::string_view prompt_id);

/// A fresh run id: "run-" + 32 hex digits from the system's random device.
std::string new_run_id();

/// Checks a user-supplied run id: 1..128 characters of [A-Za-z0-9._:-]
/// (invalid_argument naming `run-id`).
caf::error check_run_id(std::string_view run_id);

/// Lower-case hex SHA-256 of `data`.
std::string sha256_hex(std::string_view data);

/// Incremental SHA-256 (the input fingerprint is computed while streaming).
class sha256 {
public:
  sha256();
  ~sha256();
  sha256(const sha256&) = delete;
  sha256& operator=(const sha256&) = delete;

  void update(std::string_view data);
  /// Lower-case hex digest; the object is spent afterwards.
  std::string finish();

private:
  void* ctx_;
};

} // namespace sail::rollout
