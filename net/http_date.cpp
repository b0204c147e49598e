#include "sail_tinker/net/http_date.hpp"

#include <array>
#include <cstdio>

#include "sail_tinker/net/text.hpp"

namespace sail {

namespace {

using std::chrono::system_clock;
namespace chr = std::chrono;

constexpr std::array<std::string_view, 12> month_names
  = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

constexpr std::array<std::string_view, 7> short_day_names
  = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};

constexpr std::array<std::string_view, 7> long_day_names
  = {"Sunday",   "Monday", "Tuesday", "Wednesday",
     "Thursday", "Friday", "Saturday"};

bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

/// A small cursor over the input; every reader fails without consuming on a
/// mismatch.
struct reader {
  std::string_view in;

  bool done() const noexcept {
    return in.empty();
  }

  bool lit(std::string_view s) noexcept {
    if (in.substr(0, s.size()) != s)
      return false;
    in.remove_prefix(s.size());
    return true;
  }

  bool ch(char c) noexcept {
    if (in.empty() || in.front() != c)
      return false;
    in.remove_prefix(1);
    return true;
  }

  /// Exactly n digits.
  bool digits(size_t n, int& out) noexcept {
    if (in.size() < n)
      return false;
    int v = 0;
    for (size_t i = 0; i < n; ++i) {
      if (!is_digit(in[i]))
        return false;
      v = v * 10 + (in[i] - '0');
    }
    in.remove_prefix(n);
    out = v;
    return true;
  }

  /// One of `names`; returns its index.
  template <size_t N>
  bool one_of(const std::array<std::string_view, N>& names, int& out) noexcept {
    // Longest match first matters only for prefixes; the name sets here have
    // none that collide with what may follow, but check exact tokens anyway.
    for (size_t i = 0; i < N; ++i) {
      if (in.substr(0, names[i].size()) == names[i]) {
        in.remove_prefix(names[i].size());
        out = static_cast<int>(i);
        return true;
      }
    }
    return false;
  }
};

std::optional<system_clock::time_point>
make_time(int year, int month, int day, int hour, int minute, int second) {
  chr::year_month_day ymd{chr::year{year},
                          chr::month{static_cast<unsigned>(month)},
                          chr::day{static_cast<unsigned>(day)}};
  // Leap seconds (60) are accepted by RFC 3339 and read as :59. Years are
  // limited so that nanosecond time points cannot overflow.
  if (year < 1900 || year > 2200 || !ymd.ok() || hour > 23 || minute > 59 || second > 60)
    return std::nullopt;
  if (second == 60)
    second = 59;
  auto days = chr::sys_days{ymd};
  return system_clock::time_point{
    chr::duration_cast<system_clock::duration>(
      days.time_since_epoch() + chr::hours{hour} + chr::minutes{minute}
      + chr::seconds{second})};
}

bool read_hms(reader& r, int& h, int& m, int& s) noexcept {
  return r.digits(2, h) && r.ch(':') && r.digits(2, m) && r.ch(':')
         && r.digits(2, s);
}

// "Sun, 06 Nov 1994 08:49:37 GMT"
std::optional<system_clock::time_point> parse_imf_fixdate(std::string_view in) {
  reader r{in};
  int wd = 0, day = 0, mon = 0, year = 0, h = 0, m = 0, s = 0;
  if (!(r.one_of(short_day_names, wd) && r.lit(", ") && r.digits(2, day)
        && r.ch(' ') && r.one_of(month_names, mon) && r.ch(' ')
        && r.digits(4, year) && r.ch(' ') && read_hms(r, h, m, s)
        && r.lit(" GMT") && r.done()))
    return std::nullopt;
  return make_time(year, mon + 1, day, h, m, s);
}

// "Sunday, 06-Nov-94 08:49:37 GMT"
std::optional<system_clock::time_point> parse_rfc850(std::string_view in) {
  reader r{in};
  int wd = 0, day = 0, mon = 0, yy = 0, h = 0, m = 0, s = 0;
  if (!(r.one_of(long_day_names, wd) && r.lit(", ") && r.digits(2, day)
        && r.ch('-') && r.one_of(month_names, mon) && r.ch('-')
        && r.digits(2, yy) && r.ch(' ') && read_hms(r, h, m, s)
        && r.lit(" GMT") && r.done()))
    return std::nullopt;
  int year = yy < 70 ? 2000 + yy : 1900 + yy;
  return make_time(year, mon + 1, day, h, m, s);
}

// "Sun Nov  6 08:49:37 1994" (day padded with a space, or two digits)
std::optional<system_clock::time_point> parse_asctime(std::string_view in) {
  reader r{in};
  int wd = 0, day = 0, mon = 0, year = 0, h = 0, m = 0, s = 0;
  if (!(r.one_of(short_day_names, wd) && r.ch(' ') && r.one_of(month_names, mon)
        && r.ch(' ')))
    return std::nullopt;
  if (r.ch(' ')) {
    if (!r.digits(1, day))
      return std::nullopt;
  } else if (!r.digits(2, day)) {
    return std::nullopt;
  }
  if (!(r.ch(' ') && read_hms(r, h, m, s) && r.ch(' ') && r.digits(4, year)
        && r.done()))
    return std::nullopt;
  return make_time(year, mon + 1, day, h, m, s);
}

struct civil {
  int year;
  unsigned month, day;
  long hour, minute, second;
  long long nanos;
  unsigned weekday;
};

civil split(system_clock::time_point tp) {
  auto ns = chr::time_point_cast<chr::nanoseconds>(tp);
  auto days = chr::floor<chr::days>(ns);
  chr::year_month_day ymd{days};
  chr::hh_mm_ss<chr::nanoseconds> tod{ns - days};
  chr::weekday wd{days};
  return civil{static_cast<int>(ymd.year()),
               static_cast<unsigned>(ymd.month()),
               static_cast<unsigned>(ymd.day()),
               static_cast<long>(tod.hours().count()),
               static_cast<long>(tod.minutes().count()),
               static_cast<long>(tod.seconds().count()),
               static_cast<long long>(tod.subseconds().count()),
               wd.c_encoding()};
}

} // namespace

std::optional<system_clock::time_point> parse_http_date(std::string_view value) {
  auto in = text::trim_http(value);
  if (in.size() < 24 || in.size() > 40)
    return std::nullopt;
  if (in[3] == ',')
    return parse_imf_fixdate(in);
  if (in[3] == ' ')
    return parse_asctime(in);
  return parse_rfc850(in);
}

std::string format_http_date(system_clock::time_point tp) {
  auto c = split(tp);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s, %02u %s %04d %02ld:%02ld:%02ld GMT",
                short_day_names[c.weekday].data(), c.day,
                month_names[c.month - 1].data(), c.year, c.hour, c.minute,
                c.second);
  return buf;
}

std::optional<system_clock::time_point> parse_iso8601(std::string_view value) {
  reader r{text::trim_http(value)};
  int year = 0, mon = 0, day = 0, h = 0, m = 0, s = 0;
  if (!(r.digits(4, year) && r.ch('-') && r.digits(2, mon) && r.ch('-')
        && r.digits(2, day)))
    return std::nullopt;
  if (!(r.ch('T') || r.ch('t') || r.ch(' ')))
    return std::nullopt;
  if (!read_hms(r, h, m, s))
    return std::nullopt;
  int64_t nanos = 0;
  if (r.ch('.') || r.ch(',')) {
    size_t n = 0;
    while (!r.in.empty() && is_digit(r.in.front())) {
      if (n < 9)
        nanos = nanos * 10 + (r.in.front() - '0');
      ++n;
      r.in.remove_prefix(1);
    }
    if (n == 0)
      return std::nullopt;
    for (; n < 9; ++n)
      nanos *= 10;
  }
  chr::minutes offset{0};
  if (r.ch('Z') || r.ch('z')) {
    // UTC
  } else if (!r.in.empty() && (r.in.front() == '+' || r.in.front() == '-')) {
    bool negative = r.in.front() == '-';
    r.in.remove_prefix(1);
    int oh = 0, om = 0;
    if (!r.digits(2, oh))
      return std::nullopt;
    if (r.ch(':')) {
      if (!r.digits(2, om))
        return std::nullopt;
    } else if (!r.done() && !r.digits(2, om)) {
      return std::nullopt;
    }
    if (oh > 23 || om > 59)
      return std::nullopt;
    offset = chr::hours{oh} + chr::minutes{om};
    if (negative)
      offset = -offset;
  }
  if (!r.done())
    return std::nullopt;
  auto base = make_time(year, mon, day, h, m, s);
  if (!base)
    return std::nullopt;
  // Local time = UTC + offset, so UTC = local - offset.
  return *base - offset
         + chr::duration_cast<system_clock::duration>(chr::nanoseconds{nanos});
}

std::string format_iso8601(system_clock::time_point tp) {
  auto c = split(tp);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02u-%02uT%02ld:%02ld:%02ld", c.year,
                c.month, c.day, c.hour, c.minute, c.second);
  std::string out = buf;
  if (c.nanos != 0) {
    std::snprintf(buf, sizeof(buf), ".%09lld", c.nanos);
    std::string frac = buf;
    while (frac.back() == '0')
      frac.pop_back();
    out += frac;
  }
  out += 'Z';
  return out;
}

} // namespace sail
