/*
 * redis_server.h — a real redis-server for a unit test: started in a temporary directory,
 * listening on a unix socket there (no TCP port to collide on), stopped by PID. Header-only,
 * for tests. A missing /usr/bin/redis-server fails the test with a message (scripts/setup.sh
 * test installs it).
 */
#ifndef SB_TEST_REDIS_SERVER_H
#define SB_TEST_REDIS_SERVER_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#define TEST_REDIS_BIN "/usr/bin/redis-server"

typedef struct test_redis {
  char dir[64];
  char sock[128];
  char url[160]; /* "unix:<sock>" */
  pid_t pid;
} test_redis;

static void test_redis_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Starts (or, with the same struct, restarts) the server; returns 0 once it answers PING. */
static int test_redis_start(test_redis *r) {
  if (access(TEST_REDIS_BIN, X_OK) != 0) {
    fprintf(stderr, "redis-server is missing (%s): run scripts/setup.sh test\n", TEST_REDIS_BIN);
    return -1;
  }
  if (!r->dir[0]) {
    snprintf(r->dir, sizeof(r->dir), "/tmp/sb-redis-XXXXXX");
    if (!mkdtemp(r->dir)) return -1;
    snprintf(r->sock, sizeof(r->sock), "%s/redis.sock", r->dir);
    snprintf(r->url, sizeof(r->url), "unix:%s", r->sock);
  }
  unlink(r->sock);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int devnull = open("/dev/null", 1);
    if (devnull >= 0) dup2(devnull, 1);
    execl(TEST_REDIS_BIN, TEST_REDIS_BIN, "--port", "0", "--unixsocket", r->sock,
          "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", r->dir,
          (char *)NULL);
    _exit(127);
  }
  r->pid = pid;
  for (int i = 0; i < 500; i++) {
    redisContext *c = redisConnectUnix(r->sock);
    if (c && !c->err) {
      redisReply *rep = redisCommand(c, "PING");
      int ok = rep && rep->type == REDIS_REPLY_STATUS;
      if (rep) freeReplyObject(rep);
      redisFree(c);
      if (ok) return 0;
    } else if (c) {
      redisFree(c);
    }
    test_redis_sleep_ms(10);
  }
  return -1;
}

/* A synchronous connection for the test's own checks (free with redisFree). */
static redisContext *test_redis_connect(const test_redis *r) {
  redisContext *c = redisConnectUnix(r->sock);
  if (c && c->err) {
    redisFree(c);
    return NULL;
  }
  return c;
}

static void test_redis_kill(test_redis *r, int sig) {
  if (r->pid <= 0) return;
  kill(r->pid, sig);
  if (sig == SIGKILL || sig == SIGTERM) {
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
  }
}

/* Stops the server and removes its directory. */
static void test_redis_stop(test_redis *r) {
  if (r->pid > 0) {
    kill(r->pid, SIGCONT);
    test_redis_kill(r, SIGKILL);
  }
  if (r->dir[0]) {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", r->dir);
    r->dir[0] = '\0';
  }
}

#endif
