// The accuracy lab's ground truth: what the lab did to each request, and the one cause code
// (DESIGN.md) that each of those things must be named by. This table is the single source of truth
// for "behaviour -> expected cause"; nothing else in tests/accuracy/ spells a cause code.
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "why502/correlate.h"

namespace why502::accuracy {

// What really happened to a request.
enum class Truth {
  ok,            // the upstream answered 200
  slow_ok,       // answered after a delay shorter than proxy_read_timeout: 200
  reset,         // upstream read the request, SO_LINGER 0 + close: RST on an established connection
  close_early,   // upstream read the request and closed: FIN before any byte
  slow_timeout,  // upstream silent past proxy_read_timeout: 504 "timed out ... reading response header"
  never_started, // nothing ever listened on the upstream's port
  crash,         // the upstream raised SIGSEGV while holding this request (or nothing listened since)
  exit,          // the upstream exit(3)ed while holding this request (or nothing listened since)
  oom,           // the upstream was OOM-killed in its memory cgroup (ditto)
  stop,          // the upstream got SIGTERM from the lab (operator stop); nothing listened since
  sigkill,       // the upstream got SIGKILL from the lab; nothing listened since
};

struct TruthSpec {
  Truth truth;
  std::string_view name;
  // The cause code why502 must name; empty: no verdict (a 2xx).
  std::string_view cause;
  int status; // what nginx answers the client
};

// Cause codes are the contract's constants (why502/correlate.h).
// Read timeout: DESIGN.md has no code of its own for it; rules.cpp (log_only_rules,
// timed_out_reading) names `no_kernel_fault` ("accepted the connection but was silent until
// nginx's timeout"), so that is what the lab expects today.
namespace codes = ::why502::cause;
inline constexpr TruthSpec kTruths[] = {
    {Truth::ok, "ok", "", 200},
    {Truth::slow_ok, "slow_ok", "", 200},
    {Truth::reset, "reset", codes::kConnectionReset, 502},
    {Truth::close_early, "close_early", codes::kClosedEarly, 502},
    {Truth::slow_timeout, "slow_timeout", codes::kNoKernelFault, 504},
    {Truth::never_started, "never_started", codes::kNoListener, 502},
    {Truth::crash, "crash_sigsegv", codes::kKilledBySignal, 502},
    {Truth::exit, "exit", codes::kExited, 502},
    {Truth::oom, "oom_kill", codes::kOomKilled, 502},
    {Truth::stop, "stop_sigterm", codes::kKilledBySignal, 502},
    {Truth::sigkill, "sigkill", codes::kKilledBySignal, 502},
};

inline const TruthSpec &spec(Truth t) {
  for (const auto &s : kTruths)
    if (s.truth == t)
      return s;
  return kTruths[0]; // unreachable: every Truth has a row
}

// Scheduled upstream events. Each maps to the truth of the requests it fails.
enum class EventKind {
  stop,    // SIGTERM, down for a while, restarted on the same address under a new pid
  sigkill, // SIGKILL, ditto
  restart, // SIGTERM and restarted at once (a deploy): only racing requests can fail
  crash,   // a request /crash/<id> makes it raise SIGSEGV
  exit,    // a request /exit_mid_request/<id> makes it exit(3)
  oom,     // a request /alloc/<id> makes it allocate until its memory cgroup OOM-kills it
};

inline std::string_view event_name(EventKind k) {
  switch (k) {
  case EventKind::stop: return "stop";
  case EventKind::sigkill: return "sigkill";
  case EventKind::restart: return "restart";
  case EventKind::crash: return "crash";
  case EventKind::exit: return "exit";
  case EventKind::oom: return "oom";
  }
  return "?";
}

inline Truth event_truth(EventKind k) {
  switch (k) {
  case EventKind::stop:
  case EventKind::restart: return Truth::stop;
  case EventKind::sigkill: return Truth::sigkill;
  case EventKind::crash: return Truth::crash;
  case EventKind::exit: return Truth::exit;
  case EventKind::oom: return Truth::oom;
  }
  return Truth::ok;
}

// Events the lab triggers with a request that the upstream is holding when it dies.
inline bool event_has_trigger(EventKind k) {
  return k == EventKind::crash || k == EventKind::exit || k == EventKind::oom;
}

// The first path segment that makes lab::AppServer behave as `t` (see lab::behaviour_name).
inline std::string_view wire_behaviour(Truth t) {
  switch (t) {
  case Truth::reset: return "reset";
  case Truth::close_early: return "close_early";
  case Truth::slow_ok:
  case Truth::slow_timeout: return "slow";
  case Truth::crash: return "crash";
  case Truth::exit: return "exit_mid_request";
  case Truth::oom: return "alloc";
  default: return "ok";
  }
}

// One scheduled event as it happened, in CLOCK_REALTIME seconds: `event` when the lab sent the
// signal (or the trigger request), `dead` when it had reaped the process (its sockets are closed by
// then), `up` when the restarted server listened again.
struct EventTimes {
  EventKind kind;
  double event = 0, dead = 0, up = 0;
  int pid = 0; // the process that died: a verdict for this event must name it
};

// A request's label: its truth, or raced when a scheduled event overlapped it in a way the lab
// cannot decide (it was in flight when the upstream died or came back).
struct Label {
  Truth truth;
  bool raced = false;
  std::optional<size_t> event; // for an event's truth: its index in the upstream's events
};

// Clock slack for comparing the lab's timestamps taken on different threads (CLOCK_REALTIME read
// right before and after each step; 5 ms covers scheduling delays between the read and the act).
inline constexpr double kClockSlack = 0.005;

// Labels a request to one upstream from what the lab knows: what the request asked for
// (`planned`), whether it was an event's trigger (the event's index), the interval [sent, done] in
// which it was in flight, and the events on that upstream.
//  - a trigger: the event's truth (the upstream died holding it);
//  - no event overlaps the request: its planned behaviour;
//  - the request lies wholly inside [dead, up] of one event (nothing listened during all of it):
//    that event's truth;
//  - otherwise (it straddles the moment of death or restart): raced.
inline Label label_request(Truth planned, std::optional<size_t> trigger_event, double sent, double done,
                           const std::vector<EventTimes> &events) {
  if (trigger_event && *trigger_event < events.size())
    return {event_truth(events[*trigger_event].kind), false, trigger_event};
  for (size_t i = 0; i < events.size(); ++i) {
    const auto &e = events[i];
    if (done < e.event - kClockSlack || sent > e.up + kClockSlack)
      continue; // no overlap
    if (sent >= e.dead + kClockSlack && done <= e.up - kClockSlack)
      return {event_truth(e.kind), false, i};
    return {planned, true};
  }
  return {planned};
}

} // namespace why502::accuracy
