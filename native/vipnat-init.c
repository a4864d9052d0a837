/*
 * vipnat-init: runs one session's program in a PID namespace of its own, so
 * that the program and everything it starts die with vipnat, whatever kills it.
 *
 *   vipnat (node) --spawn--> vipnat-init (H) --fork, new PID ns--> init (I, pid 1) --fork--> PROGRAM (P)
 *
 * H and I ask the kernel to SIGKILL them when their parent dies
 * (PR_SET_PDEATHSIG); when I, the namespace's init, dies, the kernel kills
 * every process in the namespace. So SIGKILL of vipnat takes the whole
 * session down at once, with nothing left to sweep.
 *
 * H forwards every signal it gets to I, and I to P: one SIGTERM from vipnat
 * is one SIGTERM for the program (a namespace's init gets no default signal
 * actions, which is why the program is not pid 1 itself). I reaps orphans.
 * When P ends, I passes P's wait status to H through a pipe and exits; H then
 * ends the same way P did (the same exit code, or the same signal), so
 * vipnat sees exactly what the program returned.
 *
 * With --join PID, H instead joins the PID namespace of process PID (a
 * session's program) and runs PROGRAM there as its own child: a second
 * program of a running session (`vipnat exec`), which dies with the session
 * and with vipnat, and whose status H mirrors the same way.
 *
 * Usage: vipnat-init [--parent PID] [--pid-fd FD] [--join PID] -- PROGRAM [ARGS...]
 *   --parent PID  exit at once unless our parent is PID (it may have died before PR_SET_PDEATHSIG)
 *   --pid-fd FD   write P's pid (as seen from vipnat's namespace) and a newline to FD, then close it
 *   --join PID    run PROGRAM in the PID namespace of process PID instead of a new one
 * Exit status 125 with a "vipnat-init:" line on stderr when it cannot set up.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define SETUP_FAILED 125

/* Messages from I to H on the status pipe: "forked", then P's wait status. */
#define MSG_FORKED 'F'
#define MSG_STATUS 'S'

static void die(const char *what) {
  fprintf(stderr, "vipnat-init: %s: %s\n", what, strerror(errno));
  _exit(SETUP_FAILED);
}

static int full_write(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int full_read(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Signals a process may be sent and that we pass on (not SIGCHLD, which is ours, nor the uncatchable ones). */
static int forwarded(int sig) {
  return sig != SIGCHLD && sig != SIGKILL && sig != SIGSTOP;
}

/* Ends this process the way wait status `st` says its child ended. */
static void mirror(int st) {
  if (WIFEXITED(st)) _exit(WEXITSTATUS(st));
  if (WIFSIGNALED(st)) {
    int sig = WTERMSIG(st);
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core); /* our core would say nothing about the program */
    signal(sig, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    raise(sig);
  }
  _exit(SETUP_FAILED);
}

static void on_signal(int sig) { (void)sig; }

/* Blocks every signal (they are taken with sigwaitinfo) and gives each a handler: a namespace's init drops signals that have none. */
static void take_signals(sigset_t *all) {
  sigfillset(all);
  sigprocmask(SIG_BLOCK, all, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    sigaction(sig, &sa, NULL);
  }
}

/* The program's process: default signal handling, then exec. */
static void run_program(char **argv) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    sigaction(sig, &sa, NULL);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  execvp(argv[0], argv);
  int e = errno;
  fprintf(stderr, "vipnat-init: cannot run %s: %s\n", argv[0], strerror(e));
  _exit(e == ENOENT ? 127 : 126);
}

/* I: pid 1 of the session's PID namespace. */
static void run_init(char **argv, int status_fd, int life_fd) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("prctl(PR_SET_PDEATHSIG)");
  /* H may have died before the line above: its end of the lifeline is then closed. */
  struct pollfd pf = {life_fd, 0, 0};
  if (poll(&pf, 1, 0) > 0 && (pf.revents & (POLLHUP | POLLERR))) _exit(SETUP_FAILED);
  sigset_t all;
  take_signals(&all);
  pid_t p = fork();
  if (p < 0) die("fork");
  if (p == 0) {
    close(status_fd);
    close(life_fd);
    run_program(argv);
  }
  char forked = MSG_FORKED;
  full_write(status_fd, &forked, 1);
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&all, &si);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      if (forwarded(sig)) kill(p, sig);
      continue;
    }
    /* Reap every child: P, and orphans the namespace handed to us. */
    for (;;) {
      int st;
      pid_t w = waitpid(-1, &st, WNOHANG);
      if (w <= 0) break;
      if (w == p) {
        char msg[1 + sizeof(int)];
        msg[0] = MSG_STATUS;
        memcpy(msg + 1, &st, sizeof st);
        full_write(status_fd, msg, sizeof msg);
        /* Our exit ends the namespace: whatever P left running dies with it (a logoff). */
        _exit(0);
      }
    }
  }
}

/* --join: P is H's own child, in the joined namespace; H forwards signals to it and ends as it does. */
static void run_joined(char **argv, long target, int pid_fd) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/ns/pid", target);
  int ns = open(path, O_RDONLY | O_CLOEXEC);
  if (ns < 0) die("open the session's PID namespace");
  if (setns(ns, CLONE_NEWPID) < 0) die("setns(CLONE_NEWPID)");
  close(ns);
  sigset_t all;
  take_signals(&all);
  pid_t p = fork();
  if (p < 0) die("fork into the session's PID namespace");
  if (p == 0) {
    if (pid_fd >= 0) close(pid_fd);
    run_program(argv);
  }
  if (pid_fd >= 0) {
    char line[32];
    int n = snprintf(line, sizeof line, "%ld\n", (long)p);
    full_write(pid_fd, line, (size_t)n);
    close(pid_fd);
  }
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&all, &si);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      if (forwarded(sig)) kill(p, sig);
      continue;
    }
    int st;
    if (waitpid(p, &st, WNOHANG) == p) mirror(st);
  }
}

/* Writes P's pid as vipnat sees it: the only child of I. */
static void report_pid(int fd, pid_t init) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)init, (int)init);
  char line[32] = "";
  FILE *f = fopen(path, "r");
  long pid = 0;
  if (f) {
    if (fscanf(f, "%ld", &pid) != 1) pid = 0;
    fclose(f);
  }
  int n = snprintf(line, sizeof line, "%ld\n", pid);
  full_write(fd, line, (size_t)n);
  close(fd);
}

int main(int argc, char **argv) {
  long parent = -1, join = -1;
  int pid_fd = -1;
  int i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    } else if (strcmp(argv[i], "--parent") == 0 && i + 1 < argc) {
      parent = strtol(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--pid-fd") == 0 && i + 1 < argc) {
      pid_fd = (int)strtol(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--join") == 0 && i + 1 < argc) {
      join = strtol(argv[++i], NULL, 10);
    } else {
      fprintf(stderr, "vipnat-init: unknown argument %s\nusage: vipnat-init [--parent PID] [--pid-fd FD] [--join PID] -- PROGRAM [ARGS...]\n", argv[i]);
      return SETUP_FAILED;
    }
  }
  if (i >= argc) {
    fprintf(stderr, "vipnat-init: no PROGRAM given\n");
    return SETUP_FAILED;
  }
  char **program = argv + i;
  if (pid_fd >= 0) fcntl(pid_fd, F_SETFD, FD_CLOEXEC);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("prctl(PR_SET_PDEATHSIG)");
  if (parent > 0 && getppid() != (pid_t)parent) _exit(SETUP_FAILED);
  if (join > 0) run_joined(program, join, pid_fd);

  int status[2], life[2];
  if (pipe2(status, O_CLOEXEC) < 0 || pipe2(life, O_CLOEXEC) < 0) die("pipe2");
  if (unshare(CLONE_NEWPID) < 0) die("unshare(CLONE_NEWPID)");
  sigset_t all;
  take_signals(&all);
  pid_t init = fork();
  if (init < 0) die("fork");
  if (init == 0) {
    close(status[0]);
    close(life[1]);
    if (pid_fd >= 0) close(pid_fd);
    run_init(program, status[1], life[0]);
  }
  close(status[1]);
  close(life[0]);

  char kind = 0;
  if (full_read(status[0], &kind, 1) == 0 && kind == MSG_FORKED && pid_fd >= 0) report_pid(pid_fd, init);
  else if (pid_fd >= 0) close(pid_fd);
  /* The status arrives once I sees P end; I exits right after. */
  fcntl(status[0], F_SETFL, O_NONBLOCK);
  int have = 0, pst = 0;
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&all, &si);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      if (forwarded(sig)) kill(init, sig);
      continue;
    }
    int st;
    pid_t w = waitpid(init, &st, WNOHANG);
    if (w != init) continue;
    char msg[1 + sizeof(int)];
    fcntl(status[0], F_SETFL, 0);
    if (full_read(status[0], msg, sizeof msg) == 0 && msg[0] == MSG_STATUS) {
      memcpy(&pst, msg + 1, sizeof pst);
      have = 1;
    }
    mirror(have ? pst : st);
  }
}
