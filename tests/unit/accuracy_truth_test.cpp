// The accuracy lab's labelling (tests/accuracy/truth.h) is pure: which truth a request gets from
// what it asked for and the events on its upstream, and when it is left out as raced.
#include <gtest/gtest.h>

#include <set>

#include "../accuracy/truth.h"

using namespace why502::accuracy;

namespace {

// An event at t=10: signal sent at 10.0, process reaped at 10.1, restarted (listening) at 11.0.
const std::vector<EventTimes> kStop{{EventKind::stop, 10.0, 10.1, 11.0}};

TEST(AccuracyTruth, EveryTruthHasOneRowAndFailuresHaveACause) {
  std::set<std::string_view> names;
  for (const auto &t : kTruths) {
    EXPECT_TRUE(names.insert(t.name).second) << t.name;
    EXPECT_EQ(&spec(t.truth), &t);
    EXPECT_EQ(t.cause.empty(), t.status == 200) << t.name;
  }
}

TEST(AccuracyTruth, RequestsAwayFromEventsKeepTheirBehaviour) {
  // Finished before the stop: a later event is never the cause.
  Label l = label_request(Truth::reset, std::nullopt, 9.90, 9.99, kStop);
  EXPECT_EQ(l.truth, Truth::reset);
  EXPECT_FALSE(l.raced);
  EXPECT_FALSE(l.event);
  l = label_request(Truth::close_early, std::nullopt, 11.1, 11.2, kStop);
  EXPECT_EQ(l.truth, Truth::close_early);
  EXPECT_FALSE(l.raced);
}

TEST(AccuracyTruth, RequestsWhileNothingListensGetTheEventsTruth) {
  std::vector<EventTimes> two{{EventKind::exit, 5.0, 5.1, 6.0}, kStop[0]};
  Label l = label_request(Truth::ok, std::nullopt, 10.2, 10.3, two);
  EXPECT_EQ(l.truth, Truth::stop);
  EXPECT_FALSE(l.raced);
  EXPECT_EQ(l.event, 1u); // the event in force, not an earlier one
  std::vector<EventTimes> kill{{EventKind::sigkill, 10.0, 10.1, 11.0}};
  EXPECT_EQ(label_request(Truth::reset, std::nullopt, 10.5, 10.6, kill).truth, Truth::sigkill);
  std::vector<EventTimes> oom{{EventKind::oom, 10.0, 10.1, 11.0}};
  EXPECT_EQ(label_request(Truth::ok, std::nullopt, 10.5, 10.6, oom).truth, Truth::oom);
}

TEST(AccuracyTruth, RequestsStraddlingDeathOrRestartAreRaced) {
  EXPECT_TRUE(label_request(Truth::ok, std::nullopt, 9.95, 10.05, kStop).raced); // in flight at the signal
  EXPECT_TRUE(label_request(Truth::ok, std::nullopt, 10.05, 10.2, kStop).raced); // sent before it was reaped
  EXPECT_TRUE(label_request(Truth::ok, std::nullopt, 10.9, 11.1, kStop).raced);  // across the restart
  // Within the clock slack of a boundary counts as straddling too.
  EXPECT_TRUE(label_request(Truth::ok, std::nullopt, 10.1 + kClockSlack / 2, 10.3, kStop).raced);
}

TEST(AccuracyTruth, TriggersCarryTheirEventsTruth) {
  Label l = label_request(Truth::crash, size_t{0}, 9.99, 10.05, {{EventKind::crash, 9.99, 10.04, 10.5, 42}});
  EXPECT_EQ(l.truth, Truth::crash);
  EXPECT_FALSE(l.raced);
  EXPECT_EQ(l.event, 0u);
  EXPECT_EQ(event_truth(EventKind::restart), Truth::stop);
  EXPECT_EQ(spec(event_truth(EventKind::exit)).cause, "upstream_exited");
  EXPECT_EQ(spec(event_truth(EventKind::oom)).cause, "upstream_oom_killed");
}

} // namespace
