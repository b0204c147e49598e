// Validation of configurations and sample inputs. Every rule yields an
// invalid_argument error whose context names the offending field.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "sail_tinker/messages/types.hpp"

namespace sail {

/// What a model supports. Sail publishes this on its pricing page and it
/// changes, so it is configuration (model_table), not code.
struct model_capabilities {
  /// Windows the model accepts; empty: not known here, any window passes
  /// and the server judges.
  std::vector<std::string> windows;
  bool lora_capable = false;

  friend bool operator==(const model_capabilities&, const model_capabilities&) = default;
};

/// model -> capabilities. A model missing from the table may use any window
/// and any LoRA source; the server is the final judge.
class model_table {
public:
  model_table() = default;

  /// The built-in table: only what Sail documents (moonshotai/Kimi-K2.6
  /// serves LoRAs; no window lists, since they change on /pricing).
  static const model_table& builtin();

  /// Parses {"models": {"<model>": {"windows": [...], "lora": bool}}};
  /// "windows" may be omitted (any window), "lora" defaults to false.
  static caf::expected<model_table> from_json(std::string_view text);

  void set(std::string model, model_capabilities caps);

  /// Capabilities of a model, or nullptr for an unknown model.
  const model_capabilities* find(std::string_view model) const;

  const std::map<std::string, model_capabilities, std::less<>>& models() const {
    return models_;
  }

private:
  std::map<std::string, model_capabilities, std::less<>> models_;
};

/// Sail's answer to a LoRA request on the asap window (the live error text,
/// docs/wire-contract.md); the completer refuses such a configuration with it.
inline constexpr std::string_view lora_asap_message
  = "lora requests cannot use completion_window=asap";

/// Metadata keys the completer sets itself; a user key must not collide.
const std::vector<std::string>& reserved_metadata_keys();

/// Checks a completer configuration against SailTokenCompleter's rules and the model table.
caf::error validate(const completer_config& cfg,
                    const model_table& models = model_table::builtin());

/// Checks a prompt: non-empty, at most max_prompt_tokens, ids in 0..max_token_id.
caf::error validate(const model_input& prompt);

/// Checks a stop condition: never ints and strings mixed, ids in range,
/// no empty strings.
caf::error validate(const stop_condition& stop);

/// Checks a sample request (prompt, stop, per-call cap, key).
caf::error validate(const sample_request& req);

/// Converts the contract's adapter_config forms to the stored JSON text: an
/// object is serialized, a string must hold a JSON object.
caf::expected<std::string> normalize_adapter_config(std::string_view json_text);

/// The effective max_output_tokens: min(config, per-call cap).
int64_t effective_max_tokens(const completer_config& cfg,
                             const sample_request& req) noexcept;

} // namespace sail
