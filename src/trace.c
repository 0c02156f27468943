// SPDX-License-Identifier: GPL-2.0
/*
 * Defines nsvm's tracepoints (src/nsvm_trace.h) and, for each, the
 * rust_do_trace_<event>() that src/hw/trace.rs calls once the event's
 * static key says it is enabled.
 */
#define CREATE_TRACE_POINTS
#define CREATE_RUST_TRACE_POINTS
#include "nsvm_trace.h"
