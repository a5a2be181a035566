/* churn.c: the benchmark's workloads, timed from inside so that a tool's start-up does not
 * count. Prints one line: nanoseconds per iteration, wall clock and CPU time of this thread.
 *
 *   churn open N [PATH]     N x (open + read + close) of one small file
 *   churn socket N          N x (socket + close)
 *   churn http N PORT       N x a new TCP connection to 127.0.0.1:PORT per HTTP GET
 *
 * With CHURN_CPU=K in the environment it first pins itself to CPU K. With CHURN_GO=FIFO it
 * prints "ready", then waits for a byte on FIFO before starting: the benchmark starts a traced
 * and a bare twin together on one CPU, where the scheduler interleaves them, so that both see
 * the same machine (this VM's speed drifts by tens of percent from one second to the next).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double clock_ns(clockid_t c) {
  struct timespec t;
  clock_gettime(c, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static int open_read_close(const char *path) {
  char buf[256];
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  if (read(fd, buf, sizeof buf) < 0) return -1;
  return close(fd);
}

static int socket_close(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  return close(fd);
}

static int http_get(int port) {
  static const char req[] = "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  char buf[4096];
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) return -1;
  if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) return -1;
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
  }
  if (n < 0) return -1;
  return close(fd);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: churn open|socket|http N [PATH|PORT]\n");
    return 2;
  }
  const char *mode = argv[1];
  long n = atol(argv[2]);
  const char *path = argc > 3 ? argv[3] : "/etc/hostname";
  int port = argc > 3 ? atoi(argv[3]) : 80;
  const char *pin = getenv("CHURN_CPU");
  if (pin) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(atoi(pin), &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) {
      perror("sched_setaffinity");
      return 1;
    }
  }
  const char *go = getenv("CHURN_GO");
  if (go) {
    /* O_RDWR: opening never blocks; the read waits for the benchmark's byte. */
    int fd = open(go, O_RDWR);
    char c;
    printf("ready\n");
    fflush(stdout);
    if (fd < 0 || read(fd, &c, 1) != 1) {
      perror("CHURN_GO");
      return 1;
    }
    close(fd);
  }
  double wall = clock_ns(CLOCK_MONOTONIC), cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  for (long i = 0; i < n; i++) {
    int r;
    if (strcmp(mode, "open") == 0)
      r = open_read_close(path);
    else if (strcmp(mode, "socket") == 0)
      r = socket_close();
    else if (strcmp(mode, "http") == 0)
      r = http_get(port);
    else
      return 2;
    if (r < 0) {
      perror(mode);
      return 1;
    }
  }
  wall = clock_ns(CLOCK_MONOTONIC) - wall;
  cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu;
  printf("%.1f %.1f\n", wall / n, cpu / n);
  return 0;
}
