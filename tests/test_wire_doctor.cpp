// The switchable wire details ([wire], net/wire_options.hpp) and `sail-tinker
// doctor`, end to end with real processes: `sail-tinker emulate
// --wire-variant NAME` plays each alternative the switches offer; the doctor
// names the failing assumption and recommends the setting that works; with
// that setting a rollout samples correctly against the variant. Also: the
// defaults hold against the default emulator (exit 0), nothing is sent
// without --yes, bad [wire] values exit 2 naming the key, and the codec
// writes and reads every variant.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <boost/json.hpp>

#include "sail_tinker/emulator/emulator.hpp"
#include "sail_tinker/messages/error.hpp"
#include "sail_tinker/net/sail_codec.hpp"
#include "sail_tinker/net/wire_options.hpp"
#include "sail_tinker/net/wire_doctor.hpp"
#include "support/cli_process.hpp"
#include "support/process.hpp"
#include "support/stack_fixture.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using sail::test::clean_env;
using sail::test::emulate_process;
using sail::test::env_map;
using sail::test::process_options;
using sail::test::process_result;

namespace {

std::string field_of(const caf::error& err) {
  auto* info = sail::info_of(err);
  return info != nullptr ? info->field : std::string{};
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

process_result cli(const std::vector<std::string>& args, env_map env = clean_env(),
                   std::string cwd = {}) {
  process_options opts;
  opts.env = std::move(env);
  opts.cwd = std::move(cwd);
  auto res = sail::test::run_process(sail::test::cli_binary(), args, opts, 120s);
  INFO("args[0]: " << (args.empty() ? "" : args[0]));
  INFO("stdout: " << res.out);
  INFO("stderr: " << res.err);
  REQUIRE_FALSE(res.timed_out);
  REQUIRE(res.exited);
  return res;
}

/// An emulator playing `variants`, with latencies scaled down.
std::vector<std::string> emulate_args(const std::vector<std::string>& variants) {
  std::vector<std::string> args{"--latency-queued-ms", "1", "--latency-per-token-us", "100"};
  for (auto& v : variants) {
    args.push_back("--wire-variant");
    args.push_back(v);
  }
  return args;
}

std::vector<std::string> with(std::vector<std::string> args,
                              const std::vector<std::string>& extra) {
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

/// The doctor's JSON report.
boost::json::object doctor_json(const process_result& res) {
  auto doc = boost::json::parse(res.out);
  REQUIRE(doc.is_object());
  return doc.as_object();
}

const boost::json::object& check_of(const boost::json::object& report, const std::string& id) {
  for (auto& c : report.at("checks").as_array())
    if (c.as_object().at("id").as_string() == id)
      return c.as_object();
  FAIL("no check " << id);
  throw std::logic_error{"unreachable"};
}

std::string str(const boost::json::value& v) {
  return std::string{v.as_string().c_str()};
}

// The prompt, model and stop of the rollout checks: with temperature 0 the
// toy model's output is known in advance (emulator::sample).
const std::vector<int64_t> rollout_prompt{4, 5, 6};
const std::string rollout_model = "emulator/toy";

/// A stop token the greedy output meets at its third token (first seen there).
int64_t rollout_stop(const sail::emulator::sample_result& greedy) {
  for (size_t i = 2; i < greedy.token_ids.size(); ++i) {
    bool seen = false;
    for (size_t j = 0; j < i; ++j)
      seen = seen || greedy.token_ids[j] == greedy.token_ids[i];
    if (!seen)
      return greedy.token_ids[i];
  }
  FAIL("the greedy output has no fresh token");
  return -1;
}

/// Runs a rollout run (`rollout --input`) of one prompt with n = 2 and the stop token
/// against `emu`, with `wire_args`; returns the output line.
boost::json::object rollout(const emulate_process& emu,
                            const std::vector<std::string>& wire_args, int64_t stop) {
  sail::test::temp_dir dir{"wire-rollout"};
  auto in = dir.write("in.jsonl", R"({"id":"p-1","prompt":[4,5,6],"n":2,"stop":[)"
                                      + std::to_string(stop) + "]}\n");
  auto out = dir.file("out.jsonl");
  auto args = with({"rollout", "--input", in, "--output", out, "--no-journal", "--model",
                    rollout_model, "--temperature", "0", "--max-tokens", "8", "--window",
                    "priority", "--base-url", emu.url, "--progress", "off"},
                   wire_args);
  auto res = cli(args, emu.sail_env());
  REQUIRE(res.exit_code == 0);
  auto text = sail::test::read_file(out);
  INFO(text);
  auto doc = boost::json::parse(text);
  return doc.as_object();
}

/// Every sample of the rollout line is the greedy output cut at the stop
/// token, with one logprob per token and stop reason "stop".
void require_samples_correct(const boost::json::object& line,
                             const sail::emulator::sample_result& expected) {
  INFO(boost::json::serialize(line));
  auto& samples = line.at("samples").as_array();
  REQUIRE(samples.size() == 2);
  for (auto& s : samples) {
    auto& o = s.as_object();
    REQUIRE(o.contains("tokens"));
    std::vector<int64_t> tokens;
    for (auto& t : o.at("tokens").as_array())
      tokens.push_back(t.as_int64());
    CHECK(tokens == expected.token_ids);
    REQUIRE(o.at("logprobs").is_array());
    CHECK(o.at("logprobs").as_array().size() == tokens.size());
    CHECK(str(o.at("stop_reason")) == "stop");
  }
}

struct variant_case {
  std::string variant;
  std::string assumption;  // the check that fails
  std::string verdict;     // its verdict
  std::string key;         // the [wire] key
  std::string value;       // the recommended value
};

/// The whole story for one emulator variant.
void check_variant(const variant_case& vc) {
  emulate_process emu{emulate_args({vc.variant})};
  auto env = emu.sail_env();
  // The doctor: exit 1, names the assumption, recommends the setting.
  auto text = cli({"doctor", "--yes"}, env);
  INFO(text.out);
  CHECK(text.exit_code == 1);
  CHECK(contains(text.out, vc.assumption + " "));
  CHECK(contains(text.out, "works: wire." + vc.key + " = \"" + vc.value + "\""));
  CHECK(contains(text.out, "[wire]\n" + vc.key + " = \"" + vc.value + "\"\n"));
  auto report = doctor_json(cli({"doctor", "--yes", "--json"}, env));
  CHECK_FALSE(report.at("holds").as_bool());
  auto& check = check_of(report, vc.assumption);
  CHECK(str(check.at("verdict")) == vc.verdict);
  CHECK(str(check.at("working")) == vc.value);
  if (vc.verdict == "refused") {
    CHECK(check.at("status").as_int64() == 400);
    CHECK(contains(str(check.at("body")), "invalid_request_error"));
  }
  // With the recommended setting the doctor is content.
  auto setting = "--wire." + vc.key + "=" + vc.value;
  auto fixed = cli({"doctor", "--yes", setting}, env);
  INFO(fixed.out);
  CHECK(fixed.exit_code == 0);
  // ...and a rollout samples correctly against the variant.
  sail::emulator::sample_params params;
  params.prompt = rollout_prompt;
  params.model = rollout_model;
  params.temperature = 0;
  params.max_output_tokens = 8;
  auto greedy = sail::emulator::sample(params, 42);
  auto stop = rollout_stop(greedy);
  params.stop_token_ids = {stop};
  auto expected = sail::emulator::sample(params, 42);
  REQUIRE(expected.stop_reason == "stop");
  require_samples_correct(rollout(emu, {setting}, stop), expected);
}

} // namespace

// -- the codec under each setting ----------------------------------------------------

TEST_CASE("wire: the encoder writes each stop field and logprobs switch and LoRA key name",
          "[wire]") {
  sail::completer_config cfg;
  cfg.model = "m";
  cfg.max_tokens = 4;
  cfg.lora = "my-lora";
  sail::sample_request req;
  req.prompt = sail::model_input{{1, 2}};
  req.stop = sail::stop_condition::tokens({7});
  auto body = [&](const sail::wire_options& w) {
    auto enc = sail::encode_create(cfg, req, "k-1", true, nullptr, w);
    REQUIRE(enc);
    return enc->body;
  };
  sail::wire_options w;
  auto def = body(w);
  CHECK(contains(def, R"("stop":[7],"include":["message.output_text.logprobs"])"));
  CHECK(contains(def, R"("lora":"my-lora")"));
  CHECK(def == body(sail::default_wire()));
  w.stop_field = "stop_token_ids";
  w.logprobs = "field";
  w.lora_key = "adapter";
  auto alt = body(w);
  CHECK(contains(alt, R"("stop_token_ids":[7],"logprobs":true)"));
  CHECK(contains(alt, R"("adapter":"my-lora")"));
  CHECK_FALSE(contains(alt, "include"));
  req.stop = sail::stop_condition::text("\n");
  CHECK(contains(body(w), R"("stop":"\n")")); // strings stay in `stop`
  w.stop_field = "none";
  w.logprobs = "none";
  auto none = body(w);
  CHECK_FALSE(contains(none, "stop"));
  CHECK_FALSE(contains(none, "logprobs"));
  CHECK_FALSE(contains(none, "include"));
  // A user metadata key equal to a configured LoRA key is refused.
  cfg.metadata["adapter"] = "x";
  sail::wire_options renamed;
  renamed.lora_key = "adapter";
  auto clash = sail::encode_create(cfg, req, "k-1", true, nullptr, renamed);
  REQUIRE_FALSE(clash);
  CHECK(field_of(clash.error()) == "metadata.adapter");
}

TEST_CASE("wire: the decoder reads the top_level layout and validate names the key", "[wire]") {
  const std::string top = R"({"id":"r","status":"completed","output":[{"type":"message",)"
                          R"("content":[{"type":"output_text","text":"ab"}]}],)"
                          R"("token_ids":[5,6],"logprobs":[-0.5,-1.5],"stop_reason":"stop"})";
  CHECK_FALSE(sail::decode_result(top)); // the default layout finds no token_ids
  sail::wire_options w;
  w.layout = "top_level";
  auto out = sail::decode_result(top, w);
  REQUIRE(out);
  CHECK(out->tokens == std::vector<int32_t>{5, 6});
  REQUIRE(out->maybe_logprobs);
  CHECK(out->maybe_logprobs->size() == 2);
  CHECK(out->stop_reason == "stop");
  CHECK_FALSE(sail::wire_options{}.validate());
  auto bad = [](auto change) {
    sail::wire_options x;
    change(x);
    auto err = x.validate("wire.");
    REQUIRE(err);
    return field_of(err);
  };
  CHECK(bad([](auto& x) { x.stop_field = "stops"; }) == "wire.stop-field");
  CHECK(bad([](auto& x) { x.logprobs = "yes"; }) == "wire.logprobs");
  CHECK(bad([](auto& x) { x.layout = "choices"; }) == "wire.layout");
  CHECK(bad([](auto& x) { x.include_value = ""; }) == "wire.include-value");
  CHECK(bad([](auto& x) { x.lora_key = "completion_window"; }) == "wire.lora-key");
  CHECK(bad([](auto& x) { x.lora_name_key = "lora"; }) == "wire.lora-name-key");
  CHECK(bad([](auto& x) { x.signed_url_key = "a b"; }) == "wire.signed-url-key");
}

// -- in process: every variant at once ------------------------------------------------

TEST_CASE("wire: in process the doctor finds all three settings at once and a runtime "
          "samples with them",
          "[wire]") {
  auto emu_opts = sail::test::test_emulator_options();
  emu_opts.wire_variants = {sail::emulator::wire_variant::reject_include,
                            sail::emulator::wire_variant::stop_token_ids,
                            sail::emulator::wire_variant::top_level};
  sail::test::stack_fixture stack{emu_opts};
  sail::doctor_options d;
  d.base_url = stack.emu.base_url();
  d.api_key = stack.emu.config().sail_api_key;
  d.model = rollout_model;
  d.prompt = rollout_prompt;
  d.spend = true;
  auto report = sail::run_doctor(d);
  REQUIRE(report);
  INFO(report->to_text());
  CHECK_FALSE(report->holds);
  // include refused, field brings logprobs; stop ignored, stop_token_ids stops.
  CHECK(report->samples_sent == 4);
  CHECK(stack.emu.snapshot().inference_runs_total == 3);
  auto found = report->working;
  CHECK(found.logprobs == "field");
  CHECK(found.stop_field == "stop_token_ids");
  CHECK(found.layout == "top_level");
  CHECK(found.to_ini()
        == "[wire]\nstop-field = \"stop_token_ids\"\nlogprobs = \"field\"\n"
           "layout = \"top_level\"\n");
  d.wire = found;
  auto again = sail::run_doctor(d);
  REQUIRE(again);
  CHECK(again->holds);
  // A runtime with these settings samples the variant correctly.
  auto opts = sail::test::test_runtime_options(stack.emu);
  opts.wire = found;
  auto rt = sail::runtime::start(stack.sys, opts);
  REQUIRE(rt);
  sail::completer_config cfg;
  cfg.model = rollout_model;
  cfg.max_tokens = 8;
  cfg.temperature = 0;
  auto tc = (*rt)->make_token_completer(cfg);
  REQUIRE(tc);
  sail::emulator::sample_params params;
  params.prompt = rollout_prompt;
  params.model = rollout_model;
  params.temperature = 0;
  params.max_output_tokens = 8;
  auto stop = rollout_stop(sail::emulator::sample(params, stack.emu.config().seed));
  params.stop_token_ids = {stop};
  auto expected = sail::emulator::sample(params, stack.emu.config().seed);
  auto out = tc->sample(sail::model_input{rollout_prompt}, sail::stop_condition::tokens({stop}))
               .get();
  REQUIRE(out);
  CHECK(std::vector<int64_t>(out->tokens.begin(), out->tokens.end()) == expected.token_ids);
  REQUIRE(out->maybe_logprobs);
  CHECK(out->maybe_logprobs->size() == expected.logprobs.size());
  CHECK(out->stop_reason == "stop");
  (*rt)->shutdown();
}

// -- the CLI ---------------------------------------------------------------------------

TEST_CASE("wire: emulate --help lists every variant and doctor --help the exit codes", "[wire]") {
  auto res = cli({"emulate", "--help"});
  CHECK(res.exit_code == 0);
  CHECK(contains(res.out, "--wire-variant reject-include|stop-token-ids|top-level"));
  auto doc = cli({"doctor", "--help"});
  CHECK(doc.exit_code == 0);
  CHECK(contains(doc.out, "usage: sail-tinker doctor"));
  CHECK(contains(doc.out, "3 nothing sent"));
  CHECK(contains(doc.out, "stop-field = stop | stop_token_ids | none"));
  CHECK(contains(doc.out, "layout = output_text | top_level"));
  auto bad = cli({"emulate", "--wire-variant", "nope"});
  CHECK(bad.exit_code == 2);
  CHECK(contains(bad.err, "wire-variant"));
}

TEST_CASE("wire: doctor without --yes states the worst case and sends nothing", "[wire]") {
  emulate_process emu{emulate_args({})};
  auto res = cli({"doctor"}, emu.sail_env());
  INFO(res.out << res.err);
  CHECK(res.exit_code == 3);
  CHECK(contains(res.out, "worst case: 5 samples, 15 prompt tokens + 40 output tokens"));
  CHECK(contains(res.out, "nothing sent"));
  auto with_tinker = cli({"doctor", "--tinker-path", "tinker://run-1/sampler_weights/s1",
                          "--adapter-config", R"({"r":8})"},
                         [&] {
                           auto env = emu.sail_env();
                           env["TINKER_BASE_URL"] = emu.url;
                           env["TINKER_API_KEY"] = "tml-emulator-key";
                           return env;
                         }());
  CHECK(with_tinker.exit_code == 3);
  CHECK(contains(with_tinker.out, "worst case: 6 samples"));
  CHECK(emu.requests_to("POST /v1/responses") == 0);
}

TEST_CASE("wire: doctor holds with the defaults against the default emulator (exit 0)",
          "[wire]") {
  emulate_process emu{emulate_args({})};
  auto env = emu.sail_env();
  env["TINKER_BASE_URL"] = emu.url;
  env["TINKER_API_KEY"] = "tml-emulator-key";
  auto res = cli({"doctor", "--yes", "--tinker-path", "tinker://run-1/sampler_weights/s1",
                  "--adapter-config", R"({"r":8})"},
                 env);
  INFO(res.out << res.err);
  CHECK(res.exit_code == 0);
  for (auto id : {"A1 stop field: held", "A2 logprobs switch: held",
                  "D1-D4 response layout (token ids, logprobs, stop reason): held",
                  "tinker-ttl checkpoint TTL call: held",
                  "tinker-archive checkpoint archive URL: held", "A3 LoRA metadata keys: held"})
    CHECK(contains(res.out, id));
  CHECK(contains(res.out, "the configured [wire] settings hold:\n[wire]\n"));
  // Neither key nor the signed URL's query is printed.
  CHECK_FALSE(contains(res.out, "sk_emulator_key"));
  CHECK_FALSE(contains(res.out, "tml-emulator-key"));
  CHECK_FALSE(contains(res.out, "Signature="));
  CHECK_FALSE(contains(res.err, "Signature="));
  CHECK(emu.requests_to("POST /v1/responses") == 3); // baseline, stop probe, LoRA
}

TEST_CASE("wire: bad wire values exit 2 naming the key (flag and ini file)", "[wire]") {
  auto flag = cli({"doctor", "--wire.stop-field=stops"});
  CHECK(flag.exit_code == 2);
  CHECK(contains(flag.err, "error: invalid_argument:"));
  CHECK(contains(flag.err, "wire.stop-field"));
  CHECK(flag.out.empty());
  auto sample = cli({"sample", "--model", "m", "--max-tokens", "2", "--prompt", "1",
                     "--wire.layout=choices"});
  CHECK(sample.exit_code == 2);
  CHECK(contains(sample.err, "wire.layout"));
  sail::test::temp_dir dir{"wire-ini"};
  dir.write("caf-application.ini", "[wire]\nlogprobs = \"always\"\n");
  auto ini = cli({"doctor"}, clean_env(), dir.path.string());
  CHECK(ini.exit_code == 2);
  CHECK(contains(ini.err, "wire.logprobs"));
  dir.write("caf-application.ini", "[wire]\nstop-feld = \"stop\"\n");
  auto unknown = cli({"doctor"}, clean_env(), dir.path.string());
  CHECK(unknown.exit_code == 2);
  CHECK(contains(unknown.err, "wire.stop-feld"));
  dir.write("caf-application.ini", "[wire]\nlora-key = \"completion_window\"\n");
  auto taken = cli({"rollout", "--groups", "1"}, clean_env(), dir.path.string());
  CHECK(taken.exit_code == 2);
  CHECK(contains(taken.err, "wire.lora-key"));
}

TEST_CASE("wire: variant reject-include: doctor recommends logprobs = field and a rollout works with it",
          "[wire]") {
  check_variant({"reject-include", "A2", "refused", "logprobs", "field"});
}

TEST_CASE("wire: variant stop-token-ids: doctor recommends stop-field = stop_token_ids and a "
          "rollout works with it",
          "[wire]") {
  check_variant({"stop-token-ids", "A1", "ignored", "stop-field", "stop_token_ids"});
}

TEST_CASE("wire: variant top-level: doctor recommends layout = top_level and a rollout works with it",
          "[wire]") {
  check_variant({"top-level", "D1-D4", "elsewhere", "layout", "top_level"});
}
