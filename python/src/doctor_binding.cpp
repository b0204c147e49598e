// sail_tinker._native.doctor: the C++ doctor (net/wire_doctor.hpp) for
// sail_tinker.doctor(); the report comes back as its JSON text, which the
// package turns into a dict. The samples are sent with the GIL released.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "convert.hpp"
#include "delivery.hpp"
#include "sail_tinker/net/wire_doctor.hpp"

namespace sail::py {

namespace {

std::string run(const pyb::dict& target, const std::string& model, const std::string& window,
                const std::vector<int64_t>& prompt, int64_t max_tokens, double timeout,
                const std::string& tinker_path, const std::string& adapter_config,
                int64_t ttl_seconds, bool yes) {
  std::string key;
  auto opts = to_runtime_options(target, key);
  auto base = opts.resolve_sail_base_url();
  if (!base)
    raise_error(base.error());
  doctor_options d;
  d.base_url = std::move(*base);
  d.api_key = opts.sail_api_key;
  d.http = opts.http;
  d.wire = opts.wire;
  d.tinker_base_url = opts.tinker_base_url;
  d.tinker_api_key = opts.tinker_api_key;
  d.model = model;
  d.completion_window = window;
  d.prompt = prompt;
  d.max_tokens = max_tokens;
  d.sample_timeout = to_timespan(pyb::float_(timeout), "timeout");
  d.tinker_path = tinker_path;
  d.adapter_config = adapter_config;
  d.ttl_seconds = ttl_seconds;
  d.spend = yes;
  caf::expected<doctor_report> report{doctor_report{}};
  {
    pyb::gil_scoped_release nogil;
    report = run_doctor(d);
  }
  if (!report)
    raise_error(report.error());
  return report->to_json();
}

} // namespace

void bind_doctor(pyb::module_& m) {
  m.def("doctor", &run, pyb::arg("target"), pyb::arg("model"), pyb::arg("window"),
        pyb::arg("prompt"), pyb::arg("max_tokens"), pyb::arg("timeout"),
        pyb::arg("tinker_path"), pyb::arg("adapter_config"), pyb::arg("ttl_seconds"),
        pyb::arg("yes"),
        "Runs the wire doctor (net/wire_doctor.hpp); returns the report as JSON text.");
}

} // namespace sail::py
