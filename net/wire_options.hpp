// The switchable part of the Sail wire format: every detail Sail has not
// published (docs/wire-contract.md, A1-A3 and D1-D4) as a configuration
// choice whose default is this project's guess. The [wire] group of
// caf-application.ini / `--wire.key=value` / the Python runtime options bind
// to these fields; `sail-tinker doctor` checks them against an endpoint.
//
// The encoder and decoder of net/sail_wire_assumed.* read the chosen
// variant; there is one codec, not one per variant.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>

namespace sail {

struct wire_options {
  /// A1, where the stop condition goes: "stop" (ids as a list, strings as
  /// the seed normalises them), "stop_token_ids" (ids in `stop_token_ids`,
  /// strings still in `stop`), or "none" (never sent: samples run to
  /// max_output_tokens).
  std::string stop_field = "stop";
  /// A2, how logprobs are requested: "include" (`include: [include_value]`),
  /// "field" (`logprobs: true`), or "none" (not requested).
  std::string logprobs = "include";
  /// A2, the include value.
  std::string include_value = "message.output_text.logprobs";
  /// D1-D4, where the response carries token ids, logprobs and the stop
  /// reason: "output_text" (the first `output[].content[]` part with type
  /// output_text) or "top_level" (members of the response object itself).
  std::string layout = "output_text";
  /// A3, the metadata keys of the LoRA sources.
  std::string lora_key = "lora";
  std::string signed_url_key = "tinker_lora_signed_url";
  std::string adapter_config_key = "adapter_config";
  std::string lora_name_key = "tinker_lora_name";

  /// The choices of each switch, for --help, validation and the doctor.
  static const std::vector<std::string>& stop_field_choices();
  static const std::vector<std::string>& logprobs_choices();
  static const std::vector<std::string>& layout_choices();

  /// The four LoRA metadata keys, in body order.
  std::vector<std::string> lora_keys() const;

  /// invalid_argument naming the key as caf-application.ini spells it
  /// (`prefix` + "stop-field", "logprobs", "include-value", "layout",
  /// "lora-key", "signed-url-key", "adapter-config-key", "lora-name-key"):
  /// a value outside its choices; an empty include value; a metadata key
  /// that is empty, not printable ASCII, used twice, or one the completer
  /// sets for another purpose (completion_window, completion_webhook,
  /// webhook_token).
  caf::error validate(const std::string& prefix = "wire.") const;

  /// The settings that differ from the defaults, as a [wire] group ready to
  /// paste into caf-application.ini ("[wire]\n" alone when none differs).
  std::string to_ini() const;

  /// The same as `--wire.key=value` arguments.
  std::vector<std::string> to_args() const;

  friend bool operator==(const wire_options&, const wire_options&) = default;
};

/// The defaults of every switch (the guesses of docs/wire-contract.md).
const wire_options& default_wire();

/// "a | b | c" of `choices`.
std::string join_choices(const std::vector<std::string>& choices,
                         std::string_view separator = " | ");

} // namespace sail
