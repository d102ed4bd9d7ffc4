#include "base/privileges.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "why502/error.h"

namespace why502 {

namespace {

// What a running `watch`/`events`/`record` still does after the Tracer attached, and the capability
// each step needs. Measured on 6.18 (tests/hostile/privileges_test.cpp, the scenario tests with one
// capability left out, and setpriv runs); kernel paths named:
//
// | capability          | needed for                                                                     |
// |---------------------|--------------------------------------------------------------------------------|
// | CAP_PERFMON         | arming the syscall probes on demand: perf_event_open(PERF_TYPE_TRACEPOINT)     |
// |                     | (perf_allow_tracepoint: perf_event_paranoid > -1). Without it the probes never |
// |                     | arm (NetScenario.SyscallProbesArmOnDemand fails).                              |
// | CAP_BPF             | every bpf() call on kernels before 6.5 (Debian 12 runs 6.1) when               |
// |                     | kernel.unprivileged_bpf_disabled is set, as Debian does: the watched-set map   |
// |                     | updates after a reload, linking an armed probe, the loss counters at exit.     |
// |                     | 6.5+ checks it only for loading, so on 6.18 the tests pass without it.         |
// | CAP_SYS_PTRACE      | readlink of /proc/PID/fd/N (the owner of an upstream's listening socket) and   |
// |                     | /proc/PID/root: ptrace_may_access(READ_FSCREDS) fails for other users and for  |
// |                     | root processes, whose permitted set is larger than ours after the drop.        |
// | CAP_DAC_READ_SEARCH | nginx logs owned by www-data:adm 0640 (Debian's default), reopened after       |
// |                     | rotation or found at new paths after a reload; other users' 0500 /proc/PID/fd. |
//
// Dropped: CAP_SYS_ADMIN (tracefs is mounted, and unmounted, inside the Tracer's constructor; the
// sampler's sock_diag socket is created in nginx's netns at start, a socket re-created later for an
// nginx in another netns falls back to /proc/PID/net, and for nginx in our own netns no setns is
// needed), CAP_NET_ADMIN (sock_diag dumps of listeners need none), CAP_DAC_OVERRIDE (output files are
// opened before the drop; reopening them on SIGHUP in a root-owned directory needs no override), and
// all the others, which why502 never used.
constexpr CapMask kRuntime =
    cap_bit(CAP_PERFMON) | cap_bit(CAP_BPF) | cap_bit(CAP_SYS_PTRACE) | cap_bit(CAP_DAC_READ_SEARCH);

int last_cap() {
  std::ifstream f("/proc/sys/kernel/cap_last_cap");
  int n = -1;
  if (f >> n && n >= 0 && n < 64)
    return n;
  return CAP_LAST_CAP; // the kernel headers this was built with
}

std::string errno_line(const char *what) { return std::string(what) + ": " + strerror(errno); }

bool capget_all(__user_cap_data_struct data[2]) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  return syscall(SYS_capget, &hdr, data) == 0;
}

CapMask join(uint32_t lo, uint32_t hi) { return CapMask(lo) | (CapMask(hi) << 32); }

} // namespace

CapMask runtime_capabilities() { return kRuntime; }

void drop_capabilities(CapMask keep) {
  __user_cap_data_struct data[2]{};
  if (!capget_all(data))
    throw Error(errno_line("cannot read this process's capabilities (capget)"));
  const CapMask permitted = join(data[0].permitted, data[1].permitted);
  const bool setpcap = permitted & cap_bit(CAP_SETPCAP);

  // Bounding set and securebits first: both need CAP_SETPCAP, which the capset below removes.
  if (setpcap) {
    for (int cap = 0; cap <= last_cap(); ++cap) {
      if (keep & cap_bit(cap))
        continue;
      int in = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
      if (in == 1 && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
        throw Error(errno_line(("cannot drop " + cap_names(cap_bit(cap)) + " from the bounding set").c_str()));
    }
    // uid 0 executing a program would otherwise get its bounding set back as permitted.
    int bits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
    int want = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED;
    if (bits >= 0 && (bits & want) != want && prctl(PR_SET_SECUREBITS, bits | want, 0, 0, 0) != 0)
      throw Error(errno_line("cannot set SECBIT_NOROOT"));
  }
  // Ambient capabilities survive exec; none are wanted. EINVAL: a kernel without ambient sets.
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
    throw Error(errno_line("cannot clear the ambient capabilities"));

  const CapMask kept = permitted & keep;
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct set[2]{};
  for (int i = 0; i < 2; ++i) {
    set[i].effective = set[i].permitted = uint32_t(kept >> (32 * i));
    set[i].inheritable = 0;
  }
  if (syscall(SYS_capset, &hdr, set) != 0)
    throw Error(errno_line("cannot drop capabilities (capset)"));
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    throw Error(errno_line("cannot set no_new_privs"));
}

void drop_after_attach(bool keep_chown) {
  drop_capabilities(kRuntime | (keep_chown ? cap_bit(CAP_CHOWN) : 0));
  spdlog::debug("attached; capabilities kept: {}; no_new_privs set",
                cap_names(current_capabilities().effective));
}

CapState current_capabilities() {
  CapState st;
  __user_cap_data_struct data[2]{};
  if (capget_all(data)) {
    st.effective = join(data[0].effective, data[1].effective);
    st.permitted = join(data[0].permitted, data[1].permitted);
    st.inheritable = join(data[0].inheritable, data[1].inheritable);
  }
  for (int cap = 0; cap <= last_cap(); ++cap) {
    if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1)
      st.bounding |= cap_bit(cap);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) == 1)
      st.ambient |= cap_bit(cap);
  }
  st.no_new_privs = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1;
  return st;
}

std::string cap_names(CapMask mask) {
  // The capabilities why502 talks about; any other bit is named by number.
  static const std::pair<int, const char *> known[] = {
      {CAP_CHOWN, "CAP_CHOWN"},
      {CAP_DAC_OVERRIDE, "CAP_DAC_OVERRIDE"},
      {CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"},
      {CAP_KILL, "CAP_KILL"},
      {CAP_SETUID, "CAP_SETUID"},
      {CAP_SETPCAP, "CAP_SETPCAP"},
      {CAP_NET_ADMIN, "CAP_NET_ADMIN"},
      {CAP_SYS_PTRACE, "CAP_SYS_PTRACE"},
      {CAP_SYS_ADMIN, "CAP_SYS_ADMIN"},
      {CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE"},
      {CAP_PERFMON, "CAP_PERFMON"},
      {CAP_BPF, "CAP_BPF"},
  };
  std::string out;
  for (int cap = 0; cap < 64; ++cap) {
    if (!(mask & cap_bit(cap)))
      continue;
    std::string name = "cap_" + std::to_string(cap);
    for (const auto &[n, s] : known)
      if (n == cap)
        name = s;
    out += (out.empty() ? "" : " ") + name;
  }
  return out;
}

} // namespace why502
