// docs/schema/why502-lines.schema.json is the contract of every JSON line. Its kernel-record parts
// are generated from the field lists and must match them; every line type why502 writes validates.
// (The scenario harness validates every line of every live run against it too.)
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "json_schema.h"
#include "pipeline/replay.h"
#include "sinks/report.h"
#include "why502/correlate.h"
#include "why502/kernel_event.h"

using namespace why502;
using why502::test::JsonSchema;
namespace fs = std::filesystem;

namespace {

const std::string kSchemaPath = std::string(WHY502_SOURCE_DIR) + "/docs/schema/why502-lines.schema.json";

std::string joined(const std::vector<std::string> &errors) {
  std::string s;
  for (const auto &e : errors)
    s += "  " + e + "\n";
  return s;
}

// Default-constructed records, each with a time: what the generated schema must accept.
std::vector<KernelEvent> one_of_each_record() {
  std::vector<KernelEvent> out;
  [&]<size_t... I>(std::index_sequence<I...>) {
    (out.push_back(KernelEvent{1, 1796060993000000000, 0, false, std::variant_alternative_t<I, KernelRecord>{}}), ...);
  }(std::make_index_sequence<std::variant_size_v<KernelRecord>>{});
  return out;
}

} // namespace

TEST(JsonSchema, KernelRecordPartsAreTheGeneratedOnes) {
  auto schema = JsonSchema::load(kSchemaPath).root();
  if (const char *update = getenv("WHY502_UPDATE_SCHEMA"); update && *update) {
    schema["$defs"]["event"] = event_schema(false);
    schema["$defs"]["kernel_evidence"] = event_schema(true);
    std::ofstream(kSchemaPath) << schema.dump(2) << "\n";
  }
  EXPECT_EQ(schema["$defs"]["event"], event_schema(false))
      << "a record's field list changed: run the unit tests once with WHY502_UPDATE_SCHEMA=1";
  EXPECT_EQ(schema["$defs"]["kernel_evidence"], event_schema(true));
}

TEST(JsonSchema, VerdictCausesAreTheContractCodes) {
  auto schema = JsonSchema::load(kSchemaPath).root();
  nlohmann::json codes = nlohmann::json::array();
  for (const char *c : cause::kAll)
    codes.push_back(c);
  EXPECT_EQ(schema["$defs"]["verdict"]["properties"]["cause"]["enum"], codes);
}

TEST(JsonSchema, EveryRecordAndEveryEvidenceFactValidates) {
  auto schema = JsonSchema::load(kSchemaPath);
  Verdict v;
  v.cause = cause::kNoListener;
  v.status = 502;
  for (const auto &ev : one_of_each_record()) {
    auto errors = schema.validate(to_json(ev));
    EXPECT_TRUE(errors.empty()) << event_name(ev.record) << ":\n" << joined(errors);
    v.evidence.push_back(ev);
  }
  v.evidence.push_back(fact::ListenQueue{1, "127.0.0.1:8080", 129, 128});
  v.evidence.push_back(fact::ListenOverflows{2, 1, 40});
  v.evidence.push_back(fact::KernelRecordMissing{3, {"refused"}, 10, "127.0.0.1:1"});
  v.evidence.push_back(fact::EarlierAttempt{4, "127.0.0.1:1", "connect() failed", one_of_each_record()[0], false});
  v.evidence.push_back(fact::EarlierAttempt{5, "127.0.0.1:2", "connect() failed", std::nullopt, true});
  auto errors = schema.validate(to_json(v));
  EXPECT_TRUE(errors.empty()) << joined(errors);
  // And the validator is not blind: a wrong cause, a missing field, an unknown field fail.
  auto bad = to_json(v);
  bad["cause"] = "gremlins";
  EXPECT_FALSE(schema.validate(bad).empty());
  bad = to_json(v);
  bad.erase("count");
  EXPECT_FALSE(schema.validate(bad).empty());
  bad = to_json(one_of_each_record()[0]);
  bad["surprise"] = 1;
  EXPECT_FALSE(schema.validate(bad).empty());
  bad = to_json(one_of_each_record()[0]);
  bad["pid"] = "seven";
  EXPECT_FALSE(schema.validate(bad).empty());
}

TEST(JsonSchema, RecordedCapturesAndTheirVerdictsValidate) {
  auto schema = JsonSchema::load(kSchemaPath);
  size_t lines = 0, verdicts = 0;
  for (const auto &dir : fs::directory_iterator(fs::path(WHY502_FIXTURES) / "correlate")) {
    if (!dir.is_directory())
      continue;
    for (const char *name : {"capture.jsonl"}) {
      std::ifstream in(dir.path() / name);
      std::string line;
      for (int n = 1; std::getline(in, line); ++n) {
        auto errors = schema.validate(nlohmann::json::parse(line));
        EXPECT_TRUE(errors.empty()) << dir.path() / name << ":" << n << "\n" << joined(errors);
        ++lines;
      }
    }
  }
  EXPECT_GT(lines, 0u);
  // Every line analyze writes: the verdicts and the summary.
  for (const auto &dir : fs::directory_iterator(fs::path(WHY502_FIXTURES) / "correlate")) {
    const fs::path capture = dir.path() / "capture.jsonl";
    if (!fs::exists(capture))
      continue;
    auto r = pipeline::replay({capture.string(), {(dir.path() / "error.log").string()}, {}, ""});
    for (const auto &v : r.verdicts) {
      auto errors = schema.validate(to_json(v));
      EXPECT_TRUE(errors.empty()) << to_json(v).dump() << "\n" << joined(errors);
      ++verdicts;
    }
    auto errors = schema.validate(sinks::summary_json(r.stats));
    EXPECT_TRUE(errors.empty()) << joined(errors);
  }
  EXPECT_GT(verdicts, 0u);
}
