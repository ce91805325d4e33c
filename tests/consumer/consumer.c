/* consumer.c -- a program that uses an installed portpool: opens a pool of
 * one worker running the installed Python worker module and example
 * handlers, calls echo, and closes.  argv[1]: the installed python
 * directory (share/portpool/python); argv[2]: the interpreter.  With no
 * arguments it keeps the default worker.command, which the library finds
 * from its own place, and prints it. */
#include <portpool.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  pp_config_t *cfg = NULL;
  pp_pool_t *pool = NULL;
  pp_buf_t reply = {0};
  char cmd[4096];
  pp_diag_t diag;
  int r;

  if (argc != 3 && argc != 1) {
    fprintf(stderr, "usage: consumer [PYTHON_DIR INTERPRETER]\n");
    return 2;
  }
  memset(&diag, 0, sizeof(diag));
  printf("consumer: portpool %d.%d.%d, PP_ETIMEDOUT is \"%s\"\n",
         PP_VERSION_MAJOR, PP_VERSION_MINOR, PP_VERSION_PATCH,
         pp_strerror(PP_ETIMEDOUT));
  if ((r = pp_config_new(&cfg)) != 0 ||
      (r = pp_config_set(cfg, "size", "1", &diag)) != 0 ||
      /* CI runs this as root: its workers may be root too. */
      (r = pp_config_set(cfg, "worker.allow_root", "true", &diag)) != 0)
    goto fail;
  if (argc == 3) {
    snprintf(cmd, sizeof(cmd),
             "[\"%s\", \"%s/portpool_worker.py\", "
             "\"%s/example_handlers.py\"]",
             argv[2], argv[1], argv[1]);
    if ((r = pp_config_set(cfg, "worker.command", cmd, &diag)) != 0)
      goto fail;
  }
  if ((r = pp_config_get(cfg, "worker.command", cmd, sizeof(cmd))) != 0)
    goto fail;
  printf("consumer: worker.command: %s\n", cmd);
  if ((r = pp_pool_open(cfg, NULL, &pool, &diag)) != 0) {
  fail:
    fprintf(stderr, "consumer: %s: %s\n", pp_strerror(r), diag.message);
    pp_config_free(cfg);
    return 1;
  }
  pp_config_free(cfg);
  r = pp_call_cmd(pool, "echo", "{\"installed\": true}", &reply, -1, &diag);
  if (r != 0)
    fprintf(stderr, "consumer: call: %s: %s\n", pp_strerror(r), diag.message);
  else
    printf("consumer: echo -> %.*s\n", (int)reply.len, reply.data);
  pp_buf_free(&reply);
  pp_pool_close(pool);
  return r == 0 ? 0 : 1;
}
