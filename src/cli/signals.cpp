#include <csignal>

#include "cli/commands.h"

namespace why502::cli {

namespace {
volatile std::sig_atomic_t g_stop = 0;
void on_stop(int) { g_stop = 1; }
} // namespace

bool stop_requested() { return g_stop != 0; }

void install_stop_handlers() {
  struct sigaction sa = {};
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  // No SA_RESTART: a blocked epoll_wait returns EINTR and the loop sees the flag.
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

} // namespace why502::cli
