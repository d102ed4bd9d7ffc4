// A "module" whose constructor runs on dlopen, before nginx even checks it is a module: it leaves
// a marker next to itself saying as which uid it was loaded. why502 must never load it.
#define _GNU_SOURCE // dladdr
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

__attribute__((constructor)) static void evil(void) {
  Dl_info info;
  char marker[4200];
  if (!dladdr((void *)evil, &info) || !info.dli_fname)
    return;
  snprintf(marker, sizeof marker, "%s.loaded-by-uid-%d", info.dli_fname, (int)getuid());
  int fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0)
    close(fd);
}
