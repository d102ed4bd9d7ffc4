#include "base/output_file.h"
#include "base/file_kind.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <vector>

#include "why502/error.h"

namespace why502::base {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = fd;
}

int write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t w = ::write(fd, data.data(), data.size());
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return errno;
    }
    data.remove_prefix(static_cast<size_t>(w));
  }
  return 0;
}

namespace {

std::string octal(mode_t m) {
  char buf[8];
  snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

} // namespace

UniqueFd open_output_file(const std::string &path, const OutputFileOptions &opts) {
  auto refuse = [&](const std::string &why) { return Error("cannot write " + path + ": " + why); };
  std::string dir, name;
  auto slash = path.rfind('/');
  if (slash == std::string::npos) {
    dir = ".";
    name = path;
  } else {
    dir = slash == 0 ? "/" : path.substr(0, slash);
    name = path.substr(slash + 1);
  }
  if (name.empty() || name == "." || name == "..")
    throw refuse("not a file name");

  // Every directory on the way is opened relative to the one before and checked on its fd, and the
  // file is opened relative to the last: a directory swapped in after its check is never the one
  // written into, and a directory another user controls anywhere on the path (who could rename a
  // root-owned subdirectory away and put a symlink to /etc in its place) is refused.
  const uid_t me = geteuid();
  auto check_dir = [&](int fd, const std::string &shown) {
    struct stat ds {};
    if (fstat(fd, &ds) != 0)
      throw refuse("directory " + shown + ": " + std::strerror(errno));
    if (ds.st_uid != 0 && ds.st_uid != me)
      throw refuse("directory " + shown + " is owned by uid " + std::to_string(ds.st_uid) +
                   ", who could replace the file; write into a directory owned by root");
    // World-writable without the sticky bit: anyone may rename or replace what is in it. (Sticky
    // world-writable, like /tmp, is fine: only an entry's owner may remove it, the kernel does not
    // follow another user's symlink there (fs.protected_symlinks), and what another user planted
    // as our file is refused below as a symlink or as not ours.)
    if ((ds.st_mode & S_IWOTH) && !(ds.st_mode & S_ISVTX))
      throw refuse("directory " + shown + " is writable by everyone and not sticky (mode " + octal(ds.st_mode) +
                   "): another user could replace the file");
  };
  const bool absolute = dir[0] == '/';
  UniqueFd dfd(::open(absolute ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dfd)
    throw refuse(std::string("directory ") + (absolute ? "/" : ".") + ": " + std::strerror(errno));
  check_dir(dfd.get(), absolute ? "/" : ".");
  std::string walked = absolute ? "" : ".";
  for (size_t pos = 0; pos < dir.size();) {
    size_t end = dir.find('/', pos);
    if (end == std::string::npos)
      end = dir.size();
    std::string comp = dir.substr(pos, end - pos);
    pos = end + 1;
    if (comp.empty() || comp == ".")
      continue;
    walked += "/" + comp;
    // Symlinks between directories are followed (/var/run -> /run); the one at the file is not.
    UniqueFd next(::openat(dfd.get(), comp.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!next)
      throw refuse("directory " + walked + ": " + std::strerror(errno));
    check_dir(next.get(), walked);
    dfd = std::move(next);
  }

  const mode_t mode = opts.group ? 0640 : 0600;
  // No O_TRUNC here: nothing is truncated before the file is checked. O_NONBLOCK: opening a FIFO
  // must not block (without a reader it fails with ENXIO; with one it is refused below).
  const int flags = O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (opts.truncate ? 0 : O_APPEND);
  int fd = -1;
  for (int attempt = 0; attempt < 3; ++attempt) {
    // Create first: O_EXCL never follows a symlink, so a planted one gives EEXIST, and the plain
    // open below gives ELOOP.
    fd = ::openat(dfd.get(), name.c_str(), flags | O_CREAT | O_EXCL, mode);
    if (fd >= 0)
      break;
    if (errno != EEXIST)
      break;
    fd = ::openat(dfd.get(), name.c_str(), flags);
    if (fd >= 0 || errno != ENOENT)
      break; // ENOENT: removed between the two opens; try again
  }
  if (fd < 0) {
    int e = errno;
    if (e == ELOOP)
      throw refuse("refusing to write through a symlink");
    if (e == ENXIO)
      throw refuse("a FIFO, not a regular file");
    if (e == EISDIR)
      throw refuse("a directory, not a regular file");
    throw refuse(std::strerror(e));
  }
  UniqueFd file(fd);

  struct stat st {};
  if (fstat(file.get(), &st) != 0)
    throw refuse(std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    throw refuse(std::string(file_kind(st.st_mode)) + ", not a regular file");
  if (st.st_uid != me)
    throw refuse("the file is owned by uid " + std::to_string(st.st_uid) +
                 ", who could read what why502 writes; remove it or write elsewhere");
  if (st.st_nlink != 1)
    throw refuse("the file has " + std::to_string(st.st_nlink) +
                 " hard links: writing would change another path too");
  if (opts.group && st.st_gid != *opts.group && fchown(file.get(), static_cast<uid_t>(-1), *opts.group) != 0)
    throw refuse("cannot give it group " + std::to_string(*opts.group) + ": " + std::strerror(errno));
  // Always the exact mode: a new file may have lost bits to the umask (0640 under UMask=0077), an
  // existing one may be wider (0644 from `touch`) and is tightened.
  if ((st.st_mode & 07777) != mode && fchmod(file.get(), mode) != 0)
    throw refuse("cannot set its mode to " + octal(mode) + ": " + std::strerror(errno));
  int fl = fcntl(file.get(), F_GETFL);
  if (fl < 0 || fcntl(file.get(), F_SETFL, fl & ~O_NONBLOCK) != 0)
    throw refuse(std::strerror(errno));
  if (opts.truncate && ftruncate(file.get(), 0) != 0)
    throw refuse(std::string("cannot truncate: ") + std::strerror(errno));
  return file;
}

gid_t group_id(const std::string &name) {
  unsigned long n = 0;
  auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), n);
  if (!name.empty() && ec == std::errc() && end == name.data() + name.size() && n < 0xffffffffUL)
    return static_cast<gid_t>(n);
  group grp {};
  group *found = nullptr;
  std::vector<char> buf(16384);
  for (;;) {
    int rc = getgrnam_r(name.c_str(), &grp, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < (1u << 22)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (rc != 0)
      throw Error("cannot look up group " + name + ": " + std::strerror(rc));
    break;
  }
  if (!found)
    throw Error("no such group: " + name);
  return found->gr_gid;
}

namespace {
uint64_t size_of(int fd) {
  struct stat st {};
  return fstat(fd, &st) == 0 ? uint64_t(st.st_size) : 0;
}
} // namespace

OutputFile::OutputFile(std::string path, OutputFileOptions opts)
    : path_(std::move(path)), opts_(opts), fd_(open_output_file(path_, opts_)), size_(size_of(fd_.get())) {}

void OutputFile::write_line(std::string_view text) {
  std::string buf;
  buf.reserve(text.size() + 1);
  buf.append(text);
  buf.push_back('\n');
  if (int e = write_all(fd_.get(), buf))
    throw Error("cannot write to " + path_ + ": " + std::strerror(e));
  size_ += buf.size();
  if (opts_.rotate_size && size_ >= opts_.rotate_size)
    rotate();
}

void OutputFile::reopen() {
  // A reopen never truncates: the file at the path is new (renamed away) or is the same one.
  OutputFileOptions o = opts_;
  o.truncate = false;
  fd_ = open_output_file(path_, o);
  size_ = size_of(fd_.get());
}

// After a whole line, never inside one. The directory was checked when the file was opened (root's
// or ours, not writable by others), so renaming in it by path is safe; the new file is opened
// through open_output_file again. A failed step leaves the current file in use: lines keep going
// to it, and the failure is counted.
void OutputFile::rotate() {
  // A failed rotation is tried again only after another rotate_size bytes, not at every line.
  size_ = 0;
  const unsigned keep = std::max(1u, opts_.rotate_keep);
  auto numbered = [&](unsigned i) { return path_ + "." + std::to_string(i); };
  if (::unlink(numbered(keep).c_str()) != 0 && errno != ENOENT) {
    ++rotation_failures_;
    return;
  }
  for (unsigned i = keep - 1; i >= 1; --i)
    if (::rename(numbered(i).c_str(), numbered(i + 1).c_str()) != 0 && errno != ENOENT) {
      ++rotation_failures_;
      return;
    }
  if (::rename(path_.c_str(), numbered(1).c_str()) != 0) {
    ++rotation_failures_;
    return;
  }
  try {
    reopen();
    ++rotations_;
  } catch (const Error &) {
    ++rotation_failures_; // the renamed file stays open: nothing is lost
  }
}

} // namespace why502::base
