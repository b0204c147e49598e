#include "sail_tinker/rollout/keys.hpp"

#include <array>
#include <random>
#include <stdexcept>

#include <openssl/evp.h>

#include "sail_tinker/messages/error.hpp"

namespace sail::rollout {

namespace {

std::string to_hex(const unsigned char* data, size_t len) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (size_t i = 0; i < len; ++i) {
    out.push_back(hex[data[i] >> 4]);
    out.push_back(hex[data[i] & 0x0f]);
  }
  return out;
}

std::string derive(std::string_view prefix, std::string_view run_id,
                   std::string_view prompt_id, std::string_view part) {
  sha256 h;
  h.update("sail-tinker/rollout/v1|");
  h.update(std::to_string(run_id.size()));
  h.update(":");
  h.update(run_id);
  h.update("|");
  h.update(std::to_string(prompt_id.size()));
  h.update(":");
  h.update(prompt_id);
  h.update("|");
  h.update(part);
  return std::string{prefix} + h.finish();
}

} // namespace

sha256::sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr
      || EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("OpenSSL: cannot initialise SHA-256");
}

sha256::~sha256() {
  EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
}

void sha256::update(std::string_view data) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data.data(), data.size());
}

std::string sha256::finish() {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int len = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), digest.data(), &len);
  return to_hex(digest.data(), len);
}

std::string sha256_hex(std::string_view data) {
  sha256 h;
  h.update(data);
  return h.finish();
}

std::string sample_key(std::string_view run_id, std::string_view prompt_id, uint32_t member) {
  return derive("st1-", run_id, prompt_id, std::to_string(member));
}

std::string group_key(std::string_view run_id, std::string_view prompt_id) {
  return derive("sg1-", run_id, prompt_id, "group");
}

std::string new_run_id() {
  std::random_device rd;
  std::array<unsigned char, 16> bytes{};
  for (size_t i = 0; i < bytes.size(); i += 4) {
    auto x = rd();
    for (size_t j = 0; j < 4; ++j)
      bytes[i + j] = static_cast<unsigned char>(x >> (8 * j));
  }
  return "run-" + to_hex(bytes.data(), bytes.size());
}

caf::error check_run_id(std::string_view run_id) {
  if (run_id.empty() || run_id.size() > 128)
    return invalid_argument("run-id", "--run-id: must be 1..128 characters");
  for (char c : run_id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok)
      return invalid_argument("run-id", "--run-id: only letters, digits and . _ : - allowed");
  }
  return caf::none;
}

} // namespace sail::rollout
