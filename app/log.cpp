#include "sail_tinker/app/log.hpp"

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <mutex>

#include <boost/json/serialize.hpp>
#include <boost/json/object.hpp>

#include "sail_tinker/messages/redact.hpp"

namespace sail::app {

namespace {

std::atomic<int> g_level{static_cast<int>(log_level::info)};
std::atomic<int> g_format{static_cast<int>(log_format::text)};
std::mutex g_mtx;

std::string timestamp() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch())
              .count()
            % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

bool needs_quotes(std::string_view v) {
  if (v.empty())
    return true;
  for (char c : v)
    if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x20)
      return true;
  return false;
}

} // namespace

std::optional<log_level> parse_log_level(std::string_view text) {
  if (text == "debug" || text == "trace")
    return log_level::debug;
  if (text == "info")
    return log_level::info;
  if (text == "warn" || text == "warning")
    return log_level::warn;
  if (text == "error")
    return log_level::error;
  if (text == "off" || text == "quiet" || text == "none")
    return log_level::off;
  return std::nullopt;
}

std::optional<log_format> parse_log_format(std::string_view text) {
  if (text == "text" || text == "human")
    return log_format::text;
  if (text == "json")
    return log_format::json;
  return std::nullopt;
}

const char* to_string(log_level level) noexcept {
  switch (level) {
    case log_level::debug:
      return "debug";
    case log_level::info:
      return "info";
    case log_level::warn:
      return "warn";
    case log_level::error:
      return "error";
    case log_level::off:
      return "off";
  }
  return "unknown";
}

void configure_logging(log_level level, log_format format) {
  g_level = static_cast<int>(level);
  g_format = static_cast<int>(format);
}

log_level current_log_level() noexcept {
  return static_cast<log_level>(g_level.load());
}

void log(log_level level, std::string_view component, std::string_view message,
         const log_fields& fields) {
  if (level == log_level::off || static_cast<int>(level) < g_level.load())
    return;
  std::string line;
  if (static_cast<log_format>(g_format.load()) == log_format::json) {
    boost::json::object obj;
    obj["ts"] = timestamp();
    obj["level"] = to_string(level);
    obj["component"] = std::string{component};
    obj["msg"] = redact_secrets(message);
    for (auto& [k, v] : fields)
      obj[k] = redact_secrets(v);
    line = boost::json::serialize(obj);
  } else {
    line = timestamp();
    line += ' ';
    std::string lvl = to_string(level);
    for (auto& c : lvl)
      c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    lvl.resize(5, ' ');
    line += lvl;
    line += ' ';
    line += component;
    line += ": ";
    line += redact_secrets(message);
    for (auto& [k, v] : fields) {
      line += ' ';
      line += k;
      line += '=';
      auto shown = redact_secrets(v);
      if (needs_quotes(shown))
        line += boost::json::serialize(boost::json::string{shown});
      else
        line += shown;
    }
  }
  line += '\n';
  std::lock_guard<std::mutex> guard{g_mtx};
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

} // namespace sail::app
