// `why502 record -o FILE.pftrace`: a native Perfetto trace of nginx's upstream failures.
#include "cli/commands.h"
#include "why502/error.h"

namespace why502::cli {

int run_record(const RecordOptions &) { throw Error("record: the Perfetto exporter is not built yet"); }

} // namespace why502::cli
