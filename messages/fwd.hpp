// Forward declarations and atoms of sail-tinker. The type-ID block is in
// type_ids.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/fwd.hpp>
#include <caf/atom.hpp>
#include <caf/type_id.hpp>

namespace sail {

struct error_info;
struct voyage;
struct model_input;
struct stop_condition;
struct tokens_with_logprobs;
struct tinker_path;
struct signed_url;
struct resolve_request;
struct completer_config;
struct sample_request;
struct sample_outcome;
struct group_result;
struct http_header;
struct sail_job;
struct completer_stats;
struct webhook_endpoint;

/// Wire version of the message vocabulary; nodes with a different value refuse
/// each other's handshake (middleman.app-identifiers).
inline constexpr const char* protocol_version = "sail-tinker.v5";

} // namespace sail

// Atoms (CAF 0.17: atom_constant, at most 10 characters each; they carry no
// type ID of their own in 0.17.6).
CAF_ADD_ATOM(sail, sail::atom, sample, "sample")
CAF_ADD_ATOM(sail, sail::atom, sample_group, "sampleGrp")
CAF_ADD_ATOM(sail, sail::atom, cancel, "cancel")
CAF_ADD_ATOM(sail, sail::atom, stats, "stats")
CAF_ADD_ATOM(sail, sail::atom, submit, "submit")
CAF_ADD_ATOM(sail, sail::atom, resolve, "resolve")
CAF_ADD_ATOM(sail, sail::atom, obtain, "obtain")
CAF_ADD_ATOM(sail, sail::atom, accepted, "accepted")

// Local-only atoms of the actor runtime (worker <-> supervisor, timers, Asio
// completions, test hooks).
CAF_ADD_ATOM(sail, sail::atom, done, "done")
CAF_ADD_ATOM(sail, sail::atom, failed, "failed")
CAF_ADD_ATOM(sail, sail::atom, pause, "pause")
CAF_ADD_ATOM(sail, sail::atom, resume, "resume")
CAF_ADD_ATOM(sail, sail::atom, retried, "retried")
CAF_ADD_ATOM(sail, sail::atom, http_done, "httpDone")
CAF_ADD_ATOM(sail, sail::atom, step, "step")
CAF_ADD_ATOM(sail, sail::atom, deadline, "deadline")
CAF_ADD_ATOM(sail, sail::atom, respawn, "respawn")
CAF_ADD_ATOM(sail, sail::atom, crash, "crash")
CAF_ADD_ATOM(sail, sail::atom, refresh, "refresh")
// Completion webhooks: a create's response id for the pool (created), a
// delivery for the pool and then its worker (webhook), a refused delivery
// (rejected).
CAF_ADD_ATOM(sail, sail::atom, created, "created")
CAF_ADD_ATOM(sail, sail::atom, webhook, "webhook")
CAF_ADD_ATOM(sail, sail::atom, rejected, "rejected")

// Local-only atoms of the cluster's actors (node proxy <-> balancer, timers).
CAF_ADD_ATOM(sail, sail::atom, node_up, "nodeUp")
CAF_ADD_ATOM(sail, sail::atom, node_lost, "nodeLost")
CAF_ADD_ATOM(sail, sail::atom, reconnect, "reconnect")
CAF_ADD_ATOM(sail, sail::atom, expire, "expire")
