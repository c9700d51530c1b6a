/* Built outside the tree against the installed library: starts a server on a free port,
 * checks that it is bound, shuts it down, and checks that the loop ends cleanly. */
#include <stdio.h>
#include <string.h>

#include <switchboard.h>
#include <uv.h>

static int shut;

static void on_shutdown(sb_server *s, void *user) {
  (void)s;
  (void)user;
  shut = 1;
}

int main(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  sb_server_options o;
  sb_server_options_init(&o);
  sb_server *s;
  int r = sb_server_new(&s, &loop, &o);
  if (r != 0) return fprintf(stderr, "new: %s\n", sb_strerror(r)), 1;
  r = sb_server_listen(s, "127.0.0.1", 0);
  if (r != 0) return fprintf(stderr, "listen: %s\n", sb_strerror(r)), 1;
  if (sb_server_port(s) <= 0) return fprintf(stderr, "no port\n"), 1;
  sb_server_shutdown(s, on_shutdown, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (!shut) return fprintf(stderr, "shutdown callback did not fire\n"), 1;
  if (sb_server_free(s) != 0) return fprintf(stderr, "free failed\n"), 1;
  if (uv_loop_close(&loop) != 0) return fprintf(stderr, "loop not clean\n"), 1;
  printf("consumer: listened on a free port and shut down cleanly\n");
  return 0;
}
