// LogTailer: follows a log by path. inotify only wakes us up; the truth is re-checked on every
// drain(): the open file is read to EOF, then the path is stat()ed —
//   * a different inode at the path (logrotate rename+create): nginx keeps writing to the old inode
//     until every worker has handled `reopen` (USR1), so the old file is kept as `old_` and read on
//     every drain until it has been idle for kRetiredIdleMs; the new file is read from offset 0;
//   * the same inode but smaller than our offset (copytruncate): restart at 0.
// Reads are non-blocking and chunked; a line longer than max_line is cut and counted, the rest of
// it is skipped without being stored, so memory stays at ~read_chunk + 2 * max_line. One drain()
// reads at most max_drain_bytes. Only regular files are read: /dev/zero, a FIFO or a directory
// named as a log is refused (last_error()), never read without end.
#include "why502/nginx.h"
#include "base/file_kind.h"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace why502::nginx {
namespace {
std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

} // namespace

LogTailer::LogTailer(std::string path, TailerOptions opts) : path_(std::move(path)), opts_(opts) {
  if (opts_.max_line == 0)
    opts_.max_line = 1;
  if (opts_.read_chunk < 4096)
    opts_.read_chunk = 4096;
  opts_.max_drain_bytes = std::max(opts_.max_drain_bytes, opts_.read_chunk);
  buf_.resize(opts_.read_chunk);
  inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0)
    last_error_ = std::string("inotify_init1: ") + std::strerror(errno);
  watch_dir();
  if (open_file(cur_, opts_.start_at_end))
    watch_file();
}

LogTailer::~LogTailer() {
  close_file(cur_);
  close_file(old_);
  if (inotify_fd_ >= 0)
    ::close(inotify_fd_);
}

int LogTailer::open_path(int flags) const {
  return opts_.open_path ? opts_.open_path(path_, flags) : ::open(path_.c_str(), flags | O_CLOEXEC);
}

bool LogTailer::stat_path(struct stat &st) const {
  if (!opts_.open_path)
    return ::stat(path_.c_str(), &st) == 0;
  int fd = open_path(O_PATH);
  if (fd < 0)
    return false;
  bool ok = fstat(fd, &st) == 0;
  ::close(fd);
  return ok;
}

void LogTailer::watch_dir() {
  if (inotify_fd_ < 0 || dir_wd_ >= 0 || opts_.open_path)
    return;
  auto slash = path_.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
  dir_wd_ = inotify_add_watch(inotify_fd_, dir.c_str(),
                              IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE);
}

void LogTailer::watch_file() {
  // Watching by path attaches to the inode now at the path; the watch follows that inode after a
  // rename, which is what makes writes to the rotated-away file wake us too.
  if (inotify_fd_ >= 0 && !opts_.open_path)
    inotify_add_watch(inotify_fd_, path_.c_str(),
                      (opts_.wake_on_write ? IN_MODIFY : 0) | IN_MOVE_SELF | IN_DELETE_SELF);
}

bool LogTailer::open_file(File &f, bool at_end) {
  int fd = open_path(O_RDONLY | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    last_error_ = path_ + ": " + std::strerror(errno);
    return false;
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    last_error_ = path_ + ": " + std::strerror(errno);
    ::close(fd);
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    last_error_ = path_ + ": " + base::file_kind(st.st_mode) + ", not a regular file";
    ::close(fd);
    return false;
  }
  f = File{};
  f.fd = fd;
  f.dev = st.st_dev;
  f.ino = st.st_ino;
  f.offset = at_end ? st.st_size : 0;
  f.last_data_ms = now_ms();
  last_error_.clear();
  return true;
}

void LogTailer::close_file(File &f) {
  if (f.fd >= 0)
    ::close(f.fd);
  f = File{};
}

void LogTailer::clear_inotify() {
  if (inotify_fd_ < 0)
    return;
  alignas(struct inotify_event) char ev[4096];
  while (::read(inotify_fd_, ev, sizeof ev) > 0) {
  }
}

void LogTailer::feed(File &f, const char *p, std::size_t len, const LineCallback &cb,
                     std::size_t &n) {
  while (len > 0) {
    const char *nl = static_cast<const char *>(std::memchr(p, '\n', len));
    std::size_t take = nl ? static_cast<std::size_t>(nl - p) : len;
    std::size_t room = opts_.max_line - f.partial.size();
    if (take > room) {
      f.partial.append(p, room);
      f.overflow = true;
    } else {
      f.partial.append(p, take);
    }
    if (!nl)
      return;
    emit_partial(f, cb, n);
    len -= take + 1;
    p = nl + 1;
  }
}

void LogTailer::flush_partial(File &f, const LineCallback &cb, std::size_t &n) {
  if (!f.partial.empty() || f.overflow)
    emit_partial(f, cb, n);
}

// The line gathered so far is complete (a newline, or the end of a file that is gone).
void LogTailer::emit_partial(File &f, const LineCallback &cb, std::size_t &n) {
  stats_.lines++;
  if (f.overflow)
    stats_.truncated_lines++;
  if (cb)
    cb(f.partial, f.overflow);
  ++n;
  f.partial.clear();
  f.overflow = false;
}

void LogTailer::read_available(File &f, const LineCallback &cb, std::size_t &n) {
  if (f.fd < 0)
    return;
  while (budget_ > 0) {
    ssize_t r = ::pread(f.fd, buf_.data(), std::min(buf_.size(), budget_), f.offset);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN)
        stats_.read_errors++;
      return;
    }
    if (r == 0)
      return;
    f.offset += r;
    budget_ -= static_cast<std::size_t>(r);
    f.last_data_ms = now_ms();
    stats_.bytes += static_cast<std::uint64_t>(r);
    feed(f, buf_.data(), static_cast<std::size_t>(r), cb, n);
  }
}

std::size_t LogTailer::drain(const LineCallback &cb) {
  std::size_t n = 0;
  budget_ = opts_.max_drain_bytes;
  clear_inotify();
  read_available(old_, cb, n);
  if (old_.fd >= 0 && now_ms() - old_.last_data_ms >= kRetiredIdleMs) {
    flush_partial(old_, cb, n);
    close_file(old_);
  }
  // Bounded: a rotation storm cannot keep us here forever.
  for (int round = 0; round < 4; ++round) {
    read_available(cur_, cb, n);
    if (budget_ == 0) {
      // More may be waiting: the next drain() goes on from here (rotation is checked then too).
      stats_.capped_drains++;
      return n;
    }
    struct stat st {};
    bool exists = stat_path(st);
    if (cur_.fd < 0) {
      if (!exists)
        return n;
      // the file appeared after we started: everything in it is new
      if (open_file(cur_, false))
        watch_file();
      continue;
    }
    if (exists && (st.st_ino != cur_.ino || st.st_dev != cur_.dev)) {
      // rename+create: retire the current file (still written by nginx until reopen)
      if (old_.fd >= 0) {
        read_available(old_, cb, n);
        if (budget_ == 0) { // the older file is not finished: retire it on a later drain()
          stats_.capped_drains++;
          return n;
        }
        flush_partial(old_, cb, n);
        close_file(old_);
      }
      old_ = std::move(cur_);
      old_.last_data_ms = now_ms();
      cur_ = File{};
      stats_.rotations++;
      if (open_file(cur_, false))
        watch_file();
      continue;
    }
    struct stat fst {};
    if (fstat(cur_.fd, &fst) == 0 && fst.st_size < cur_.offset) {
      // copytruncate: the file shrank under us
      flush_partial(cur_, cb, n);
      stats_.truncations++;
      cur_.offset = 0;
      continue;
    }
    // Not existing (renamed away, nothing created yet): keep reading the old inode.
    return n;
  }
  return n;
}

} // namespace why502::nginx
