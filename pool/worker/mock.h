/* mock.h -- the mock adapter (mock.c), built on the public adapter API
 * (pp_adapter_t) alone.  Not installed. */
#ifndef PP_MOCK_H
#define PP_MOCK_H

#include "portpool.h"

/* The mock adapter's table, with `data` to be set to the pool's
 * pp_mock_t (or NULL). */
extern const pp_adapter_t pp__mock_adapter;

#endif
