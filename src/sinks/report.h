// Sinks only format; they never decide. Text report per verdict, the summary
// table, and JSON lines.
#pragma once

#include <string>

#include "why502/correlate.h"

namespace why502::sinks {

// The readable report of one verdict: headline, summary, nginx line, evidence.
std::string text_report(const Verdict &v);
// Failures by cause and upstream, for the end of a run.
std::string summary_table(const CorrelatorStats &stats);
nlohmann::json summary_json(const CorrelatorStats &stats);

} // namespace why502::sinks
