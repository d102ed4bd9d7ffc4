// Reading another process's files the way that process sees them, and no more.
//
// nginx may live in another mount namespace (a container): its config, includes and logs are paths
// in *its* filesystem. Joining them to "/proc/PID/root" is not enough: an absolute symlink inside
// (the official image links access.log to /dev/stdout) would be resolved against why502's own root.
// TargetFs keeps an O_PATH fd of the target's root and opens every path with openat2
// RESOLVE_IN_ROOT (absolute links and ".." stay inside) and RESOLVE_NO_MAGICLINKS (no escape through
// /proc/self/fd/N). It never creates anything there.
//
// It also reads as the target's user: a master started by an unprivileged user must not be able to
// make root read `include /root-only-file;` for it. While a read runs, this thread's filesystem
// uid/gid and supplementary groups are those of the target (raw per-thread syscalls), so the
// kernel's own permission checks apply, ACLs included.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace why502::base {

// Credentials a process's file accesses are checked with (/proc/PID/status: fsuid, fsgid, Groups).
struct FsCreds {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  bool is_root() const { return uid == 0; }
};

// Parses the Uid:/Gid:/Groups: lines of /proc/PID/status (the 4th id is the filesystem one).
std::optional<FsCreds> parse_fs_creds(const std::string &status_text);

// Switches this thread's fsuid/fsgid/groups to `creds` until destroyed. No-op for root.
class ScopedFsCreds {
public:
  explicit ScopedFsCreds(const FsCreds &creds);
  ~ScopedFsCreds();
  ScopedFsCreds(const ScopedFsCreds &) = delete;
  ScopedFsCreds &operator=(const ScopedFsCreds &) = delete;
  bool ok() const { return ok_; } // false: the switch failed and nothing was changed

private:
  bool active_ = false;
  bool ok_ = true;
  std::vector<gid_t> saved_groups_;
};

// The result of reading one file: its text, or why not.
struct FileText {
  std::string text;
  std::string error; // empty on success
  bool truncated = false;
  bool ok() const { return error.empty(); }
};

class TargetFs {
public:
  // The filesystem of process `pid` (its /proc/PID/root), read with its credentials.
  // Throws nothing: check valid()/error().
  static TargetFs of_process(pid_t pid, const std::string &proc_root = "/proc");
  // This process's own filesystem and credentials (tests, and `--error-log` given by the operator).
  static TargetFs own();
  // A directory taken as the root, read with `creds` (tests; an unpacked container image).
  static TargetFs of_directory(const std::string &dir, const FsCreds &creds);

  TargetFs(TargetFs &&other) noexcept;
  TargetFs &operator=(TargetFs &&other) noexcept;
  TargetFs(const TargetFs &) = delete;
  TargetFs &operator=(const TargetFs &) = delete;
  ~TargetFs();

  bool valid() const { return root_fd_ >= 0; }
  const std::string &error() const { return error_; }
  const FsCreds &creds() const { return creds_; }
  // "/proc/1234/root" for a target, "/" for own(): for messages only, never for opening.
  const std::string &root_label() const { return root_label_; }
  // True when the target sees another filesystem than ours (another mount namespace or chroot).
  bool foreign() const { return foreign_; }

  // openat2(root, path, flags | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) with the
  // target's credentials. Never creates (O_CREAT is refused). Returns -1 and sets errno on failure.
  int open(const std::string &path, int flags) const;
  // A regular file, at most max_bytes (then truncated=true).
  FileText read_file(const std::string &path, std::size_t max_bytes) const;
  // Paths matching a glob(7) pattern (absolute), sorted like glob(3) does; at most max_matches.
  std::vector<std::string> glob(const std::string &pattern, std::size_t max_matches) const;

private:
  TargetFs() = default;
  int root_fd_ = -1;
  FsCreds creds_;
  std::string root_label_;
  std::string error_;
  bool foreign_ = false;
};

} // namespace why502::base
