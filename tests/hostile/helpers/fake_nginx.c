// A binary why502 must never run. Started with no arguments it only sleeps, titled like an nginx
// master by whoever started it (argv[0]). Run with any argument, as `nginx -V` or `nginx -T` would
// be, it leaves a marker next to itself saying as which uid it ran.
#include <fcntl.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
  (void)argv;
  if (argc > 1) {
    char self[4096], marker[4200];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
      return 2;
    self[n] = 0;
    snprintf(marker, sizeof marker, "%s.executed-by-uid-%d", self, (int)getuid());
    int fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0)
      close(fd);
    return 0;
  }
  prctl(PR_SET_NAME, "nginx");
  for (int i = 0; i < 600; ++i)
    sleep(1);
  return 0;
}
