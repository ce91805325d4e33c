/* top.c -- `poolctl top`: a live full-screen view of a pool on a terminal:
 * the pool's lines, busy workers and waiting clients over time as
 * sparklines, latency percentiles from the pool's histograms, and the
 * worker table.  Raw keyboard mode on the alternate screen; q or Ctrl-C
 * (or SIGINT/SIGTERM/SIGHUP) leaves with the terminal as it was. */
#include "poolctl.h"

#include <errno.h>
#include <getopt.h>
#include <langinfo.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define TOP_STATUS_MS 10000
#define HISTORY 512

static volatile sig_atomic_t got_quit, got_winch;

static void on_quit(int sig) {
  (void)sig;
  got_quit = 1;
}

static void on_winch(int sig) {
  (void)sig;
  got_winch = 1;
}

typedef struct top {
  pc_conn_t conn;
  struct termios saved;
  int raw;
  int utf8;
  int color;
  int rows, cols;
  /* busy workers and waiters at each refresh, oldest first */
  int busy[HISTORY], waiters[HISTORY];
  int nhist;
  pc_cpu_t prev, cur;
  int have_prev;
  json_int_t last_requests;
  uint64_t last_at_ms;
  double rate;
} top_t;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* -------------------------------------------------------------- terminal */

static void term_size(top_t *t) {
  struct winsize ws;

  t->rows = 24;
  t->cols = 80;
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 &&
      ws.ws_col > 0) {
    t->rows = ws.ws_row;
    t->cols = ws.ws_col;
  }
}

static int term_enter(top_t *t) {
  struct termios raw;

  if (tcgetattr(STDIN_FILENO, &t->saved) != 0) {
    pc_err("top: cannot read the terminal's mode: %s", strerror(errno));
    return -1;
  }
  raw = t->saved;
  /* Keys one at a time, unechoed; Ctrl-C arrives as a key (ISIG off) so it
   * leaves the same clean way as q.  Output processing stays on. */
  raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO | ISIG | IEXTEN);
  raw.c_iflag &= ~(tcflag_t)(IXON | ICRNL);
  raw.c_cc[VMIN] = 0;
  raw.c_cc[VTIME] = 0;
  if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) != 0) {
    pc_err("top: cannot set the terminal's mode: %s", strerror(errno));
    return -1;
  }
  t->raw = 1;
  /* The alternate screen, cursor hidden. */
  fputs("\033[?1049h\033[?25l\033[H\033[2J", stdout);
  fflush(stdout);
  return 0;
}

static void term_leave(top_t *t) {
  if (!t->raw)
    return;
  fputs("\033[?25h\033[?1049l", stdout);
  fflush(stdout);
  tcsetattr(STDIN_FILENO, TCSAFLUSH, &t->saved);
  t->raw = 0;
}

/* ------------------------------------------------------------------ frame */

/* Write one line of at most cols visible characters (escape sequences and
 * UTF-8 continuation bytes take no column), then clear to its end. */
static void put_line(top_t *t, const char *s, size_t n) {
  int col = 0;
  size_t i = 0, start;

  while (i < n) {
    if (s[i] == '\033') {
      start = i++;
      while (i < n &&
             !((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')))
        i++;
      if (i < n)
        i++;
      fwrite(s + start, 1, i - start, stdout);
      continue;
    }
    if (((unsigned char)s[i] & 0xc0) != 0x80) {
      if (col >= t->cols)
        break;
      col++;
    }
    fputc(s[i++], stdout);
  }
  if (t->color)
    fputs(PC_RESET, stdout);
  fputs("\033[K\r\n", stdout);
}

static void sparkline(top_t *t, FILE *f, const char *label, const int *v,
                      int n) {
  static const char *blocks[] = {"\xe2\x96\x81", "\xe2\x96\x82", "\xe2\x96\x83",
                                 "\xe2\x96\x84", "\xe2\x96\x85", "\xe2\x96\x86",
                                 "\xe2\x96\x87", "\xe2\x96\x88"};
  static const char ascii[] = "_.-~=+*#";
  int width = t->cols - 24, max = 1, i, k;

  if (width < 8)
    width = 8;
  if (n > width) {
    v += n - width;
    n = width;
  }
  for (i = 0; i < n; i++)
    if (v[i] > max)
      max = v[i];
  fprintf(f, "%-8s %4d max %4d ", label, n ? v[n - 1] : 0, max);
  for (i = 0; i < n; i++) {
    k = v[i] == 0 ? -1 : (v[i] * 8 - 1) / max;
    if (k < 0)
      fputc(' ', f);
    else if (t->utf8)
      fputs(blocks[k > 7 ? 7 : k], f);
    else
      fputc(ascii[k > 7 ? 7 : k], f);
  }
  fputc('\n', f);
}

static void latency_row(FILE *f, json_t *st, const char *key,
                        const char *label) {
  char p50[16], p90[16], p99[16], max[16];
  pp_histogram_t h;

  if (pc_histogram(json_object_get(st, key), &h) != 0) {
    fprintf(f, "%-15s %8s\n", label, "-");
    return;
  }
  pc_fmt_us(pp_histogram_quantile_us(&h, 0.5), p50, sizeof(p50));
  pc_fmt_us(pp_histogram_quantile_us(&h, 0.9), p90, sizeof(p90));
  pc_fmt_us(pp_histogram_quantile_us(&h, 0.99), p99, sizeof(p99));
  pc_fmt_us(h.max_us, max, sizeof(max));
  fprintf(f, "%-15s %8llu %9s %9s %9s %9s\n", label,
          (unsigned long long)h.count, p50, p90, p99, max);
}

static void record(top_t *t, json_t *st) {
  uint64_t at = (uint64_t)pc_num(st, "uptime_ms");
  json_int_t req = pc_num(st, "requests");

  if (t->nhist == HISTORY) {
    memmove(t->busy, t->busy + 1, (HISTORY - 1) * sizeof(int));
    memmove(t->waiters, t->waiters + 1, (HISTORY - 1) * sizeof(int));
    t->nhist--;
  }
  t->busy[t->nhist] = (int)(pc_num(st, "busy") + pc_num(st, "leased"));
  t->waiters[t->nhist] = (int)pc_num(st, "waiters");
  t->nhist++;
  if (t->last_at_ms && at > t->last_at_ms && req >= t->last_requests)
    t->rate = (double)(req - t->last_requests) * 1000.0 /
              (double)(at - t->last_at_ms);
  t->last_requests = req;
  t->last_at_ms = at;
}

static int draw(top_t *t, json_t *st) {
  char *text = NULL, *p, *nl, now[16];
  size_t len = 0;
  int rows = 0, more = 0;
  time_t wall = time(NULL);
  FILE *f = open_memstream(&text, &len);

  if (f == NULL)
    return -1;
  strftime(now, sizeof(now), "%H:%M:%S", localtime(&wall));
  fprintf(f, "poolctl top  %s  %s  %.1f req/s   (q to quit)\n", t->conn.path,
          now, t->rate);
  pc_print_header(f, st, t->color);
  fputc('\n', f);
  sparkline(t, f, "lent", t->busy, t->nhist);
  sparkline(t, f, "waiting", t->waiters, t->nhist);
  fputc('\n', f);
  fprintf(f, "%-15s %8s %9s %9s %9s %9s\n", "LATENCY", "COUNT", "P50", "P90",
          "P99", "MAX");
  latency_row(f, st, "queue_wait", "queue wait");
  latency_row(f, st, "run_time", "run time");
  latency_row(f, st, "spawn_to_ready", "spawn to ready");
  fputc('\n', f);
  pc_print_workers(f, st, t->have_prev ? &t->prev : NULL, t->color);
  if (fclose(f) != 0) {
    free(text);
    return -1;
  }
  fputs("\033[H", stdout);
  for (p = text; p < text + len && *p; p = nl + 1) {
    nl = strchr(p, '\n');
    if (nl == NULL)
      nl = text + len;
    if (rows + 1 >= t->rows) {
      more++;
      if (nl >= text + len)
        break;
      continue;
    }
    put_line(t, p, (size_t)(nl - p));
    rows++;
  }
  if (more) {
    fprintf(stdout, "... %d more line%s (a taller terminal shows them)", more,
            more == 1 ? "" : "s");
    fputs("\033[K", stdout);
  }
  fputs("\033[J", stdout);
  fflush(stdout);
  free(text);
  return 0;
}

static int refresh(top_t *t) {
  json_t *reply = NULL, *st;
  pc_cpu_t tmp;
  int r;

  /* The terminal is ours: errors are printed after it is given back. */
  if ((r = pc_conn_simple(&t->conn, "status", TOP_STATUS_MS, &reply)) != 0)
    return r;
  st = json_object_get(reply, "status");
  record(t, st);
  if (pc_cpu_sample(&t->cur, st) != 0 || draw(t, st) != 0) {
    json_decref(reply);
    return PC_EXIT_ERROR;
  }
  tmp = t->prev;
  t->prev = t->cur;
  t->cur = tmp;
  t->have_prev = 1;
  json_decref(reply);
  return PC_EXIT_OK;
}

/* ------------------------------------------------------------------ main */

static void catch_signals(sigset_t *blocked, sigset_t *orig) {
  struct sigaction sa;

  memset(&sa, 0, sizeof(sa));
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_quit;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  sa.sa_handler = on_winch;
  sigaction(SIGWINCH, &sa, NULL);
  /* Blocked except inside ppoll, so none slips in between a check of the
   * flags and the wait. */
  sigemptyset(blocked);
  sigaddset(blocked, SIGINT);
  sigaddset(blocked, SIGTERM);
  sigaddset(blocked, SIGHUP);
  sigaddset(blocked, SIGWINCH);
  sigprocmask(SIG_BLOCK, blocked, orig);
}

int pc_top(const pc_command_t *cmd, int argc, char **argv,
           const pc_global_t *g) {
  static const struct option longopts[] = {
      {"interval", required_argument, NULL, 'i'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  long interval = 1000;
  int64_t next;
  sigset_t blocked, orig;
  struct pollfd p;
  struct timespec ts;
  char key[64];
  const char *cs;
  ssize_t n;
  top_t t;
  int c, r, i, quit = 0, lost = 0;

  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    switch (c) {
    case 'i':
      if ((r = pc_parse_interval(cmd, optarg, &interval)) != 0)
        return r;
      break;
    case 'h':
      pc_command_help(cmd, stdout);
      return PC_EXIT_OK;
    default:
      return pc_getopt_error(cmd, c, argv);
    }
  }
  if (optind < argc)
    return pc_usage_error(cmd, "top: unexpected argument '%s'", argv[optind]);
  if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
    pc_err("top needs a terminal; try `poolctl status --watch`");
    return PC_EXIT_ERROR;
  }
  if ((r = pc_target(g, path, sizeof(path))) != PC_EXIT_OK)
    return r;
  memset(&t, 0, sizeof(t));
  if ((r = pc_conn_open(path, &t.conn)) != PC_EXIT_OK)
    return r;
  setlocale(LC_CTYPE, "");
  cs = nl_langinfo(CODESET);
  t.utf8 = cs && strcmp(cs, "UTF-8") == 0;
  t.color = getenv("NO_COLOR") == NULL;
  term_size(&t);
  catch_signals(&blocked, &orig);
  if (term_enter(&t) != 0) {
    r = PC_EXIT_ERROR;
    goto out;
  }
  r = refresh(&t);
  lost = r != PC_EXIT_OK;
  next = now_ms() + interval;
  while (r == PC_EXIT_OK && !quit && !got_quit) {
    p.fd = STDIN_FILENO;
    p.events = POLLIN;
    ts.tv_sec = 0;
    ts.tv_nsec = 0;
    if (next > now_ms()) {
      ts.tv_sec = (next - now_ms()) / 1000;
      ts.tv_nsec = (long)((next - now_ms()) % 1000) * 1000000;
    }
    c = ppoll(&p, 1, &ts, &orig);
    if (c < 0 && errno != EINTR) {
      r = PC_EXIT_ERROR;
      break;
    }
    if (got_winch) {
      got_winch = 0;
      term_size(&t);
      fputs("\033[2J", stdout);
      next = 0;
    }
    if (c > 0 && (p.revents & POLLIN)) {
      n = read(STDIN_FILENO, key, sizeof(key));
      if (n <= 0) {
        quit = 1; /* the terminal went away */
        break;
      }
      for (i = 0; i < n; i++)
        if (key[i] == 'q' || key[i] == 'Q' || key[i] == 3 /* Ctrl-C */)
          quit = 1;
      next = 0; /* any other key: refresh now */
    } else if (c > 0) {
      quit = 1; /* POLLHUP on the terminal */
    }
    if (!quit && !got_quit && now_ms() >= next) {
      r = refresh(&t);
      lost = r != PC_EXIT_OK;
      next = now_ms() + interval;
    }
  }
out:
  term_leave(&t);
  sigprocmask(SIG_SETMASK, &orig, NULL);
  if (lost)
    pc_err("top: lost the pool at %s", path);
  pc_cpu_free(&t.prev);
  pc_cpu_free(&t.cur);
  pc_conn_close(&t.conn);
  return r;
}
