// What a path is when it is not the regular file we wanted, in words for an error line.
#pragma once

#include <sys/stat.h>

namespace why502::base {

inline const char *file_kind(mode_t m) {
  if (S_ISDIR(m))
    return "a directory";
  if (S_ISFIFO(m))
    return "a FIFO";
  if (S_ISCHR(m))
    return "a character device";
  if (S_ISBLK(m))
    return "a block device";
  if (S_ISSOCK(m))
    return "a socket";
  if (S_ISLNK(m))
    return "a symlink";
  return "not a regular file";
}

} // namespace why502::base
