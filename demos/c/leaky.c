/* leaky.c: one leak of each common kind from plain C, built with gcc -O2 -g and no frame
 * pointers: tracer must still unwind from inside glibc to main. Each leak_* function leaks
 * `count` descriptors; no_leak() opens and closes correctly. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((noinline)) int leak_file(const char *path) {
  int fd = open(path, O_RDONLY); /* tracer-demo: leak site (file) */
  if (fd >= 0) lseek(fd, 0, SEEK_SET);
  return fd;
}

__attribute__((noinline)) FILE *leak_stream(const char *path) {
  FILE *f = fopen(path, "r"); /* tracer-demo: leak site (fopen) */
  if (f) setvbuf(f, NULL, _IONBF, 0);
  return f;
}

__attribute__((noinline)) int leak_socket(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0); /* tracer-demo: leak site (socket) */
  if (fd >= 0) shutdown(fd, SHUT_RDWR);
  return fd;
}

__attribute__((noinline)) int leak_pipe(void) {
  int fds[2];
  int rc = pipe(fds); /* tracer-demo: leak site (pipe) */
  return rc == 0 ? fds[0] : -1;
}

__attribute__((noinline)) int leak_eventfd(void) {
  int fd = eventfd(0, 0); /* tracer-demo: leak site (eventfd) */
  if (fd >= 0) fcntl(fd, F_GETFL);
  return fd;
}

__attribute__((noinline)) void no_leak(void) {
  int fd = open("/etc/hostname", O_RDONLY);
  if (fd >= 0) close(fd);
  int s = socket(AF_INET6, SOCK_DGRAM, 0);
  if (s >= 0) close(s);
}

int main(int argc, char **argv) {
  int count = argc > 1 ? atoi(argv[1]) : 3;
  for (int i = 0; i < count; i++) {
    leak_file("/etc/hostname");
    leak_stream("/etc/passwd");
    leak_socket();
    leak_pipe();
    leak_eventfd();
    no_leak();
  }
  printf("leaked %d of each kind\n", count);
  return 0;
}
