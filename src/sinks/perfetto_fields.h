// Field numbers of the Perfetto protos the writer emits. They must match
// upstream perfetto/protos/perfetto/trace/**.proto exactly; proto/perfetto_trace.proto
// mirrors the same subset and the unit tests decode our output with protoc.
#pragma once

#include <cstdint>

namespace why502::perfetto::fields {

namespace trace { // Trace
inline constexpr uint32_t kPacket = 1;
}

namespace packet { // TracePacket
inline constexpr uint32_t kClockSnapshot = 6;
inline constexpr uint32_t kTimestamp = 8;
inline constexpr uint32_t kTrustedPacketSequenceId = 10;
inline constexpr uint32_t kTrackEvent = 11;
inline constexpr uint32_t kInternedData = 12;
inline constexpr uint32_t kSequenceFlags = 13;
inline constexpr uint32_t kPreviousPacketDropped = 42;
inline constexpr uint32_t kTimestampClockId = 58;
inline constexpr uint32_t kTracePacketDefaults = 59;
inline constexpr uint32_t kTrackDescriptor = 60;
inline constexpr uint32_t kFirstPacketOnSequence = 87;
inline constexpr uint64_t kSeqIncrementalStateCleared = 1;
inline constexpr uint64_t kSeqNeedsIncrementalState = 2;
} // namespace packet

namespace packet_defaults { // TracePacketDefaults
inline constexpr uint32_t kTimestampClockId = 58;
}

namespace clock_snapshot { // ClockSnapshot, ClockSnapshot.Clock
inline constexpr uint32_t kClocks = 1;
inline constexpr uint32_t kPrimaryTraceClock = 2;
inline constexpr uint32_t kClockId = 1;
inline constexpr uint32_t kClockTimestamp = 2;
} // namespace clock_snapshot

namespace track_descriptor { // TrackDescriptor
inline constexpr uint32_t kUuid = 1;
inline constexpr uint32_t kName = 2;
inline constexpr uint32_t kProcess = 3;
inline constexpr uint32_t kThread = 4;
inline constexpr uint32_t kParentUuid = 5;
inline constexpr uint32_t kCounter = 8;
} // namespace track_descriptor

namespace process_descriptor { // ProcessDescriptor
inline constexpr uint32_t kPid = 1;
inline constexpr uint32_t kCmdline = 2;
inline constexpr uint32_t kProcessName = 6;
} // namespace process_descriptor

namespace thread_descriptor { // ThreadDescriptor
inline constexpr uint32_t kPid = 1;
inline constexpr uint32_t kTid = 2;
inline constexpr uint32_t kThreadName = 5;
} // namespace thread_descriptor

namespace counter_descriptor { // CounterDescriptor
inline constexpr uint32_t kUnit = 3;
inline constexpr uint32_t kUnitName = 6;
inline constexpr uint64_t kUnitTimeNs = 1;
inline constexpr uint64_t kUnitCount = 2;
inline constexpr uint64_t kUnitSizeBytes = 3;
} // namespace counter_descriptor

namespace track_event { // TrackEvent
inline constexpr uint32_t kCategoryIids = 3;
inline constexpr uint32_t kDebugAnnotations = 4;
inline constexpr uint32_t kType = 9;
inline constexpr uint32_t kNameIid = 10;
inline constexpr uint32_t kTrackUuid = 11;
inline constexpr uint32_t kCounterValue = 30;
inline constexpr uint32_t kDoubleCounterValue = 44;
inline constexpr uint32_t kFlowIds = 47;            // fixed64
inline constexpr uint32_t kTerminatingFlowIds = 48; // fixed64
inline constexpr uint64_t kTypeSliceBegin = 1;
inline constexpr uint64_t kTypeSliceEnd = 2;
inline constexpr uint64_t kTypeInstant = 3;
inline constexpr uint64_t kTypeCounter = 4;
} // namespace track_event

namespace debug_annotation { // DebugAnnotation
inline constexpr uint32_t kNameIid = 1;
inline constexpr uint32_t kBoolValue = 2;
inline constexpr uint32_t kUintValue = 3;
inline constexpr uint32_t kIntValue = 4;
inline constexpr uint32_t kDoubleValue = 5;
inline constexpr uint32_t kStringValue = 6;
} // namespace debug_annotation

namespace interned_data { // InternedData; entries are {iid = 1, name = 2}
inline constexpr uint32_t kEventCategories = 1;
inline constexpr uint32_t kEventNames = 2;
inline constexpr uint32_t kDebugAnnotationNames = 3;
inline constexpr uint32_t kEntryIid = 1;
inline constexpr uint32_t kEntryName = 2;
} // namespace interned_data

} // namespace why502::perfetto::fields
