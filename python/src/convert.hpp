// Python values -> the library's typed values. Type mistakes raise
// TypeError; values the contract refuses raise the typed invalid_argument
// (InvalidArgumentError, a ValueError). GIL held throughout.
#pragma once

#include <string>

#include <caf/timespan.hpp>
#include <pybind11/pybind11.h>

#include "host.hpp"
#include "sail_tinker/actors/cluster.hpp"
#include "sail_tinker/actors/runtime.hpp"
#include "sail_tinker/messages/types.hpp"

namespace sail::py {

namespace pyb = pybind11;

/// Seconds (int or float, finite, >= 0; > 0 unless `allow_zero`) as a timespan.
caf::timespan to_timespan(pyb::handle seconds, const std::string& field, bool allow_zero = false);

/// A sequence of token ids (ints or objects with __index__, not bool).
model_input to_prompt(pyb::handle tokens);

/// None, an int, a str, a list of ints or a list of strs.
stop_condition to_stop(pyb::handle stop);

/// The completer configuration from the package's normalized dict.
completer_config to_config(const pyb::dict& d);

/// runtime_options::from_env(), then base_url / api_key / tinker_* and the
/// `options` dict (see docs/python.md). `key` receives what makes two
/// runtimes the same.
runtime_options to_runtime_options(const pyb::dict& target, std::string& key);

/// Cluster options (nodes, security, timeouts) around `cfg`, and the system
/// settings (TLS files, heartbeats) of the trainer's actor system.
cluster_options to_cluster_options(const pyb::dict& target, completer_config cfg,
                                   system_settings& ss);

/// Resolver options from (base_url, api_key, options) and the environment.
resolver_options to_resolver_options(const pyb::dict& target, http_client_options& http);

/// completer_stats as a dict.
pyb::dict to_dict(const completer_stats& s);

/// The key path in to_dict(completer_stats) of every described field (a
/// tuple of keys; usage's through its first row, index 0).
pyb::list stat_paths();

/// The keys of a completer's own counters in to_dict(completer_stats) (not
/// the pool's, which every completer of a pool shares).
pyb::list own_stat_keys();

/// node_status as a dict.
pyb::dict to_dict(const node_status& s);

} // namespace sail::py
