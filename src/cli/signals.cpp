#include <atomic>
#include <csignal>

#include "cli/commands.h"

namespace why502::cli {

namespace {
volatile std::sig_atomic_t g_stop = 0;
// Lock-free, so exchange() is safe against the handler; a second SIGHUP before the loop looks
// is merged into the first (one reopen serves both).
std::atomic<bool> g_reopen{false};
static_assert(std::atomic<bool>::is_always_lock_free);
void on_stop(int) { g_stop = 1; }
void on_hup(int) { g_reopen.store(true, std::memory_order_relaxed); }
} // namespace

bool stop_requested() { return g_stop != 0; }

bool take_reopen_request() { return g_reopen.exchange(false, std::memory_order_relaxed); }

void install_stop_handlers() {
  struct sigaction sa = {};
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  // No SA_RESTART: a blocked epoll_wait returns EINTR and the loop sees the flag.
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // SIGHUP is logrotate's "reopen your files" (postrotate), not a reason to die.
  sa.sa_handler = on_hup;
  sigaction(SIGHUP, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

} // namespace why502::cli
