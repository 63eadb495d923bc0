/* gil.h: which calls let other Python threads run. Included by the cffi
   module's preamble only (build_ffi.py), where Python.h is in scope; the core
   itself knows nothing of Python.

   cffi's wrapper around each C function releases the GIL for the call and
   takes it back after: two trips through the GIL's mutex and condition
   variable, about as much as the rest of a one-node call (an operator, a
   getter). Calls that touch one node, or read Python objects (rg_sweep,
   rg_probe, rg_list_item, rg_objects_hold and its probes: they must hold
   it, so that nothing they read changes or is freed), keep the GIL. Calls whose
   work grows with a graph, a batch or a list of parameters release it, those
   that know their size only from RG_RELEASE_AT up (below): each gets a
   wrapper that releases it around the call, and its name is defined to the
   wrapper's, so that cffi's code calls that.

   A call that keeps the GIL and finds the arena's lock taken (another
   thread's long call holds it) waits for it without the GIL (rg_blocking,
   set at import by rg_wait_without_gil), so that other Python threads run
   meanwhile. No thread holds the arena's lock while it waits for the GIL,
   so the two never deadlock.

   This relies on cffi's wrappers being called with the GIL and spelling
   its release with Py_BEGIN/END_ALLOW_THREADS, as cffi has since 0.3. A C
   function pointer taken from `lib` with ffi.addressof (private, as `lib`
   is) is called without the GIL, and one of these calls then stops the
   process; so would a cffi that released the GIL itself (every test that
   backpropagates would show it). */

#include "platform.h"

/* Set on a thread while a releasing call runs without the GIL (PyGILState_Check,
   which would tell, is not in the limited API cffi builds with). */
static RG_THREAD_LOCAL int released;

/* How many times these wrappers have let the GIL go (rg_gil_releases, for
   the tests). Counted with the GIL held. */
static int64_t releases;

/* A call releases the GIL only if it has this much work (items, or
   multiply-adds for a layer) or work of unknown size. A short release does
   harm: a thread that lets the GIL go for a moment and takes it straight
   back, more often than the GIL's switch interval (5 ms), keeps every other
   thread from running. A waiting thread asks the holder to let the GIL go
   only after a whole interval with no switch, and each such release counts
   as a switch, while the waiter, woken too late, rarely gets the GIL: a loop
   of operators whose young collections released the GIL for each batch of
   256 dead Values kept a thread that wakes every millisecond waiting up to
   177 ms. Below this size a call takes tens of microseconds at most, less
   than another thread needs to wake and run. */
#define RG_RELEASE_AT 16384

#define RG_RELEASING_WHEN(name, params, args, big)    \
    static int name##_releasing params                 \
    {                                                  \
        int rc;                                        \
        if (!(big)) return name args;                  \
        releases++;                                    \
        Py_BEGIN_ALLOW_THREADS                         \
        released = 1;                                  \
        rc = name args;                                \
        released = 0;                                  \
        Py_END_ALLOW_THREADS                           \
        return rc;                                     \
    }
#define RG_RELEASING(name, params, args) RG_RELEASING_WHEN(name, params, args, 1)

/* A layer's or an MLP's multiply-adds, capped at RG_RELEASE_AT. */
static int64_t layer_work(const int32_t *sizes, int32_t nlayers)
{
    int64_t work = 0;
    for (int32_t l = 0; l < nlayers && work < RG_RELEASE_AT; l++)
        work += (int64_t)sizes[l] * sizes[l + 1];
    return work;
}

RG_RELEASING_WHEN(rg_leaves, (const double *xs, int32_t n, const int32_t *hs), (xs, n, hs),
                  n >= RG_RELEASE_AT)
RG_RELEASING_WHEN(rg_layer, (const int32_t *w, const int32_t *b, const int32_t *x,
                             const double *xc, const uint8_t *xint, int32_t nin, int32_t nout,
                             int relu, const int32_t *out),
                  (w, b, x, xc, xint, nin, nout, relu, out),
                  (int64_t)nin * nout >= RG_RELEASE_AT)
RG_RELEASING_WHEN(rg_mlp, (const int32_t *w, const int32_t *b, const int32_t *sizes,
                           int32_t nlayers, const uint8_t *relu, const int32_t *x,
                           const double *xc, const uint8_t *xint, const int32_t *out),
                  (w, b, sizes, nlayers, relu, x, xc, xint, out),
                  layer_work(sizes, nlayers) >= RG_RELEASE_AT)
RG_RELEASING(rg_backward, (int32_t root), (root))
RG_RELEASING(rg_forward, (int32_t root), (root))
RG_RELEASING_WHEN(rg_get_many, (const int32_t *hs, int32_t n, int which, double *out),
                  (hs, n, which, out), n >= RG_RELEASE_AT)
RG_RELEASING_WHEN(rg_set_many, (const int32_t *hs, int32_t n, int which, const double *xs),
                  (hs, n, which, xs), n >= RG_RELEASE_AT)
RG_RELEASING_WHEN(rg_sgd_step, (const int32_t *params, int32_t n, double lr, double momentum,
                                double weight_decay, double *velocity, int first),
                  (params, n, lr, momentum, weight_decay, velocity, first), n >= RG_RELEASE_AT)
RG_RELEASING_WHEN(rg_adam_step, (const int32_t *params, int32_t n, double lr, double beta1,
                                 double beta2, double eps, double weight_decay, int64_t step,
                                 double *m, double *v),
                  (params, n, lr, beta1, beta2, eps, weight_decay, step, m, v),
                  n >= RG_RELEASE_AT)
RG_RELEASING(rg_reached, (int32_t root, const int32_t *hs, int32_t n, uint8_t *out),
             (root, hs, n, out))
RG_RELEASING(rg_tape, (int32_t root, int32_t *out, int32_t cap), (root, out, cap))
RG_RELEASING(rg_run, (const int32_t *tape, int32_t n, int32_t *pos, int backward, uint64_t *id),
             (tape, n, pos, backward, id))
/* force < 0: only frees the handles (the young collection's 256 at most) */
RG_RELEASING_WHEN(rg_collect, (const int32_t *dead, int32_t n, const int32_t *weak, int32_t m,
                               int force),
                  (dead, n, weak, m, force), force >= 0 || n >= RG_RELEASE_AT)
RG_RELEASING(rg_batch_new, (const int32_t *outs, int32_t nout, const int32_t *ins, int32_t nin,
                            rg_batch **made),
             (outs, nout, ins, nin, made))
RG_RELEASING(rg_batch_forward, (rg_batch *b, const double *rows, int64_t n, double *out,
                                int threads),
             (b, rows, n, out, threads))
RG_RELEASING(rg_batch_backward, (rg_batch *b, double scale, int threads), (b, scale, threads))
RG_RELEASING(rg_batch_input_grads, (rg_batch *b, double *out, int64_t rows), (b, out, rows))
RG_RELEASING(rg_grad_values, (const int32_t *outs, int32_t nout, const double *seeds,
                              const int32_t *ins, int32_t nin, double *result),
             (outs, nout, seeds, ins, nin, result))
RG_RELEASING(rg_grad_graph, (const int32_t *outs, int32_t nout, const int32_t *seeds,
                             const int32_t *ins, int32_t nin, const int32_t *out_h),
             (outs, nout, seeds, ins, nin, out_h))

#define rg_leaves rg_leaves_releasing
#define rg_layer rg_layer_releasing
#define rg_mlp rg_mlp_releasing
#define rg_backward rg_backward_releasing
#define rg_forward rg_forward_releasing
#define rg_get_many rg_get_many_releasing
#define rg_set_many rg_set_many_releasing
#define rg_sgd_step rg_sgd_step_releasing
#define rg_adam_step rg_adam_step_releasing
#define rg_reached rg_reached_releasing
#define rg_tape rg_tape_releasing
#define rg_run rg_run_releasing
#define rg_collect rg_collect_releasing
#define rg_batch_new rg_batch_new_releasing
#define rg_batch_forward rg_batch_forward_releasing
#define rg_batch_backward rg_batch_backward_releasing
#define rg_batch_input_grads rg_batch_input_grads_releasing
#define rg_grad_values rg_grad_values_releasing
#define rg_grad_graph rg_grad_graph_releasing

/* Waiting for the arena's lock (csrc/rgrad.c, lock_slow) without the GIL,
   when the waiting thread holds it. */
static void without_gil(void (*fn)(void *), void *arg)
{
    if (released) {
        fn(arg);
        return;
    }
    Py_BEGIN_ALLOW_THREADS
    fn(arg);
    Py_END_ALLOW_THREADS
}

void rg_wait_without_gil(void)
{
    rg_blocking = without_gil;
}

int64_t rg_gil_releases(void)
{
    return releases;
}

/* Every other call keeps the GIL: cffi's wrappers spell the release with
   these two macros. */
#undef Py_BEGIN_ALLOW_THREADS
#undef Py_END_ALLOW_THREADS
#define Py_BEGIN_ALLOW_THREADS {
#define Py_END_ALLOW_THREADS }
