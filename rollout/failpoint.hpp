// Failpoints: a documented way for tests to kill a process at a precise point
// without sleeps. The environment variable SAIL_TINKER_FAILPOINT, read once
// (at the first hit() of the process), holds "NAME:K" entries separated by
// commas; the K-th time the code passes failpoint NAME, fires(NAME) returns
// true and the caller does what the point simulates (e.g. writes half a line)
// and calls kill_now(), which raises SIGKILL: the process dies exactly as it
// would under `kill -9`, with no destructor, flush or atexit handler run.
//
// Points of `sail-tinker rollout` (docs/operations.md, "Failpoints"):
//   run_started       the run row is committed, no request sent yet
//   sample_accepted   a create was accepted (the journal heard its response id)
//   sample_completed  a sample's result arrived (before it is journaled)
//   output_line       half of an output line is written (a torn line)
//   journal_commit    inside an SQLite commit, after the samples file was synced
//
// Points of a durable run (actors/durable_completer.hpp):
//   sample_journaled  a create's body is committed, the create not yet sent
//   sample_accepted   a create was accepted, its response id not yet committed
//   journal_commit    inside an SQLite commit
//
// Unset or empty: every check is one relaxed atomic load.
#pragma once

#include <string_view>

namespace sail::rollout::failpoint {

/// True on the K-th pass of `name` when SAIL_TINKER_FAILPOINT names it.
bool fires(std::string_view name);

/// raise(SIGKILL); never returns.
[[noreturn]] void kill_now();

/// fires(name) ? kill_now() : nothing.
inline void hit(std::string_view name) {
  if (fires(name))
    kill_now();
}

} // namespace sail::rollout::failpoint
