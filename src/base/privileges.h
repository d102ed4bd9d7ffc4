// Dropping what a long-running why502 no longer needs once its BPF programs are attached.
// Raw capget/capset and prctl (no libcap): the kernel interface is small and stable.
#pragma once

#include <cstdint>
#include <string>

namespace why502 {

// A set of capabilities as the kernel's 64-bit masks (bit n = capability n, <linux/capability.h>).
using CapMask = uint64_t;

constexpr CapMask cap_bit(int cap) { return CapMask(1) << cap; }

// What `watch`, `events` and `record` keep after attaching, and why (see the table in privileges.cpp).
CapMask runtime_capabilities();

// Keeps only `keep` in the effective and permitted sets; clears the inheritable and ambient sets;
// removes every other capability from the bounding set; locks SECBIT_NOROOT (a program this process
// executes does not get root's capabilities back) and sets no_new_privs. Capabilities of `keep` the
// process does not have are not gained. Throws Error when a step the kernel should allow fails.
// A bounding set that cannot be reduced (no CAP_SETPCAP, as under a unit whose CapabilityBoundingSet
// leaves it out) is not an error: no_new_privs already stops exec from gaining beyond `keep`.
void drop_capabilities(CapMask keep);

// drop_capabilities(runtime_capabilities()), logged: what `watch`, `events` and `record` call once the
// Tracer is attached and their output files are open. `demo` and `doctor` do not: the demo starts its
// lab (nginx, upstreams, namespaces, cgroups) throughout, and doctor exits after one check.
// `keep_chown`: with --group, CAP_CHOWN stays too, so the file a SIGHUP reopens (logrotate) can be
// given to that group again.
void drop_after_attach(bool keep_chown = false);

// The calling process's sets as /proc/self/status shows them.
struct CapState {
  CapMask effective = 0, permitted = 0, inheritable = 0, bounding = 0, ambient = 0;
  bool no_new_privs = false;
};
CapState current_capabilities();

// "CAP_BPF CAP_PERFMON" (names for the bits this build knows, "cap_<n>" for others).
std::string cap_names(CapMask mask);

} // namespace why502
