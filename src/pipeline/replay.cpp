// Offline replay of a capture and nginx logs through the correlator.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <new>
#include <sys/stat.h>
#include <unistd.h>
#include <variant>

#include <nlohmann/json.hpp>

#include "base/output_file.h"
#include "pipeline/replay.h"
#include "why502/correlate.h"
#include "why502/error.h"
#include "why502/host.h"
#include "why502/nginx.h"

namespace why502::pipeline {

namespace {

struct Input {
  int64_t wall_ns;
  int order; // samples before kernel records before log lines at the same instant
  std::variant<KernelEvent, HostSample, nginx::ErrorLogLine, nginx::AccessLogLine> item;
};

// Reads one input file line by line, within fixed memory: only regular files (a capture named
// /dev/zero or a FIFO would never end), lines over kMaxReplayLine skipped without being stored (counted).
// A read error throws: a half-read input must never look like a quiet period.
class LineFile {
public:
  LineFile(const std::string &path, const char *what) : path_(path), what_(what), buf_(kChunk) {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
    fd_ = base::UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd_)
      fail(std::strerror(errno));
    struct stat st {};
    if (fstat(fd_.get(), &st) != 0)
      fail(std::strerror(errno));
    if (!S_ISREG(st.st_mode))
      fail(S_ISDIR(st.st_mode) ? "a directory, not a regular file" : "not a regular file");
  }

  // The next line (without '\n') in `line`; false at the end.
  bool next(std::string &line, uint64_t &long_lines) {
    line.clear();
    bool overflow = false;
    for (;;) {
      if (pos_ == len_) {
        ssize_t r = ::read(fd_.get(), buf_.data(), buf_.size());
        if (r < 0) {
          if (errno == EINTR || errno == EAGAIN)
            continue; // a regular file does not block; EAGAIN is not expected, retrying is safe
          fail(std::string("read error: ") + std::strerror(errno));
        }
        if (r == 0) { // the end: a last line without '\n' still counts
          if (overflow)
            ++long_lines;
          return !overflow && !line.empty();
        }
        pos_ = 0;
        len_ = static_cast<size_t>(r);
      }
      const char *p = buf_.data() + pos_;
      const char *nl = static_cast<const char *>(std::memchr(p, '\n', len_ - pos_));
      size_t take = nl ? static_cast<size_t>(nl - p) : len_ - pos_;
      if (!overflow && line.size() + take > kMaxReplayLine) {
        overflow = true;
        line.clear();
        line.shrink_to_fit();
      }
      if (!overflow)
        line.append(p, take);
      pos_ += take;
      if (nl) {
        ++pos_;
        if (!overflow)
          return true;
        ++long_lines;
        overflow = false;
      }
    }
  }

  [[noreturn]] void fail(const std::string &why) const {
    throw Error(std::string("cannot read ") + what_ + " " + path_ + ": " + why);
  }

private:
  static constexpr size_t kChunk = 64 * 1024;
  std::string path_;
  const char *what_;
  base::UniqueFd fd_;
  std::vector<char> buf_;
  size_t pos_ = 0, len_ = 0;
};

// Records held for sorting at most (~800 bytes each: 1.2 GB measured for 1.5M host samples): past
// it analyze stops with an error, never a partial answer.
constexpr size_t kMaxInputs = 2'000'000;

} // namespace

namespace {

// One capture line: a record, or counted in bad_capture_lines. Never throws for bad data: a
// well-formed JSON object of the wrong shape ({"type":1}, a string where a number belongs) is
// as much "not a record" as a line that is not JSON.
void read_capture_line(const std::string &line, size_t n, const std::string &path, std::vector<Input> &inputs,
                       ReplayResult &result) {
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    if (n == 1)
      throw Error(path + " is not a why502 capture (line 1 is not JSON)");
    ++result.bad_capture_lines;
    return;
  }
  try {
    auto type_it = j.find("type");
    if (type_it == j.end() || !type_it->is_string()) {
      ++result.bad_capture_lines;
      return;
    }
    const std::string &type = type_it->get_ref<const std::string &>();
    if (type == "event") {
      if (auto ev = event_from_json(j))
        inputs.push_back({ev->wall_ns, 1, *ev});
      else
        ++result.bad_capture_lines;
    } else if (type == "host") {
      if (auto s = host_sample_from_json(j))
        inputs.push_back({s->wall_ns, 0, *s});
      else
        ++result.bad_capture_lines;
    }
    // Other types (start, stats, summary, verdict lines of a `watch --json` file) carry no input.
  } catch (const nlohmann::json::exception &) {
    ++result.bad_capture_lines;
  }
}

void check_room(const std::vector<Input> &inputs) {
  if (inputs.size() >= kMaxInputs)
    throw Error("more than " + std::to_string(kMaxInputs) +
                " records in the capture and logs: analyze a shorter period");
}

} // namespace

namespace {

ReplayResult replay_inputs(const ReplayInput &opts) {
  ReplayResult result;
  std::vector<Input> inputs;
  {
    LineFile f(opts.capture, "capture");
    std::string line;
    size_t n = 0;
    while (f.next(line, result.long_lines)) {
      ++n;
      if (line.empty())
        continue;
      check_room(inputs);
      read_capture_line(line, n, opts.capture, inputs, result);
    }
  }
  nginx::ParseStats error_stats, access_stats;
  nginx::LogZone zone;
  if (opts.log_utc_offset_s)
    zone.set_operator_offset(*opts.log_utc_offset_s);
  for (const auto &in : inputs)
    if (const auto *h = std::get_if<HostSample>(&in.item); h && h->utc_offset_s)
      zone.learn_from_capture(h->wall_ns / 1000000000, *h->utc_offset_s);
  auto parser = nginx::AccessLogParser::combined();
  if (!opts.access_format.empty()) {
    auto compiled = nginx::AccessLogParser::compile(opts.access_format);
    if (!compiled)
      throw Error("bad access log format: " + compiled.error());
    parser = *compiled;
  }
  for (const auto &path : opts.access_logs) {
    LineFile f(path, "access log");
    std::string line;
    while (f.next(line, result.long_lines))
      if (auto l = parser.parse(line, access_stats)) {
        check_room(inputs);
        int64_t when = l->epoch_ns().value_or(0);
        if (l->utc_offset_s)
          zone.learn_from_access_log(when / 1000000000, *l->utc_offset_s);
        inputs.push_back({when, 3, *l});
      }
  }
  // Error lines last: their times carry no zone, and the access log and capture say which it is.
  for (const auto &path : opts.error_logs) {
    LineFile f(path, "error log");
    std::string line;
    while (f.next(line, result.long_lines))
      if (auto l = nginx::parse_error_line(line, error_stats)) {
        check_room(inputs);
        inputs.push_back({zone.to_epoch_ns(*l), 2, *l});
      }
  }
  result.log_zone = zone.source();
  result.log_zone_text = zone.describe();
  std::stable_sort(inputs.begin(), inputs.end(), [](const Input &a, const Input &b) {
    return a.wall_ns != b.wall_ns ? a.wall_ns < b.wall_ns : a.order < b.order;
  });

  CorrelatorOptions copts;
  copts.error_log_available = !opts.error_logs.empty();
  copts.access_log_available = !opts.access_logs.empty();
  Correlator correlator(copts);
  auto keep = [&](std::vector<Verdict> v) {
    for (auto &x : v)
      result.verdicts.push_back(std::move(x));
  };
  // Replay in time order, letting the correlator settle as the live one would.
  for (const auto &in : inputs) {
    if (const auto *k = std::get_if<KernelEvent>(&in.item))
      correlator.add_kernel(*k);
    else if (const auto *s = std::get_if<HostSample>(&in.item))
      correlator.add_host_sample(*s);
    else if (const auto *e = std::get_if<nginx::ErrorLogLine>(&in.item))
      correlator.add_error_line(*e, in.wall_ns);
    else
      correlator.add_access_line(std::get<nginx::AccessLogLine>(in.item), in.wall_ns);
    keep(correlator.advance(in.wall_ns));
  }
  keep(correlator.finish());
  result.stats = correlator.stats();
  result.unparsed_error_lines = error_stats.unparsed;
  result.unparsed_access_lines = access_stats.unparsed;
  return result;
}

} // namespace

ReplayResult replay(const ReplayInput &opts) {
  try {
    return replay_inputs(opts);
  } catch (const std::bad_alloc &) {
    throw Error("out of memory while reading the capture and logs: analyze a shorter period");
  }
}

} // namespace why502::pipeline
