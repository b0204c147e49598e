// libFuzzer target for the rollout's input (rollout/prompts_file.hpp): the
// prompts file a user hands to `sail-tinker rollout --input`, read by
// rollout/prompts_file.* -- parse_prompt_line for every line, and the
// validation pass validate_prompts through a prompts_reader on a file holding
// the input (a memfd, as `--input -` spools standard input to an unlinked
// file). Then what the rollout does with an accepted line: the sample_request
// it builds (the rollout run's open(), rollout/file_run.cpp) validated and encoded like a completer
// does, and the output line written by samples_writer read back by
// repair_samples_file as a resume does.
//
// Input: the first byte picks the limits (max group size, JSON depth, line
// length) and the default n; the rest is the file.
//
// Invariants beyond "no crash, no UB, no leak":
//   - every bad line is invalid_argument whose message is
//     "input:LINE: FIELD: ..." with the line's number and whose context names
//     FIELD;
//   - an accepted line follows the contract: id of 1..128 code points,
//     1..2,000,000 token ids in 0..2,147,483,647, 1 <= n <= max group size,
//     max_tokens >= 1, a valid stop condition (never ids and strings mixed),
//     meta (when present) the exact bytes of a JSON value equal to the line's
//     "meta" member;
//   - validate_prompts accepts the file exactly when every line parses and
//     the ids are unique, reports the first failure (a bad line, or the
//     second line of a duplicate id) by its line number, and on success
//     counts the physical lines, prompts and samples (n or the default) and
//     fingerprints every byte (SHA-256), leaving the reader rewound;
//   - the sample_request of an accepted line passes validate() and encodes
//     (a line accepted before the run must not fail in the run);
//   - the output line of an accepted prompt is one line, parses back with
//     its id and meta, and repair_samples_file reports exactly the written
//     ids (and cuts a torn last line), as a resume after a crash does.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "fuzz_util.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/messages/redact.hpp"
#include "sail_tinker/messages/validation.hpp"
#include "sail_tinker/net/sail_codec.hpp"
#include "sail_tinker/rollout/keys.hpp"
#include "sail_tinker/rollout/prompts_file.hpp"
#include "sail_tinker/rollout/samples_file.hpp"

namespace {

using namespace sail;
using sail::fuzz::contains;
using sail::fuzz::require;
namespace json = boost::json;

/// A memfd holding `data`, positioned at the start (-1 on failure).
int memfd_with(std::string_view data, const char* name) {
  int fd = ::memfd_create(name, MFD_CLOEXEC);
  if (fd < 0)
    return -1;
  for (size_t off = 0; off < data.size();) {
    auto n = ::write(fd, data.data() + off, data.size() - off);
    if (n <= 0) {
      ::close(fd);
      return -1;
    }
    off += static_cast<size_t>(n);
  }
  ::lseek(fd, 0, SEEK_SET);
  return fd;
}

size_t code_points(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s)
    n += (c & 0xC0) != 0x80;
  return n;
}

bool blank(std::string_view s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
      return false;
  return true;
}

/// An error of the prompts file: invalid_argument "input:LINE: FIELD: ...".
void check_line_error(const caf::error& err, uint64_t line) {
  fuzz::require_kind(err, errc::invalid_argument, "bad input line refused untyped");
  auto* info = info_of(err);
  if (std::getenv("SAIL_FUZZ_VERBOSE") != nullptr)
    std::fprintf(stderr, "line %llu: field [%s] message [%s]\n",
                 static_cast<unsigned long long>(line), info->field.c_str(),
                 info->message.c_str());
  auto prefix = "input:" + std::to_string(line) + ": ";
  require(info->message.rfind(prefix, 0) == 0, "input error does not name its line");
  // The field follows (redacted like the message when it looks like a
  // secret: a key of the line can be anything).
  require(info->message.compare(prefix.size(), info->field.size() + 2, info->field + ": ") == 0
            || contains(info->message, "[REDACTED]"),
          "input error does not name its field");
  require(info->field == redact_secrets(info->field), "input error shows a secret in its field");
}

/// The contract's rules for an accepted line.
void check_prompt(const rollout::prompt_line& p, std::string_view text, uint64_t line,
                  const rollout::prompt_limits& limits) {
  require(p.line == line, "parsed line carries another line number");
  auto chars = code_points(p.id);
  require(chars >= 1 && chars <= 128, "accepted id outside 1..128 characters");
  require(!p.prompt.empty() && p.prompt.size() <= max_prompt_tokens,
          "accepted prompt length outside 1..2000000");
  for (auto t : p.prompt)
    require(t >= 0 && t <= max_token_id, "accepted token id out of range");
  if (p.n)
    require(*p.n >= 1 && *p.n <= limits.max_group_size, "accepted n outside 1..max group size");
  if (p.max_tokens)
    require(*p.max_tokens >= 1, "accepted max_tokens < 1");
  require(p.stop.token_ids.empty() || p.stop.strings.empty(), "accepted stop mixes ids and strings");
  require(!validate(p.stop), "accepted stop does not validate");
  // meta: the exact bytes of the member's value.
  json::parse_options popts;
  popts.max_depth = limits.max_depth;
  json::error_code ec;
  auto whole = json::parse(text, ec, {}, popts);
  require(!ec && whole.is_object(), "accepted line is not a JSON object");
  auto* meta = whole.get_object().if_contains("meta");
  require((meta != nullptr) == p.meta.has_value(), "meta present in one and not the other");
  if (meta != nullptr) {
    auto again = json::parse(*p.meta, ec, {}, popts);
    require(!ec, "meta bytes are not a JSON value");
    require(again == *meta, "meta bytes differ from the line's meta");
  }
}

completer_config valid_config() {
  completer_config cfg;
  cfg.model = "Qwen/Qwen3-8B";
  cfg.max_tokens = 16;
  return cfg;
}

/// What the rollout run's open() (rollout/file_run.cpp) sends for member 0, validated and encoded as a
/// completer does.
void check_request(const rollout::prompt_line& p) {
  auto gid = rollout::group_key("run-fuzz", p.id);
  sample_request req;
  req.prompt = model_input{p.prompt};
  req.stop = p.stop;
  req.max_tokens = p.max_tokens;
  req.group_id = gid;
  req.prompt_cache_key = gid;
  req.key = rollout::sample_key("run-fuzz", p.id, 0);
  require(!validate(req), "the request of an accepted line does not validate");
  auto encoded = encode_create(valid_config(), req, req.key);
  require(static_cast<bool>(encoded), "the request of an accepted line does not encode");
}

/// The output lines of the accepted prompts, written by samples_writer, then
/// read back by repair_samples_file (a resume), once with a torn last line.
void check_output(const std::vector<rollout::prompt_line>& accepted) {
  if (accepted.empty())
    return;
  int fd = ::memfd_create("samples", MFD_CLOEXEC);
  if (fd < 0)
    return;
  auto path = "/proc/self/fd/" + std::to_string(fd);
  std::vector<std::string> lines;
  {
    auto writer = rollout::samples_writer::open(path);
    require(static_cast<bool>(writer), "samples_writer cannot open a memfd");
    for (auto& p : accepted) {
      std::vector<std::string> samples;
      auto n = std::min<uint32_t>(p.n.value_or(1), 2);
      for (uint32_t i = 0; i < n; ++i) {
        if (i == 0) {
          tokens_with_logprobs res;
          res.tokens.assign(p.prompt.begin(), p.prompt.begin() + std::min<size_t>(
                                                                   p.prompt.size(), 4));
          res.maybe_logprobs = std::vector<double>(res.tokens.size(), -0.25);
          res.stop_reason = "stop";
          samples.push_back(rollout::format_result(res));
        } else {
          samples.push_back(rollout::format_error(invalid_argument("prompt", p.id)));
        }
      }
      auto line = rollout::format_line(p.id, samples, p.meta);
      require(line.find('\n') == std::string::npos, "an output line holds a line break");
      // As deep as the input allows (what the resume's repair reads).
      json::error_code ec;
      json::parse_options popts;
      popts.max_depth = rollout::prompt_limits{}.max_depth;
      auto v = json::parse(line, ec, {}, popts);
      require(!ec && v.is_object(), "an output line is not a JSON object");
      auto& obj = v.get_object();
      require(obj.contains("id") && obj.at("id").is_string()
                && std::string_view{obj.at("id").get_string()} == p.id,
              "an output line loses its id");
      require(obj.contains("meta") == p.meta.has_value(), "an output line loses its meta");
      require(!writer.value()->append(line), "samples_writer cannot append");
      lines.push_back(std::move(line));
    }
    require(!writer.value()->flush(), "samples_writer cannot flush");
  }
  // A torn last line, as the "output_line" failpoint leaves it.
  auto torn = lines.back().substr(0, lines.back().size() / 2);
  ::lseek(fd, 0, SEEK_END);
  if (!torn.empty())
    require(::write(fd, torn.data(), torn.size()) == static_cast<ssize_t>(torn.size()),
            "cannot write the torn line");
  std::vector<std::string> ids;
  auto res = rollout::repair_samples_file(path, 0, [&](std::string_view id) -> caf::error {
    ids.emplace_back(id);
    return caf::none;
  });
  require(static_cast<bool>(res), "repair refuses the rollout's own output");
  require(res->lines == accepted.size() && ids.size() == accepted.size(),
          "repair reports another number of lines");
  for (size_t i = 0; i < ids.size(); ++i)
    require(ids[i] == accepted[i].id, "repair reports another id");
  require(res->torn_bytes == torn.size(), "repair cuts another torn length");
  ::close(fd);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  auto conf = data[0];
  rollout::prompt_limits limits;
  static constexpr uint32_t group_sizes[] = {4096, 1, 8, 100};
  static constexpr size_t depths[] = {64, 1, 2, 8};
  static constexpr size_t line_bytes[] = {64u * 1024 * 1024, 16, 256, 4096};
  static constexpr uint32_t default_ns[] = {1, 2, 7, 4096};
  limits.max_group_size = group_sizes[conf & 3];
  limits.max_depth = depths[(conf >> 2) & 3];
  limits.max_line_bytes = line_bytes[(conf >> 4) & 3];
  auto default_n = default_ns[(conf >> 6) & 3];
  auto file = fuzz::as_text(data + 1, size - 1);

  // Every line on its own, as the reader splits them (getline; a trailing
  // CR is not part of the line; blank lines are skipped).
  uint64_t physical = 0;
  uint64_t first_bad = 0;       // line of the first bad line (0: none)
  uint64_t first_dup = 0;       // line of the first duplicate before it (0: none)
  uint64_t prompts = 0;
  uint64_t samples = 0;
  std::set<std::string> ids;
  std::vector<rollout::prompt_line> accepted;
  for (auto rest = file; !rest.empty();) {
    auto text = fuzz::take_line(rest);
    ++physical;
    while (!text.empty() && text.back() == '\r')
      text.remove_suffix(1);
    if (blank(text))
      continue;
    auto parsed = rollout::parse_prompt_line(text, physical, limits);
    if (!parsed) {
      check_line_error(parsed.error(), physical);
      if (first_bad == 0)
        first_bad = physical;
      continue;
    }
    check_prompt(*parsed, text, physical, limits);
    check_request(*parsed);
    if (first_bad != 0 || first_dup != 0)
      continue;
    if (!ids.insert(parsed->id).second) {
      first_dup = physical;
      continue;
    }
    ++prompts;
    samples += parsed->n.value_or(default_n);
    if (accepted.size() < 8)
      accepted.push_back(std::move(*parsed));
  }

  // The validation pass over the same bytes through the reader.
  int fd = memfd_with(file, "prompts");
  if (fd < 0)
    return 0;
  auto reader = rollout::prompts_reader::adopt(fd, "input");
  require(static_cast<bool>(reader), "cannot read a memfd");
  auto& in = **reader;
  auto summary = rollout::validate_prompts(in, limits, default_n);
  auto expected_error = first_dup != 0 ? first_dup : first_bad;
  if (expected_error != 0) {
    require(!summary, "validation accepts a file with a bad line or a duplicate id");
    check_line_error(summary.error(), expected_error);
    if (first_dup != 0)
      require(info_of(summary.error())->field == "id"
                && contains(info_of(summary.error())->message, "duplicate id"),
              "a duplicate id is reported as something else");
    return 0;
  }
  require(static_cast<bool>(summary), "validation refuses a valid file");
  require(summary->lines == physical, "validation counts another number of lines");
  require(summary->prompts == prompts, "validation counts another number of prompts");
  require(summary->samples == samples, "validation counts another number of samples");
  require(summary->sha256 == rollout::sha256_hex(file), "validation fingerprints other bytes");
  // Rewound: the run reads the same prompts again.
  uint64_t again = 0;
  for (;;) {
    std::string_view text;
    uint64_t line = 0;
    auto more = in.next(text, line);
    require(static_cast<bool>(more), "the reader fails after validation");
    if (!*more)
      break;
    ++again;
  }
  require(again == prompts, "the reader is not rewound after validation");
  check_output(accepted);
  return 0;
}
