/* sizes.c -- ppbench_sizes: prints sizeof() of the core's private
 * structures ("name bytes" per line), which ppbench reads to break its
 * memory figures down.  Reads pool/internal.h; changes nothing. */
#include "internal.h"

#include <stdio.h>

#define P(t) printf("%s %zu\n", #t, sizeof(t))

int main(void) {
  P(pp__proc_t);
  P(pp__slot_t);
  P(pp_lease_t);
  P(pp__waiter_t);
  P(pp_client_t);
  P(pp_pool_t);
  P(pp__linebuf_t);
  P(pp_diag_t);
  return 0;
}
