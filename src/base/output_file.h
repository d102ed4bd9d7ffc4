// The one way why502 opens a file it writes (-o, --capture, record -o, --perfetto).
//
// why502 runs as root and its files hold client addresses and request lines, so a path given on
// the command line must not become a way for a local user to make root write somewhere else, or
// to read what root writes:
//   * every directory on the path is opened (O_PATH) relative to the one before and checked on
//     that fd: owned by root or by us, and not writable by others unless sticky (/tmp); the file is
//     then opened relative to the last fd, so the directories that were checked are the ones used
//     (no check-then-use race);
//   * O_NOFOLLOW: a symlink at the path is refused ("refusing to write through a symlink");
//   * the opened file is checked on its fd before a byte is written or truncated: a regular file,
//     owned by us, with one link (a hard link planted to /etc/shadow is refused);
//   * O_CLOEXEC: the nginx children a reload forks never inherit it;
//   * mode 0600, or 0640 with a group (--group): set with fchmod, so the umask cannot widen it and
//     an existing file that is wider is tightened (it is ours; refusing would break the common
//     `touch FILE` / logrotate `create 0644` setups while tightening keeps the promise).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>

namespace why502::base {

// An owned file descriptor, closed on destruction.
class UniqueFd {
public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd &&o) noexcept : fd_(o.release()) {}
  UniqueFd &operator=(UniqueFd &&o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  UniqueFd(const UniqueFd &) = delete;
  UniqueFd &operator=(const UniqueFd &) = delete;

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

private:
  int fd_ = -1;
};

struct OutputFileOptions {
  // Empty the file (a format that cannot be appended to, e.g. a Perfetto trace); otherwise O_APPEND.
  bool truncate = false;
  // Mode 0640 and this group instead of 0600 (`--group NAME`: a log shipper's group may read it).
  std::optional<gid_t> group;
  // OutputFile only: past this many bytes the file is renamed PATH.1 (PATH.1 to PATH.2, ..., the
  // oldest of rotate_keep removed) and a new PATH is started. 0: never (logrotate + SIGHUP).
  uint64_t rotate_size = 0;
  unsigned rotate_keep = 5;
};

// Opens `path` for writing as described above. Throws why502::Error with one line
// ("cannot write PATH: refusing to write through a symlink") when it refuses or fails.
UniqueFd open_output_file(const std::string &path, const OutputFileOptions &opts = {});

// The gid of a group name (or a number). Throws why502::Error when no such group exists.
gid_t group_id(const std::string &name);

// A line-oriented output file that can be reopened at the same path (SIGHUP after logrotate
// renamed it). Each line is one write(2): with O_APPEND, lines never interleave or tear.
class OutputFile {
public:
  explicit OutputFile(std::string path, OutputFileOptions opts = {});
  // Writes text + '\n'. Throws why502::Error on a write error (full disk, ...).
  void write_line(std::string_view text);
  // Opens the path again and switches to it (the old file, e.g. renamed by logrotate, is closed).
  // On failure the old file stays in use and the error is thrown.
  void reopen();
  // Rotations done (rotate_size), and the ones that failed (the file then grows on: nothing lost).
  uint64_t rotations() const { return rotations_; }
  uint64_t rotation_failures() const { return rotation_failures_; }
  const std::string &path() const { return path_; }
  int fd() const { return fd_.get(); }

private:
  void rotate();
  std::string path_;
  OutputFileOptions opts_;
  UniqueFd fd_;
  uint64_t size_ = 0; // bytes in the current file (its size at open, plus what we wrote)
  uint64_t rotations_ = 0, rotation_failures_ = 0;
};

// Writes all of `data` to fd, retrying short writes and EINTR. Returns 0 or an errno.
int write_all(int fd, std::string_view data);

} // namespace why502::base
