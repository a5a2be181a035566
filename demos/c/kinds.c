/* kinds.c: one leak site per less common descriptor kind (pidfd_getfd, fanotify, perf_event,
 * bpf, userfaultfd, file handles, the new mount API, mqueue, memfd_secret, landlock, clone3
 * pidfds, io_uring, fcntl dups, SCM_RIGHTS), plus two EBADF misuses. main() prints
 * `ok <kind> <count> <function>` or `skip <kind> <ERRNO>` per kind; a skipped kind leaves
 * nothing open. KINDS_DEBUG=1 lists /proc/self/fd to stderr at exit. Raw syscall(2) only. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/landlock.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef LANDLOCK_CREATE_RULESET_VERSION
#define LANDLOCK_CREATE_RULESET_VERSION (1U << 0)
#endif

/* First version of the clone3 argument block (CLONE_ARGS_SIZE_VER0 = 64 bytes). */
struct kinds_clone_args {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

/* Each leak_* returns 0 when it leaked its descriptors, else an errno with nothing left open. */
#define FAIL(...) do { int e_ = errno; __VA_ARGS__; return e_; } while (0)

static const char *const FILE_PATH = "/etc/hostname";

__attribute__((noinline)) int leak_pidfd_getfd(void) {
  int pidfd = syscall(SYS_pidfd_open, getpid(), 0);
  if (pidfd < 0) return errno;
  int got[2] = {-1, -1};
  for (int i = 0; i < 2; i++) {
    int orig = open(FILE_PATH, O_RDONLY | O_CLOEXEC);
    if (orig < 0) FAIL(close(pidfd); if (i) close(got[0]));
    got[i] = syscall(SYS_pidfd_getfd, pidfd, orig, 0); // tracer-demo: leak site (pidfd_getfd)
    if (got[i] < 0) FAIL(close(orig); close(pidfd); if (i) close(got[0]));
    close(orig);
  }
  close(pidfd);
  return 0;
}

__attribute__((noinline)) int leak_fanotify(void) {
  int fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC, O_RDONLY); // tracer-demo: leak site (fanotify)
  return fd < 0 ? errno : 0;
}

__attribute__((noinline)) int leak_perf_event(void) {
  struct perf_event_attr attr;
  memset(&attr, 0, sizeof(attr));
  attr.size = sizeof(attr);
  attr.type = PERF_TYPE_SOFTWARE;
  attr.config = PERF_COUNT_SW_TASK_CLOCK;
  attr.disabled = 1;
  attr.exclude_kernel = 1;
  attr.exclude_hv = 1;
  int fds[2];
  for (int i = 0; i < 2; i++) {
    fds[i] = syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC); // tracer-demo: leak site (perf_event)
    if (fds[i] < 0) FAIL(if (i) close(fds[0]));
  }
  return 0;
}

__attribute__((noinline)) int leak_bpf(void) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof(attr));
  attr.map_type = BPF_MAP_TYPE_ARRAY;
  attr.key_size = 4;
  attr.value_size = 8;
  attr.max_entries = 1;
  int fds[2];
  for (int i = 0; i < 2; i++) {
    fds[i] = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr)); // tracer-demo: leak site (bpf)
    if (fds[i] < 0) FAIL(if (i) close(fds[0]));
  }
  return 0;
}

__attribute__((noinline)) int leak_userfaultfd(void) {
  int fd = syscall(SYS_userfaultfd, O_CLOEXEC); // tracer-demo: leak site (userfaultfd)
  return fd < 0 ? errno : 0;
}

__attribute__((noinline)) int leak_open_by_handle_at(void) {
  union { struct file_handle fh; char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ]; } h;
  int mount_id, fds[2];
  h.fh.handle_bytes = MAX_HANDLE_SZ;
  if (name_to_handle_at(AT_FDCWD, FILE_PATH, &h.fh, &mount_id, 0) < 0) return errno;
  /* The file itself names the right mount wherever cwd is (O_PATH would give EBADF). */
  int mfd = open(FILE_PATH, O_RDONLY | O_CLOEXEC);
  if (mfd < 0) return errno;
  for (int i = 0; i < 2; i++) {
    fds[i] = open_by_handle_at(mfd, &h.fh, O_RDONLY | O_CLOEXEC); // tracer-demo: leak site (open_by_handle_at)
    if (fds[i] < 0) FAIL(close(mfd); if (i) close(fds[0]));
  }
  close(mfd);
  return 0;
}

__attribute__((noinline)) int leak_open_tree(void) {
  int fd = syscall(SYS_open_tree, AT_FDCWD, "/tmp", OPEN_TREE_CLOEXEC); // tracer-demo: leak site (open_tree)
  return fd < 0 ? errno : 0;
}

__attribute__((noinline)) int leak_fsopen(void) {
  int fd = syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC); // tracer-demo: leak site (fsopen)
  return fd < 0 ? errno : 0;
}

__attribute__((noinline)) int leak_fsmount(void) {
  int fsfd = syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC);
  if (fsfd < 0) return errno;
  if (syscall(SYS_fsconfig, fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) FAIL(close(fsfd));
  int mfd = syscall(SYS_fsmount, fsfd, FSMOUNT_CLOEXEC, 0); // tracer-demo: leak site (fsmount)
  if (mfd < 0) FAIL(close(fsfd));
  close(fsfd);
  return 0;
}

__attribute__((noinline)) int leak_fspick(void) {
  /* fspick needs the root of a mount; "/" always is, /tmp often is not. */
  int fd = syscall(SYS_fspick, AT_FDCWD, "/", FSPICK_CLOEXEC); // tracer-demo: leak site (fspick)
  return fd < 0 ? errno : 0;
}

__attribute__((noinline)) int leak_mq_open(void) {
  char names[2][64];
  int fds[2];
  for (int i = 0; i < 2; i++) {
    /* The raw syscall takes the name without glibc's leading '/'. */
    snprintf(names[i], sizeof(names[i]), "tracer-kinds-%d-%d", (int)getpid(), i);
    fds[i] = syscall(SYS_mq_open, names[i], O_CREAT | O_RDWR, 0600, NULL); // tracer-demo: leak site (mq_open)
    if (fds[i] < 0) FAIL(if (i) { close(fds[0]); syscall(SYS_mq_unlink, names[0]); });
  }
  for (int i = 0; i < 2; i++) syscall(SYS_mq_unlink, names[i]);
  return 0;
}

__attribute__((noinline)) int leak_memfd_secret(void) {
  int fd = syscall(SYS_memfd_secret, 0); // tracer-demo: leak site (memfd_secret)
  return fd < 0 ? errno : 0;
}

__attribute__((noinline)) int leak_landlock(void) {
  struct landlock_ruleset_attr attr;
  memset(&attr, 0, sizeof(attr));
  attr.handled_access_fs = LANDLOCK_ACCESS_FS_READ_FILE;
  int fd = syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0); // tracer-demo: leak site (landlock)
  return fd < 0 ? errno : 0;
}

__attribute__((noinline)) int leak_clone3_pidfd(void) {
  int pidfd = -1;
  struct kinds_clone_args args;
  memset(&args, 0, sizeof(args));
  args.flags = CLONE_PIDFD;
  args.pidfd = (uint64_t)(uintptr_t)&pidfd;
  args.exit_signal = SIGCHLD;
  long pid = syscall(SYS_clone3, &args, sizeof(args)); // tracer-demo: leak site (clone3_pidfd)
  if (pid < 0) return errno;
  if (pid == 0) syscall(SYS_exit, 0); /* child: private copy of the stack, leave at once */
  waitpid((pid_t)pid, NULL, 0);
  return 0;
}

__attribute__((noinline)) int leak_io_uring(void) {
  struct io_uring_params params;
  memset(&params, 0, sizeof(params));
  int fd = syscall(SYS_io_uring_setup, 4, &params); // tracer-demo: leak site (io_uring)
  return fd < 0 ? errno : 0;
}

__attribute__((noinline)) int leak_fcntl_dupfd(void) {
  int fd = open(FILE_PATH, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  int a = fcntl(fd, F_DUPFD, 10); // tracer-demo: leak site (fcntl_dupfd)
  if (a < 0) FAIL(close(fd));
  int b = fcntl(fd, F_DUPFD_CLOEXEC, 10); // tracer-demo: leak site (fcntl_dupfd)
  if (b < 0) FAIL(close(fd); close(a));
  close(fd);
  return 0;
}

/* Child side of scm_rights: three files in one SCM_RIGHTS message. */
__attribute__((noinline)) void send_files(int sock) {
  int fds[3];
  for (int i = 0; i < 3; i++) fds[i] = open(FILE_PATH, O_RDONLY | O_CLOEXEC); // tracer-demo: sent
  union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(fds))]; } ctl;
  char byte = 'x';
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                       .msg_controllen = sizeof(ctl.buf)};
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(fds));
  memcpy(CMSG_DATA(c), fds, sizeof(fds));
  sendmsg(sock, &msg, 0);
  for (int i = 0; i < 3; i++) close(fds[i]);
}

/* Child side of scm_rights_mmsg: two messages of one file each in one sendmmsg. */
__attribute__((noinline)) void send_files_mmsg(int sock) {
  int fds[2];
  union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } ctl[2];
  char bytes[2] = {'a', 'b'};
  struct iovec iov[2];
  struct mmsghdr msgs[2];
  memset(msgs, 0, sizeof(msgs));
  for (int i = 0; i < 2; i++) {
    fds[i] = open(FILE_PATH, O_RDONLY | O_CLOEXEC); // tracer-demo: sent (mmsg)
    iov[i] = (struct iovec){.iov_base = &bytes[i], .iov_len = 1};
    msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1,
                                      .msg_control = ctl[i].buf, .msg_controllen = sizeof(ctl[i].buf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fds[i], sizeof(int));
  }
  sendmmsg(sock, msgs, 2, 0);
  for (int i = 0; i < 2; i++) close(fds[i]);
}

/* fork a child that runs send(sv[1]) and exits; returns its pid, sv[0] stays with the parent. */
static pid_t spawn_sender(int sv[2], void (*send)(int)) {
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return -1;
  pid_t pid = fork();
  if (pid < 0) { int e = errno; close(sv[0]); close(sv[1]); errno = e; return -1; }
  if (pid == 0) {
    close(sv[0]);
    send(sv[1]);
    close(sv[1]);
    _exit(0);
  }
  close(sv[1]);
  return pid;
}

/* Count SCM_RIGHTS descriptors in a received message (and collect them into out). */
static int take_rights(struct msghdr *m, int *out, int n) {
  for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      memcpy(out + n, CMSG_DATA(c), k * sizeof(int));
      n += k;
    }
  return n;
}

__attribute__((noinline)) int leak_received(void) {
  int sv[2], got[3], n = 0;
  pid_t pid = spawn_sender(sv, send_files);
  if (pid < 0) return errno;
  union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(got))]; } ctl;
  char byte;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                       .msg_controllen = sizeof(ctl.buf)};
  ssize_t r = recvmsg(sv[0], &msg, MSG_CMSG_CLOEXEC); // tracer-demo: leak site (scm_rights)
  int e = r < 0 ? errno : EPROTO;
  if (r > 0) n = take_rights(&msg, got, 0);
  close(sv[0]);
  waitpid(pid, NULL, 0);
  if (n == 3) return 0;
  for (int i = 0; i < n; i++) close(got[i]);
  return e;
}

__attribute__((noinline)) int leak_received_mmsg(void) {
  int sv[2], got[2], n = 0;
  pid_t pid = spawn_sender(sv, send_files_mmsg);
  if (pid < 0) return errno;
  waitpid(pid, NULL, 0); /* both messages are queued before we receive */
  union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } ctl[2];
  char bytes[2];
  struct iovec iov[2];
  struct mmsghdr msgs[2];
  memset(msgs, 0, sizeof(msgs));
  for (int i = 0; i < 2; i++) {
    iov[i] = (struct iovec){.iov_base = &bytes[i], .iov_len = 1};
    msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1,
                                      .msg_control = ctl[i].buf, .msg_controllen = sizeof(ctl[i].buf)};
  }
  int r = recvmmsg(sv[0], msgs, 2, MSG_CMSG_CLOEXEC, NULL); // tracer-demo: leak site (scm_rights_mmsg)
  int e = r < 0 ? errno : EPROTO;
  for (int i = 0; i < r; i++) n = take_rights(&msgs[i].msg_hdr, got, n);
  close(sv[0]);
  if (n == 2) return 0;
  for (int i = 0; i < n; i++) close(got[i]);
  return e;
}

__attribute__((noinline)) int close_twice(void) {
  int fd = open(FILE_PATH, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  close(fd);
  close(fd); // tracer-demo: double close
  return 0;
}

__attribute__((noinline)) int close_stray(void) {
  close(1000); // tracer-demo: stray close
  return 0;
}

static void list_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return;
  char target[PATH_MAX];
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d)) continue;
    ssize_t n = readlinkat(dirfd(d), e->d_name, target, sizeof(target) - 1);
    target[n < 0 ? 0 : n] = '\0';
    fprintf(stderr, "fd %s -> %s\n", e->d_name, target);
  }
  closedir(d);
}

static const struct {
  const char *kind, *func;
  int count;
  int (*fn)(void);
} KINDS[] = {
#define K(kind, count, fn) {kind, #fn, count, fn}
    K("pidfd_getfd", 2, leak_pidfd_getfd),
    K("fanotify", 1, leak_fanotify),
    K("perf_event", 2, leak_perf_event),
    K("bpf", 2, leak_bpf),
    K("userfaultfd", 1, leak_userfaultfd),
    K("open_by_handle_at", 2, leak_open_by_handle_at),
    K("open_tree", 1, leak_open_tree),
    K("fsopen", 1, leak_fsopen),
    K("fsmount", 1, leak_fsmount),
    K("fspick", 1, leak_fspick),
    K("mq_open", 2, leak_mq_open),
    K("memfd_secret", 1, leak_memfd_secret),
    K("landlock", 1, leak_landlock),
    K("clone3_pidfd", 1, leak_clone3_pidfd),
    K("io_uring", 1, leak_io_uring),
    K("fcntl_dupfd", 2, leak_fcntl_dupfd),
    K("scm_rights", 3, leak_received),
    K("scm_rights_mmsg", 2, leak_received_mmsg),
    K("double_close", 1, close_twice),
    K("stray_close", 1, close_stray),
#undef K
};

int main(void) {
  for (size_t i = 0; i < sizeof(KINDS) / sizeof(KINDS[0]); i++) {
    int err = KINDS[i].fn();
    if (err == 0)
      printf("ok %s %d %s\n", KINDS[i].kind, KINDS[i].count, KINDS[i].func);
    else
      printf("skip %s %s\n", KINDS[i].kind, strerrorname_np(err) ? strerrorname_np(err) : "EUNKNOWN");
  }
  fflush(stdout);
  if (getenv("KINDS_DEBUG")) list_fds();
  return 0;
}
