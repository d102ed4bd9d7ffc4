// A small, self-contained trace: what `why502 record` produces for one
// OOM-killed upstream, without needing a kernel, nginx or root.
#include "why502/perfetto.h"

namespace why502::perfetto {

WriterStats write_sample_trace(const std::string &path, WriterOptions options) {
  TraceWriter w(path, options);
  constexpr uint64_t kMs = 1'000'000;
  const uint64_t t0 = w.clocks().boottime_ns + kMs;

  w.process_track(1000, "nginx", {"nginx: master process /usr/sbin/nginx"});
  const uint64_t worker = w.process_track(1001, "nginx", {"nginx: worker process"});
  const uint64_t worker_thread = w.thread_track(1001, 1001, "nginx: worker");
  const uint64_t upstream = w.named_track("upstream 127.0.0.1:8080", worker);
  const uint64_t gunicorn = w.process_track(2000, "gunicorn", {"gunicorn", "app:app", "-b", "127.0.0.1:8080"});
  const uint64_t queue = w.counter_track("accept queue 127.0.0.1:8080", "count", gunicorn);

  w.counter(queue, t0, int64_t{0});
  w.slice_begin(worker_thread, t0, "GET /api/orders",
                {{"client", std::string("10.0.0.7")}, {"host", std::string("shop.example")}}, {}, "nginx");
  w.slice_begin(upstream, t0 + 1 * kMs, "upstream connection",
                {{"sock", uint64_t{0xffff888012345678}}, {"local_port", int64_t{51234}}}, {}, "kernel");
  w.counter(queue, t0 + 2 * kMs, int64_t{1});

  // The cause: the kernel OOM-kills the upstream while it holds our connection.
  const uint64_t cause = w.new_flow_id();
  w.instant(gunicorn, t0 + 5 * kMs, "oom:mark_victim",
            {{"pid", int64_t{2000}}, {"comm", std::string("gunicorn")}, {"total_vm_kb", int64_t{2097152}}}, {cause}, {},
            "kernel");
  w.instant(upstream, t0 + 6 * kMs, "tcp_receive_reset", {{"state", std::string("ESTABLISHED")}}, {}, {}, "kernel");
  w.slice_end(upstream, t0 + 6 * kMs);
  w.counter(queue, t0 + 6 * kMs, int64_t{0});

  // The effect: nginx logs the 502; its instant ends the flow from the cause.
  w.instant(worker_thread, t0 + 7 * kMs, "502 upstream_oom_killed",
            {{"cause", std::string("upstream_oom_killed")},
             {"nginx_error", std::string("recv() failed (104: Connection reset by peer) while reading "
                                         "response header from upstream")},
             {"upstream", std::string("127.0.0.1:8080")},
             {"confident", true},
             {"gap_ms", 2.0}},
            {}, {cause}, "verdict");
  w.slice_end(worker_thread, t0 + 7 * kMs);
  w.close();
  return w.stats();
}

} // namespace why502::perfetto
