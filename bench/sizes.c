/* sizes.c -- ppbench_sizes: prints sizeof() of the core's private
 * structures ("name bytes" per line), which ppbench reads to break its
 * memory figures down.  Reads pool/internal.h; changes nothing. */
#include "internal.h"

#include <stddef.h>
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
  P(uv_cond_t);
  P(pp_diag_t);
  /* The blocking face's condition variable is inside the waiter record
   * (not beside it on the caller's stack): its offset there. */
  printf("pp__waiter_t.u.cond %zu\n", offsetof(pp__waiter_t, u.cond));
  return 0;
}
