// The emulator's deterministic toy model and small shared helpers.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <numeric>

#include <openssl/evp.h>

#include "sail_tinker/emulator/emulator_impl.hpp"

namespace sail::emulator {

// -- helpers ------------------------------------------------------------------------

uint64_t mix64(uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t hash_bytes(std::string_view data, uint64_t seed) noexcept {
  uint64_t h = 0xcbf29ce484222325ull ^ seed;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return mix64(h);
}

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr)
      != 1)
    return {};
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(hex[digest[i] >> 4]);
    out.push_back(hex[digest[i] & 0x0f]);
  }
  return out;
}

namespace {

std::string format_time(std::chrono::system_clock::time_point t,
                        const char* fmt) {
  auto secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  auto n = std::strftime(buf, sizeof(buf), fmt, &tm);
  return std::string{buf, n};
}

} // namespace

std::string http_date(std::chrono::system_clock::time_point t) {
  return format_time(t, "%a, %d %b %Y %H:%M:%S GMT");
}

std::string iso8601(std::chrono::system_clock::time_point t) {
  return format_time(t, "%Y-%m-%dT%H:%M:%SZ");
}

// -- vocabulary ------------------------------------------------------------------------

const std::vector<std::string>& vocabulary() {
  static const std::vector<std::string> vocab = [] {
    std::vector<std::string> v{
      "\n",     ".",      "END",    " the",   " a",     " cat",   " dog",
      " sat",   " on",    " mat",   ",",      " and",   " ran",   " to",
      " home",  " is",    " was",   " big",   " small", " red",   " blue",
      " tree",  " sky",   " sun",   " moon",  " star",  " river", " stone",
      " bird",  " fish",  " it",    " he",    " she",   " they",  " we",
      " you",   " I",     " saw",   " said",  " went",  " came",  " over",
      " under", " with",  " of",    " in",    " at",    " by",    " for",
      " from",  " up",    " down",  " here",  " there", " now",   " then",
      "!",      "?",      ":",      ";",      " yes",   " no",    " maybe",
      " done"};
    return v;
  }();
  return vocab;
}

// -- sampling ---------------------------------------------------------------------------

namespace {

double unit(uint64_t x) noexcept {
  return static_cast<double>(mix64(x) >> 11) * 0x1.0p-53;
}

} // namespace

sample_result sample(const sample_params& params, uint64_t base_seed) {
  static_assert(vocabulary_size == 64);
  const auto& vocab = vocabulary();
  sample_result out;
  // The random stream depends on the prompt, model, seed and (without a
  // seed) the Idempotency-Key only, so that temperature/top_p change the
  // distribution but not the uniforms drawn. The logits depend on the
  // context alone: greedy sampling ignores the key.
  uint64_t ctx = mix64(base_seed ^ 0x5a11u);
  for (auto t : params.prompt)
    ctx = mix64(ctx ^ static_cast<uint64_t>(t));
  ctx = mix64(ctx ^ hash_bytes(params.model));
  uint64_t stream = mix64(ctx ^ static_cast<uint64_t>(params.seed.value_or(0)));
  if (!params.seed && !params.idempotency_key.empty())
    stream = mix64(stream ^ hash_bytes(params.idempotency_key, 0x1de4u));
  size_t max_stop_len = 0;
  for (auto& s : params.stop_strings)
    max_stop_len = std::max(max_stop_len, s.size());
  const bool greedy = params.temperature <= 1e-6;
  std::vector<double> logits(vocabulary_size);
  std::vector<int> order(vocabulary_size);
  std::vector<double> probs(vocabulary_size);
  for (int64_t step = 0; step < params.max_output_tokens; ++step) {
    for (int i = 0; i < vocabulary_size; ++i)
      logits[i] = unit(ctx ^ (0x9e37ull * static_cast<uint64_t>(i + 1))) * 8.0
                  - 4.0;
    int64_t token = 0;
    double logprob = 0.0;
    if (greedy) {
      token = std::max_element(logits.begin(), logits.end()) - logits.begin();
      logprob = 0.0; // the adjusted distribution is a point mass
    } else {
      double max_z = *std::max_element(logits.begin(), logits.end())
                     / params.temperature;
      double total = 0;
      for (int i = 0; i < vocabulary_size; ++i) {
        probs[i] = std::exp(logits[i] / params.temperature - max_z);
        total += probs[i];
      }
      for (auto& p : probs)
        p /= total;
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int a, int b) { return probs[a] > probs[b]; });
      // Nucleus: the smallest prefix whose mass reaches top_p (at least one).
      size_t keep = 0;
      double mass = 0;
      while (keep < order.size()) {
        mass += probs[order[keep]];
        ++keep;
        if (mass >= params.top_p - 1e-12)
          break;
      }
      double u = unit(stream ^ mix64(static_cast<uint64_t>(step) + 1)) * mass;
      size_t pick = keep - 1;
      double acc = 0;
      for (size_t k = 0; k < keep; ++k) {
        acc += probs[order[k]];
        if (u < acc) {
          pick = k;
          break;
        }
      }
      token = order[pick];
      logprob = std::log(probs[token] / mass);
    }
    out.token_ids.push_back(token);
    out.logprobs.push_back(logprob);
    auto before = out.text.size();
    out.text += vocab[static_cast<size_t>(token)];
    ctx = mix64(ctx ^ (static_cast<uint64_t>(token) + 0x1000));
    if (std::find(params.stop_token_ids.begin(), params.stop_token_ids.end(),
                  token)
        != params.stop_token_ids.end()) {
      out.stop_reason = "stop";
      return out;
    }
    if (max_stop_len > 0) {
      auto from = before >= max_stop_len ? before - max_stop_len + 1 : 0;
      std::string_view tail{out.text};
      tail.remove_prefix(from);
      for (auto& s : params.stop_strings)
        if (!s.empty() && tail.find(s) != std::string_view::npos) {
          out.stop_reason = "stop";
          return out;
        }
    }
  }
  out.stop_reason = "length";
  return out;
}

} // namespace sail::emulator
