// A durable completer: the completer front that makes a trainer's samples
// survive a crash of the trainer (rollout/durable_run.hpp). It speaks
// completer_actor and wraps any completer -- a runtime's, a remote node's or
// a cluster's -- in the process that owns the run's journal; service nodes
// stay stateless.
//
// Per call it derives the key, and then: a journaled result is answered with
// no request; a journaled response id is attached (sample_request::
// response_id); a journaled body is re-sent byte-identical; a fresh call is
// encoded here (the codec the completer uses, without a webhook), its body
// journaled and committed, and only then sent with the pre-encoded body
// (sample_request::body), which every completer sends verbatim.
//
//   auto run = sail::rollout::durable_run::open("run.journal", "run-1");
//   auto c = sail::spawn_durable_completer(sys, rt->make_completer(cfg).value(), cfg,
//                                          *run, "step-0");
//
// Groups are their members in order (n calls). A failed member fails the
// group with its error once every member has ended (the other members'
// results are journaled: billed work is kept). cancel takes the caller's key
// or group id. Results carry nothing extra; the step and the adapter version
// label (version, default adapter_identity()) are journaled with each call.
#pragma once

#include <optional>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "sail_tinker/actors/durable_options.hpp"
#include "sail_tinker/messages/interfaces.hpp"
#include "sail_tinker/messages/types.hpp"
#include "sail_tinker/rollout/durable_run.hpp"

namespace sail {

/// Wraps `target` (a completer for `cfg`). invalid_argument without a run or
/// a step, or for a tinker_checkpoint configuration (the owner cannot encode
/// a body whose signed URL the target resolves: resolve it first and pass
/// tinker_lora_signed_url).
caf::expected<completer_actor> spawn_durable_completer(caf::actor_system& sys,
                                                       completer_actor target,
                                                       completer_config cfg,
                                                       durable_options opts);

} // namespace sail
