// why502-floor: loads bench/floor/floor.bpf.c (empty programs on why502's hooks), prints one
// {"type":"start"} line when attached, and holds them until SIGINT/SIGTERM. bench/run.sh's `floor`
// configuration.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>

#include <unistd.h>

#include "floor.skel.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct SkeletonDeleter {
  void operator()(floor_bpf *s) const { floor_bpf__destroy(s); }
};

} // namespace

int main() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::unique_ptr<floor_bpf, SkeletonDeleter> skel(floor_bpf__open_and_load());
  if (!skel) {
    std::fprintf(stderr, "why502-floor: cannot load the floor programs: %s\n", std::strerror(errno));
    return 1;
  }
  if (int err = floor_bpf__attach(skel.get()); err) {
    std::fprintf(stderr, "why502-floor: cannot attach: %s\n", std::strerror(-err));
    return 1;
  }
  std::printf("{\"type\":\"start\",\"tracer\":\"floor\"}\n");
  std::fflush(stdout);
  while (!g_stop)
    pause();
  return 0;
}
