// Loads why502.bpf.o through its skeleton: open -> set rodata -> disable what
// this kernel lacks -> load -> attach each program -> read the ring buffer.
#include "why502/tracer.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <map>
#include <set>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "base/proc.h"
#include "base/time.h"
#include "why502.skel.h"
#include "why502/error.h"
#include "why502/events.h"

namespace why502 {

namespace {

constexpr const char *kTracefs = "/sys/kernel/tracing";

struct ProgramSpec {
  std::string program;
  std::string section;       // as in the .bpf.c: "tp_btf/kfree_skb", "tp/syscalls/sys_exit_connect"
  std::string btf_typedef;   // tp_btf: "btf_trace_<name>" must exist in vmlinux BTF
  std::string tracefs_event; // tp/: events/<group>/<name> must exist under tracefs
  bool required = false;
};

// Without it why502 follows no connection at all; every other program only adds evidence.
constexpr const char *kRequiredProgram = "on_inet_sock_set_state";

// The BPF object is the program table: every program it holds, read from its ELF (opened, never
// loaded here), with what its section says this kernel must offer. A program added to the .bpf.c
// is probed, attached and reported without a line here; which causes it serves is the cause
// table's business (src/correlate/causes.cpp).
const std::vector<ProgramSpec> &program_specs() {
  static const std::vector<ProgramSpec> specs = [] {
    std::vector<ProgramSpec> out;
    why502_bpf *skel = why502_bpf__open();
    if (!skel)
      throw Error(std::string("cannot open the BPF object: ") + strerror(errno));
    bpf_program *prog;
    bpf_object__for_each_program(prog, skel->obj) {
      ProgramSpec s;
      s.program = bpf_program__name(prog);
      s.section = bpf_program__section_name(prog);
      if (s.section.rfind("tp_btf/", 0) == 0)
        s.btf_typedef = "btf_trace_" + s.section.substr(7);
      else if (s.section.rfind("tp/", 0) == 0)
        s.tracefs_event = s.section.substr(3);
      s.required = s.program == kRequiredProgram;
      out.push_back(std::move(s));
    }
    why502_bpf__destroy(skel);
    return out;
  }();
  return specs;
}

bool path_exists(const std::string &p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

// libbpf prints verifier logs and probe noise; keep them for --verbose only.
int libbpf_to_spdlog(enum libbpf_print_level level, const char *fmt, va_list args) {
  if (level == LIBBPF_DEBUG && !spdlog::should_log(spdlog::level::trace))
    return 0;
  char buf[2048];
  vsnprintf(buf, sizeof(buf), fmt, args);
  std::string line(buf);
  while (!line.empty() && line.back() == '\n')
    line.pop_back();
  spdlog::debug("libbpf: {}", line);
  return 0;
}

// The mount id of whatever is mounted at `path` (statx, Linux 5.8+); 0 when unknown.
uint64_t mount_id(const char *path) {
  struct statx stx;
  if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &stx) != 0 || !(stx.stx_mask & STATX_MNT_ID))
    return 0;
  return stx.stx_mnt_id;
}

// tracefs at /sys/kernel/tracing for as long as this object lives. When it was missing, this object
// mounts it and unmounts it again on destruction, but only that mount: all tracefs mounts share one
// superblock (same st_dev), so it is recognised by its mount id, and another tracefs mounted there
// meanwhile (by the host or another tool) is left alone. MNT_DETACH: an open file (another tool
// reading it) does not keep why502 from leaving; the kernel frees the mount when that file closes.
class TracefsMount {
public:
  TracefsMount(bool mount_if_missing) {
    if (path_exists(std::string(kTracefs) + "/events"))
      return;
    if (!mount_if_missing) {
      problem_ = "tracefs is not mounted at /sys/kernel/tracing";
      return;
    }
    if (mount("tracefs", kTracefs, "tracefs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
      problem_ = std::string("cannot mount tracefs at /sys/kernel/tracing: ") + strerror(errno);
      return;
    }
    mounted_id_ = mount_id(kTracefs);
    spdlog::debug("mounted tracefs at {} (mount id {}) while attaching", kTracefs, mounted_id_);
    if (!path_exists(std::string(kTracefs) + "/events"))
      problem_ = "tracefs mounted but /sys/kernel/tracing/events is missing";
  }
  ~TracefsMount() {
    if (!mounted_id_)
      return; // not ours (or statx could not name it: then leaving it beats unmounting another's)
    if (mount_id(kTracefs) != mounted_id_) {
      spdlog::warn("tracefs at {} is no longer the mount why502 made; left in place", kTracefs);
      return;
    }
    if (umount2(kTracefs, MNT_DETACH | UMOUNT_NOFOLLOW) != 0)
      spdlog::warn("cannot unmount the tracefs why502 mounted at {}: {}", kTracefs, strerror(errno));
    else
      spdlog::debug("unmounted tracefs at {}", kTracefs);
  }
  TracefsMount(const TracefsMount &) = delete;
  TracefsMount &operator=(const TracefsMount &) = delete;

  bool ok() const { return problem_.empty(); }
  const std::string &problem() const { return problem_; }

private:
  std::string problem_;
  uint64_t mounted_id_ = 0;
};

std::vector<ProgramStatus> probe_with(const TracefsMount &tracefs) {
  std::vector<ProgramStatus> out;
  btf *vmlinux = btf__load_vmlinux_btf();
  for (const auto &spec : program_specs()) {
    ProgramStatus st{spec.program, spec.section, true, "", spec.required};
    if (!spec.btf_typedef.empty()) {
      if (!vmlinux) {
        st.attached = false;
        st.problem = "no kernel BTF at /sys/kernel/btf/vmlinux";
      } else if (btf__find_by_name_kind(vmlinux, spec.btf_typedef.c_str(), BTF_KIND_TYPEDEF) < 0) {
        st.attached = false;
        st.problem = "tracepoint not in this kernel";
      }
    } else if (!tracefs.ok()) {
      st.attached = false;
      st.problem = tracefs.problem();
    } else if (!path_exists(std::string(kTracefs) + "/events/" + spec.tracefs_event)) {
      st.attached = false;
      st.problem = "tracepoint not in this kernel (CONFIG_FTRACE_SYSCALLS?)";
    }
    out.push_back(std::move(st));
  }
  btf__free(vmlinux);
  return out;
}

const ProgramSpec &spec_for(const std::string &program) {
  for (const auto &spec : program_specs())
    if (program == spec.program)
      return spec;
  throw Error("internal: no spec for BPF program " + program);
}

// A classic tracepoint's id, read from tracefs (events/<group>/<name>/id); 0 when unreadable.
uint64_t tracepoint_id(const std::string &event) {
  auto text = base::read_small_file(std::string(kTracefs) + "/events/" + event + "/id", 64);
  return text ? strtoull(text->c_str(), nullptr, 10) : 0;
}

} // namespace

std::optional<std::string> tracefs_missing() {
  if (path_exists(std::string(kTracefs) + "/events"))
    return std::nullopt;
  return base::read_small_file("/proc/filesystems").value_or("").find("\ttracefs\n") != std::string::npos
             ? "not mounted at /sys/kernel/tracing; why502 mounts it while it attaches and unmounts it after"
             : "this kernel has no tracefs (CONFIG_TRACING)";
}

std::vector<ProgramStatus> probe_tracepoints(bool mount_tracefs) {
  TracefsMount tracefs(mount_tracefs);
  return probe_with(tracefs);
}

int64_t current_boot_to_wall_ns() { return base::wall_clock_ns() - base::boot_clock_ns(); }

struct SkeletonDeleter {
  void operator()(why502_bpf *s) const { why502_bpf__destroy(s); }
};
struct RingBufferDeleter {
  void operator()(ring_buffer *rb) const { ring_buffer__free(rb); }
};
struct LinkDeleter {
  void operator()(bpf_link *l) const { bpf_link__destroy(l); }
};

struct Tracer::Impl {
  std::unique_ptr<why502_bpf, SkeletonDeleter> skel;
  std::unique_ptr<ring_buffer, RingBufferDeleter> rb;
  std::map<std::string, std::unique_ptr<bpf_link, LinkDeleter>> links; // by program name

  // Classic (tp/) tracepoint ids, read from tracefs while it was mounted at start, so that arming a
  // syscall probe later needs neither tracefs nor the CAP_SYS_ADMIN to mount it.
  std::map<std::string, uint64_t> tracepoint_ids; // by program name

  bool attach(ProgramStatus &st) {
    bpf_program *prog = bpf_object__find_program_by_name(skel->obj, st.program.c_str());
    bpf_link *link = nullptr;
    if (auto id = tracepoint_ids.find(st.program); id != tracepoint_ids.end()) {
      // What libbpf's attach_tracepoint does, minus its tracefs lookup: one system-wide perf event
      // (pid -1, cpu 0: a BPF program on a tracepoint runs on every CPU) carrying the program.
      perf_event_attr attr{};
      attr.size = sizeof(attr);
      attr.type = PERF_TYPE_TRACEPOINT;
      attr.config = id->second;
      attr.sample_period = 1;
      attr.wakeup_events = 1;
      int pfd = int(syscall(SYS_perf_event_open, &attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC));
      if (pfd >= 0) {
        link = bpf_program__attach_perf_event(prog, pfd); // the link owns pfd from here
        if (!link) {
          int err = errno;
          close(pfd);
          errno = err;
        }
      }
    } else {
      link = bpf_program__attach(prog);
    }
    if (!link) {
      st.attached = false;
      st.problem = std::string("attach failed: ") + strerror(errno);
      return false;
    }
    links[st.program].reset(link);
    st.armed = true;
    return true;
  }
  std::vector<ProgramStatus> programs;
  const std::function<void(const KernelEvent &)> *sink = nullptr;
  int64_t boot_to_wall = 0;
  uint64_t undecodable = 0;
  std::set<uint32_t> watched;

  static int on_record(void *ctx, void *data, size_t size) {
    auto *self = static_cast<Impl *>(ctx);
    auto ev = decode_record({static_cast<const uint8_t *>(data), size});
    if (!ev) {
      ++self->undecodable;
      spdlog::debug("undecodable record: {}", ev.error());
      return 0;
    }
    ev->wall_ns = int64_t(ev->boot_ns) + self->boot_to_wall;
    if (auto *w = std::get_if<WatchStart>(&ev->record))
      self->watched.insert(w->pid);
    if (auto *x = std::get_if<ProcessExit>(&ev->record); x && x->watched)
      self->watched.erase(x->pid);
    if (self->sink)
      (*self->sink)(*ev);
    return 0;
  }
};

void Tracer::require_host_pid_namespace() {
  if (base::in_initial_pid_namespace() == false)
    throw Error("in a PID namespace of its own (a container without hostPID?): the kernel "
                "reports host PIDs, which it could not match to nginx's; run it in the host's PID namespace");
}

Tracer::Tracer(const TracerOptions &opts) : impl_(std::make_unique<Impl>()) {
  libbpf_set_print(libbpf_to_spdlog);
  if (geteuid() != 0)
    throw Error("why502 must run as root (it loads BPF programs; needs CAP_BPF and CAP_PERFMON or CAP_SYS_ADMIN)");
  require_host_pid_namespace();
  if (!path_exists("/sys/kernel/btf/vmlinux"))
    throw Error("this kernel has no BTF (/sys/kernel/btf/vmlinux missing): why502 needs CONFIG_DEBUG_INFO_BTF=y");
  if (opts.comms.size() > WHY502_MAX_COMM_FILTERS)
    throw Error("at most " + std::to_string(WHY502_MAX_COMM_FILTERS) + " --comm names are supported");

  // With --verbose, a verifier log big enough to show why a program was refused.
  LIBBPF_OPTS(bpf_object_open_opts, open_opts);
  static std::vector<char> verifier_log;
  if (spdlog::should_log(spdlog::level::trace)) {
    verifier_log.resize(64 << 20);
    open_opts.kernel_log_buf = verifier_log.data();
    open_opts.kernel_log_size = verifier_log.size();
  }
  impl_->skel.reset(why502_bpf__open_opts(&open_opts));
  if (!impl_->skel)
    throw Error(std::string("cannot open the BPF object: ") + strerror(errno));
  auto *skel = impl_->skel.get();

  // rodata: the comm filter for processes that start after us, the host rate limit.
  for (size_t i = 0; i < opts.comms.size(); ++i) {
    char *dst = const_cast<char *>(skel->rodata->comm_filters[i]);
    strncpy(dst, opts.comms[i].c_str(), WHY502_COMM_LEN - 1);
  }
  skel->rodata->n_comm_filters = opts.comms.size();
  // Only there for its BTF (the ABI layout check): no kernel map for it.
  bpf_map__set_autocreate(skel->maps.abi_types, false);
  skel->rodata->host_records_per_sec = opts.host_records_per_sec;
  auto [hot, overflow] = opts.conn_table_buckets;
  auto bucket_count_ok = [](uint32_t n, uint32_t max) { return n == 0 || (n <= max && (n & (n - 1)) == 0); };
  if (!bucket_count_ok(hot, skel->rodata->conn_hot_buckets) ||
      !bucket_count_ok(overflow, skel->rodata->conn_overflow_buckets))
    throw Error("connection table buckets must be powers of two no larger than the compiled sizes");
  if (hot)
    skel->rodata->conn_hot_buckets = hot;
  if (overflow)
    skel->rodata->conn_overflow_buckets = overflow;

  // Leave out what this kernel lacks, so the rest still loads. tracefs is needed only here, for the
  // classic tracepoints' ids: a mount made for this is undone when the constructor returns or throws.
  TracefsMount tracefs(opts.mount_tracefs);
  impl_->programs = probe_with(tracefs);
  for (auto &st : impl_->programs) {
    bpf_program *prog = bpf_object__find_program_by_name(skel->obj, st.program.c_str());
    if (!prog)
      throw Error("internal: BPF program " + st.program + " missing from the object");
    if (const std::string &event = spec_for(st.program).tracefs_event; !event.empty() && st.attached) {
      if (uint64_t id = tracepoint_id(event))
        impl_->tracepoint_ids[st.program] = id;
      else {
        st.attached = false;
        st.problem = std::string("cannot read the id of tracepoint ") + event + " from tracefs";
      }
    }
    if (!st.attached) {
      if (st.required)
        throw Error("tracepoint sock:inet_sock_set_state is missing on this kernel: why502 cannot follow "
                    "connections (" + st.problem + ")");
      bpf_program__set_autoload(prog, false);
    }
  }

  if (int err = why502_bpf__load(skel); err) {
    if (!verifier_log.empty()) {
      std::string_view log(verifier_log.data(), strnlen(verifier_log.data(), verifier_log.size()));
      spdlog::debug("verifier log (tail):\n{}", log.substr(log.size() > 8192 ? log.size() - 8192 : 0));
    }
    throw Error(std::string("the kernel refused the BPF programs (") + strerror(-err) +
                "); run with --verbose for the verifier log");
  }

  for (auto &st : impl_->programs) {
    if (!st.attached)
      continue;
    st.syscall_probe = st.tracepoint.rfind("tp/syscalls/", 0) == 0;
    if (st.syscall_probe && opts.syscall_probes_on_demand) {
      st.armed = false; // loaded and verified; attached by arm_syscall_probes()
      continue;
    }
    if (!impl_->attach(st) && st.required)
      throw Error("cannot attach to sock:inet_sock_set_state: " + st.problem);
  }

  impl_->rb.reset(ring_buffer__new(bpf_map__fd(skel->maps.events), &Impl::on_record, impl_.get(), nullptr));
  if (!impl_->rb)
    throw Error(std::string("cannot open the BPF ring buffer: ") + strerror(errno));
  impl_->boot_to_wall = current_boot_to_wall_ns();

  for (uint32_t pid : opts.pids)
    watch_pid(pid);
  if (!opts.comms.empty()) {
    for (pid_t pid : base::list_pids()) {
      auto st = base::read_proc_stat(pid);
      if (!st)
        continue;
      for (const auto &c : opts.comms)
        if (st->comm == c.substr(0, WHY502_COMM_LEN - 1))
          watch_pid(uint32_t(pid));
    }
  }
}

Tracer::~Tracer() = default;

bool Tracer::arm_syscall_probes() {
  bool armed_now = false;
  for (auto &st : impl_->programs)
    if (st.syscall_probe && st.attached && !st.armed)
      armed_now |= impl_->attach(st);
  return armed_now;
}

void Tracer::disarm_syscall_probes() {
  for (auto &st : impl_->programs)
    if (st.syscall_probe && st.armed) {
      impl_->links.erase(st.program); // bpf_link__destroy detaches
      st.armed = false;
    }
}

bool Tracer::syscall_probes_armed() const {
  for (const auto &st : impl_->programs)
    if (st.syscall_probe && st.armed)
      return true;
  return false;
}

const std::vector<ProgramStatus> &Tracer::programs() const { return impl_->programs; }

std::vector<std::string> program_names() {
  std::vector<std::string> out;
  for (const auto &spec : program_specs())
    out.push_back(spec.program);
  return out;
}

void Tracer::watch_pid(uint32_t pid) {
  // The process and everything it already forked (a master's workers).
  std::map<uint32_t, std::vector<uint32_t>> children;
  for (pid_t p : base::list_pids())
    if (auto st = base::read_proc_stat(p))
      children[uint32_t(st->ppid)].push_back(uint32_t(p));
  std::vector<uint32_t> todo{pid};
  uint8_t one = 1;
  while (!todo.empty()) {
    uint32_t p = todo.back();
    todo.pop_back();
    if (impl_->watched.insert(p).second &&
        bpf_map__update_elem(impl_->skel->maps.watched, &p, sizeof(p), &one, sizeof(one), BPF_ANY) != 0)
      throw Error("cannot add pid " + std::to_string(p) + " to the watched set: " + strerror(errno));
    for (uint32_t c : children[p])
      todo.push_back(c);
  }
}

std::vector<uint32_t> Tracer::watched_pids() const { return {impl_->watched.begin(), impl_->watched.end()}; }

int Tracer::poll(int timeout_ms, const std::function<void(const KernelEvent &)> &sink) {
  impl_->boot_to_wall = current_boot_to_wall_ns();
  impl_->sink = &sink;
  // Records may be written without waking us (WAKEUP_GAP_NS in the BPF program): after the wait,
  // read whatever the buffer holds, woken or not. With no wait, skip epoll altogether.
  int n = timeout_ms > 0 ? ring_buffer__poll(impl_->rb.get(), timeout_ms) : 0;
  if (n >= 0) {
    int more = ring_buffer__consume(impl_->rb.get());
    n = more < 0 ? more : n + more;
  }
  impl_->sink = nullptr;
  if (n < 0 && n != -EINTR)
    throw Error(std::string("reading the BPF ring buffer failed: ") + strerror(-n));
  return n < 0 ? 0 : n;
}

int Tracer::fd() const { return ring_buffer__epoll_fd(impl_->rb.get()); }

LossCounters Tracer::losses() const {
  LossCounters out;
  int ncpu = libbpf_num_possible_cpus();
  std::vector<uint64_t> values(ncpu > 0 ? ncpu : 1);
  auto sum = [&](uint32_t site) {
    uint64_t total = 0;
    if (bpf_map__lookup_elem(impl_->skel->maps.losses, &site, sizeof(site), values.data(),
                             values.size() * sizeof(uint64_t), 0) == 0)
      for (uint64_t v : values)
        total += v;
    return total;
  };
  out.ringbuf_full = sum(WHY502_LOSS_RINGBUF);
  out.conn_map_full = sum(WHY502_LOSS_CONN_MAP);
  out.watch_map_full = sum(WHY502_LOSS_WATCH_MAP);
  out.host_rate_limited = sum(WHY502_LOSS_RATE_LIMIT);
  out.fd_walks_capped = sum(WHY502_LOSS_FD_WALK);
  out.undecodable = impl_->undecodable;
  // Runs the kernel skipped because the same program was already running on that CPU (a softirq
  // interrupting it): each may have been a record or a transition of a followed connection.
  bpf_program *prog;
  bpf_object__for_each_program(prog, impl_->skel->obj) {
    int fd = bpf_program__fd(prog);
    bpf_prog_info info = {};
    uint32_t len = sizeof(info);
    if (fd >= 0 && bpf_obj_get_info_by_fd(fd, &info, &len) == 0)
      out.runs_missed += info.recursion_misses;
  }
  return out;
}

int64_t Tracer::boot_to_wall_ns() const { return impl_->boot_to_wall; }

} // namespace why502
