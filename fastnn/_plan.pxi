# Kernel calls as data, and plans: captured sequences of them replayed with one Python call
# (included by _core.pyx).
#
# Every forward kernel function of this module checks its arguments, fills an _op (the C call
# with its pointers and sizes) and hands it to _exec. Normally _exec runs it at once. While the
# calling thread captures into a Plan, _exec appends it to the plan instead (keeping the arrays it
# points into alive), so a plan holds exactly the calls, already checked, that the same Python
# code would have made; Plan.run() then makes them all in one nogil loop. Small-batch inference
# costs a few microseconds of Python per kernel call otherwise (argument conversion and checks),
# as much as the kernels themselves at batch 1.
#
# The capture flag is a C thread-local, so other threads keep running kernels while one captures.
# Kernel functions that cannot be captured refuse to run while their thread captures, instead of
# running at capture time. The backward kernels of Dense-type models and the fused losses can be
# captured too (training step plans, fastnn/_step_plan.py); a loss writes its value into one of
# the plan's result slots (read with Plan.result) and returns NaN while captured.
from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport int32_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy, strcmp

cdef extern from *:
    """
    #if defined(_MSC_VER)
    static __declspec(thread) void *fnn_plan_capturing = NULL;
    #else
    static __thread void *fnn_plan_capturing = NULL;
    #endif
    """
    void *fnn_plan_capturing


cdef enum:
    _OP_GEMM = 1
    _OP_ACT = 2
    _OP_SOFTMAX = 3
    _OP_CONV = 4
    _OP_MAXPOOL = 5
    _OP_AVGPOOL = 6
    _OP_RECURRENT = 7
    _OP_BATCHNORM = 20                    # fastnn/_norm.pxi: m outer, n channels, k inner, alpha eps
    _OP_EMBED = 32                           # fastnn/_embed.pxi: m indices, k rows, n columns
    _OP_GEMM_BF16 = 40                       # fastnn/_bf16.pxi: a GEMM with bf16 inputs (float32 C)
    _OP_ROUND_BF16 = 41                      # fastnn/_bf16.pxi: n values rounded to bf16
    # training-step kinds, one contiguous range (_run tells them apart by it)
    _OP_BIAS_GRAD = 50                    # m rows, n columns, flags: accumulate
    _OP_ACT_BWD = 51                      # a: y, b: dy, out: dx
    _OP_SOFTMAX_BWD = 52
    _OP_MUL = 53
    _OP_XENT = 54                         # m rows, n classes, alpha scale, b labels or d one-hot,
    #                                       c weights, out grad, idx prob, ws the double result
    _OP_BCE = 55                          # n elements, k columns per weight; as _OP_XENT
    _OP_MSE = 56
    _OP_DROPOUT = 57                      # n, alpha rate, seed, offset, out y, idx mask
    _OP_CONV_BWD = 58                     # a x, b w, d y (relu), e dy, out dw, c db, idx dx, code bf16
    _OP_MAXPOOL_BWD = 59                  # a dy, idx argmax, out dx
    _OP_AVGPOOL_BWD = 60                  # a dy, out dx
    _OP_SGD = 61                          # optimizer updates: n, alpha lr, t step (set_step moves
    _OP_ADAM = 62                         # both), a grad, out param, hyper and flags per kernel,
    _OP_RMSPROP = 63                      # state buffers in d, e, ws (see the bindings)
    _OP_BN_TRAIN = 64                     # m outer, n channels, k inner, alpha eps, beta momentum
    _OP_BN_BWD = 65                       # (the pointer slots of these: see their bindings)
    _OP_RNN_BWD = 66                      # code cell, m batch, t steps, n features, h units
    _OP_EMBED_BWD = 67                    # m indices, k rows, n columns
    _OP_TABLE_FWD = 68                    # recurrent on an embedding table: k rows, lda its stride
    _OP_TABLE_BWD = 69
    _OP_FLIP = 70                         # random streams (as _OP_DROPOUT): m, n, k, t = n, c, h, w,
    _OP_TRANSLATE = 71                    # code flags or adjoint, h, lda the largest shifts, alpha fill
    _OP_NOISE = 72                        # n, alpha stddev


cdef enum:
    _N_RESULTS = 4                        # result slots of a plan

cdef struct _op:
    int kind, f64, flags, code, n_threads
    int64_t m, n, k, lda, ldb, ldc, ws_len   # GEMM sizes; n: elements (ACT), columns (SOFTMAX)
    int64_t t, h                             # RECURRENT: batch m, steps t, features n, units h
    uint64_t seed, offset                    # a random stream's (_seeded kinds; set_offset moves it)
    double alpha, beta
    double hyper[3]                          # optimizer hyper-parameters beyond alpha and beta
    const void *a
    const void *b
    const void *c                            # the bias (GEMM, CONV, RECURRENT b_x)
    const void *d                            # RECURRENT: W_h
    const void *e                            # RECURRENT: b_h
    void *out
    void *ws
    void *idx
    c.fnn_conv2d_shape conv
    c.fnn_pool2d_shape pool
    void *ext[3]                             # pointers beyond a..idx (training kinds with many arrays)


cdef int _run_train(const _op *o, floating *tag) noexcept nogil:
    """The training-step kinds (_OP_BIAS_GRAD.._OP_NOISE); tag only selects the type."""
    cdef const floating *a = <const floating *>o.a
    cdef const floating *b = <const floating *>o.b
    cdef const floating *w = <const floating *>o.c
    cdef floating *out = <floating *>o.out
    cdef floating *prob = <floating *>o.idx
    cdef floating loss = 0
    cdef int status = c.FNN_ERR_ARG
    if o.kind == _OP_BIAS_GRAD:
        if floating is float:
            return c.fnn_bias_grad_f32(o.flags, o.m, o.n, a, out, o.n_threads)
        return c.fnn_bias_grad_f64(o.flags, o.m, o.n, a, out, o.n_threads)
    if o.kind == _OP_ACT_BWD:
        if floating is float:
            return c.fnn_act_bwd_f32(o.code, o.n, <float>o.alpha, a, b, out, o.n_threads)
        return c.fnn_act_bwd_f64(o.code, o.n, o.alpha, a, b, out, o.n_threads)
    if o.kind == _OP_SOFTMAX_BWD:
        if floating is float:
            return c.fnn_softmax_bwd_f32(o.m, o.n, a, b, out, o.n_threads)
        return c.fnn_softmax_bwd_f64(o.m, o.n, a, b, out, o.n_threads)
    if o.kind == _OP_MUL:
        if floating is float:
            return c.fnn_mul_f32(o.n, a, b, out, o.n_threads)
        return c.fnn_mul_f64(o.n, a, b, out, o.n_threads)
    if o.kind == _OP_CONV_BWD:
        if floating is float:
            if o.code:
                return c.fnn_conv2d_bwd_bf16(o.flags, &o.conv, a, b, <const float *>o.d, <const float *>o.e, out,
                                             <float *>o.c, prob, <float *>o.ws, o.ws_len, o.n_threads)
            return c.fnn_conv2d_bwd_f32(o.flags, &o.conv, a, b, <const float *>o.d, <const float *>o.e, out,
                                        <float *>o.c, prob, <float *>o.ws, o.ws_len, o.n_threads)
        return c.fnn_conv2d_bwd_f64(o.flags, &o.conv, a, b, <const double *>o.d, <const double *>o.e, out,
                                    <double *>o.c, prob, <double *>o.ws, o.ws_len, o.n_threads)
    if o.kind == _OP_MAXPOOL_BWD:
        if floating is float:
            return c.fnn_maxpool2d_bwd_f32(&o.pool, a, <const int32_t *>o.idx, out, o.n_threads)
        return c.fnn_maxpool2d_bwd_f64(&o.pool, a, <const int32_t *>o.idx, out, o.n_threads)
    if o.kind == _OP_AVGPOOL_BWD:
        if floating is float:
            return c.fnn_avgpool2d_bwd_f32(&o.pool, a, out, o.n_threads)
        return c.fnn_avgpool2d_bwd_f64(&o.pool, a, out, o.n_threads)
    if o.kind == _OP_SGD:
        if floating is float:
            return c.fnn_sgd_step_f32(o.flags, o.code, o.n, <float>o.alpha, <float>o.beta, <float>o.hyper[0], a,
                                      out, <float *>o.ws, o.n_threads)
        return c.fnn_sgd_step_f64(o.flags, o.code, o.n, o.alpha, o.beta, o.hyper[0], a, out, <double *>o.ws,
                                  o.n_threads)
    if o.kind == _OP_ADAM:
        if floating is float:
            return c.fnn_adam_step_f32(o.flags, o.t, o.n, <float>o.alpha, <float>o.beta, <float>o.hyper[0],
                                       <float>o.hyper[1], <float>o.hyper[2], a, out, <float *>o.d, <float *>o.e,
                                       o.n_threads)
        return c.fnn_adam_step_f64(o.flags, o.t, o.n, o.alpha, o.beta, o.hyper[0], o.hyper[1], o.hyper[2], a, out,
                                   <double *>o.d, <double *>o.e, o.n_threads)
    if o.kind == _OP_RMSPROP:
        if floating is float:
            return c.fnn_rmsprop_step_f32(o.flags, o.n, <float>o.alpha, <float>o.beta, <float>o.hyper[0],
                                          <float>o.hyper[1], <float>o.hyper[2], a, out, <float *>o.ws,
                                          <float *>o.d, <float *>o.e, o.n_threads)
        return c.fnn_rmsprop_step_f64(o.flags, o.n, o.alpha, o.beta, o.hyper[0], o.hyper[1], o.hyper[2], a, out,
                                      <double *>o.ws, <double *>o.d, <double *>o.e, o.n_threads)
    if o.kind == _OP_BN_TRAIN or o.kind == _OP_BN_BWD:
        return _run_norm(o, tag)
    if o.kind == _OP_EMBED_BWD:
        return _run_embed(o)
    if _OP_RNN_BWD == o.kind or _OP_TABLE_FWD <= o.kind <= _OP_TABLE_BWD:
        return _run_recurrent_train(o, tag)
    if o.kind == _OP_FLIP:
        if floating is float:
            return c.fnn_random_flip_f32(o.m, o.n, o.k, o.t, o.code, o.seed, o.offset, a, out, o.n_threads)
        return c.fnn_random_flip_f64(o.m, o.n, o.k, o.t, o.code, o.seed, o.offset, a, out, o.n_threads)
    if o.kind == _OP_TRANSLATE:
        if floating is float:
            return c.fnn_random_translate_f32(o.m, o.n, o.k, o.t, o.h, o.lda, o.seed, o.offset, o.code,
                                              <float>o.alpha, a, out, o.n_threads)
        return c.fnn_random_translate_f64(o.m, o.n, o.k, o.t, o.h, o.lda, o.seed, o.offset, o.code, o.alpha, a,
                                          out, o.n_threads)
    if o.kind == _OP_NOISE:
        if floating is float:
            return c.fnn_gaussian_noise_f32(o.n, o.alpha, o.seed, o.offset, a, out, o.n_threads)
        return c.fnn_gaussian_noise_f64(o.n, o.alpha, o.seed, o.offset, a, out, o.n_threads)
    if o.kind == _OP_DROPOUT:
        if floating is float:
            return c.fnn_dropout_fwd_f32(o.n, o.alpha, o.seed, o.offset, a, out, prob, o.n_threads)
        return c.fnn_dropout_fwd_f64(o.n, o.alpha, o.seed, o.offset, a, out, prob, o.n_threads)
    if o.kind == _OP_XENT:
        if floating is float:
            status = c.fnn_softmax_xent_f32(o.m, o.n, <float>o.alpha, a, <const int64_t *>o.b,
                                            <const float *>o.d, w, &loss, out, prob, o.n_threads)
        else:
            status = c.fnn_softmax_xent_f64(o.m, o.n, o.alpha, a, <const int64_t *>o.b, <const double *>o.d, w,
                                            &loss, out, prob, o.n_threads)
    elif o.kind == _OP_BCE:
        if floating is float:
            status = c.fnn_sigmoid_bce_f32(o.n, o.k, <float>o.alpha, a, b, w, &loss, out, prob, o.n_threads)
        else:
            status = c.fnn_sigmoid_bce_f64(o.n, o.k, o.alpha, a, b, w, &loss, out, prob, o.n_threads)
    elif o.kind == _OP_MSE:
        if floating is float:
            status = c.fnn_mse_f32(o.n, o.k, <float>o.alpha, a, b, w, &loss, out, o.n_threads)
        else:
            status = c.fnn_mse_f64(o.n, o.k, o.alpha, a, b, w, &loss, out, o.n_threads)
    else:
        return c.FNN_ERR_ARG
    (<double *>o.ws)[0] = loss         # the loss kinds' result slot
    return status


cdef int _run_f32(const _op *o) noexcept nogil:
    cdef const float *a = <const float *>o.a
    cdef const float *b = <const float *>o.b
    cdef const float *bias = <const float *>o.c
    cdef const float *d = <const float *>o.d
    cdef const float *e = <const float *>o.e
    cdef float *out = <float *>o.out
    cdef float *ws = <float *>o.ws
    if o.kind == _OP_EMBED:
        return _run_embed(o)
    if o.kind == _OP_ROUND_BF16:
        return c.fnn_round_bf16_f32(o.n, a, out, o.n_threads)
    if o.kind == _OP_GEMM_BF16:
        return c.fnn_gemm_bf16(o.flags, o.m, o.n, o.k, <float>o.alpha, <float>o.beta, o.a, o.lda, o.b, o.ldb,
                               bias, out, o.ldc, o.n_threads)
    if o.kind == _OP_GEMM:
        return c.fnn_gemm_f32(o.flags, o.m, o.n, o.k, <float>o.alpha, <float>o.beta, a, o.lda, b, o.ldb, bias,
                              out, o.ldc, o.n_threads)
    if o.kind == _OP_ACT:
        return c.fnn_act_fwd_f32(o.code, o.n, <float>o.alpha, a, out, o.n_threads)
    if o.kind == _OP_SOFTMAX:
        return c.fnn_softmax_fwd_f32(o.m, o.n, a, out, o.n_threads)
    if o.kind == _OP_CONV:
        if o.code:      # "mixed_bfloat16": products by the bf16 GEMM
            return c.fnn_conv2d_fwd_bf16(o.flags, &o.conv, a, b, bias, out, ws, o.ws_len, o.n_threads)
        return c.fnn_conv2d_fwd_f32(o.flags, &o.conv, a, b, bias, out, ws, o.ws_len, o.n_threads)
    if o.kind == _OP_MAXPOOL:
        return c.fnn_maxpool2d_fwd_f32(&o.pool, a, out, <int32_t *>o.idx, o.n_threads)
    if o.kind == _OP_AVGPOOL:
        return c.fnn_avgpool2d_fwd_f32(&o.pool, a, out, o.n_threads)
    if o.kind == _OP_RECURRENT:
        if o.code == 0:
            return c.fnn_rnn_fwd_f32(o.flags, o.m, o.t, o.n, o.h, a, b, d, bias, e, out, ws,
                                     o.n_threads)
        if o.code == 1:
            return c.fnn_lstm_fwd_f32(o.flags, o.m, o.t, o.n, o.h, a, b, d, bias, e, out, ws,
                                      o.n_threads)
        return c.fnn_gru_fwd_f32(o.flags, o.m, o.t, o.n, o.h, a, b, d, bias, e, out, ws,
                                 o.n_threads)
    if o.kind == _OP_BATCHNORM:
        return c.fnn_batchnorm_fwd_infer_f32(o.m, o.n, o.k, <float>o.alpha, a, b, bias, d, e, out, o.n_threads)
    return c.FNN_ERR_ARG


cdef int _run_f64(const _op *o) noexcept nogil:
    cdef const double *a = <const double *>o.a
    cdef const double *b = <const double *>o.b
    cdef const double *bias = <const double *>o.c
    cdef const double *d = <const double *>o.d
    cdef const double *e = <const double *>o.e
    cdef double *out = <double *>o.out
    cdef double *ws = <double *>o.ws
    if o.kind == _OP_EMBED:
        return _run_embed(o)
    if o.kind == _OP_GEMM:
        return c.fnn_gemm_f64(o.flags, o.m, o.n, o.k, o.alpha, o.beta, a, o.lda, b, o.ldb, bias, out, o.ldc,
                              o.n_threads)
    if o.kind == _OP_ACT:
        return c.fnn_act_fwd_f64(o.code, o.n, o.alpha, a, out, o.n_threads)
    if o.kind == _OP_SOFTMAX:
        return c.fnn_softmax_fwd_f64(o.m, o.n, a, out, o.n_threads)
    if o.kind == _OP_CONV:
        return c.fnn_conv2d_fwd_f64(o.flags, &o.conv, a, b, bias, out, ws, o.ws_len, o.n_threads)
    if o.kind == _OP_MAXPOOL:
        return c.fnn_maxpool2d_fwd_f64(&o.pool, a, out, <int32_t *>o.idx, o.n_threads)
    if o.kind == _OP_AVGPOOL:
        return c.fnn_avgpool2d_fwd_f64(&o.pool, a, out, o.n_threads)
    if o.kind == _OP_RECURRENT:
        if o.code == 0:
            return c.fnn_rnn_fwd_f64(o.flags, o.m, o.t, o.n, o.h, a, b, d, bias, e, out, ws,
                                     o.n_threads)
        if o.code == 1:
            return c.fnn_lstm_fwd_f64(o.flags, o.m, o.t, o.n, o.h, a, b, d, bias, e, out, ws,
                                      o.n_threads)
        return c.fnn_gru_fwd_f64(o.flags, o.m, o.t, o.n, o.h, a, b, d, bias, e, out, ws,
                                 o.n_threads)
    if o.kind == _OP_BATCHNORM:
        return c.fnn_batchnorm_fwd_infer_f64(o.m, o.n, o.k, o.alpha, a, b, bias, d, e, out, o.n_threads)
    return c.FNN_ERR_ARG


cdef inline bint _seeded(int kind) noexcept nogil:
    return kind == _OP_DROPOUT or _OP_FLIP <= kind <= _OP_NOISE


cdef inline int _run(const _op *o) noexcept nogil:
    if _OP_BIAS_GRAD <= o.kind <= _OP_NOISE:
        return _run_train(o, <double *>NULL) if o.f64 else _run_train(o, <float *>NULL)
    return _run_f64(o) if o.f64 else _run_f32(o)


cdef class Plan:
    """A captured sequence of checked kernel calls (see ``capture_begin``); ``run()`` makes them
    all, in order, in one call without the GIL. The plan keeps every array it writes or reads
    alive; whoever runs it must not run it from two threads at once (it writes its buffers)."""

    cdef _op *ops
    cdef Py_ssize_t n_ops, cap
    cdef list keep
    cdef object src, dst          # bound input and output arrays (bind)
    cdef void *src_ptr
    cdef Py_ssize_t src_len
    cdef bytes src_format
    cdef double results[_N_RESULTS]  # the values of result-returning kernels (losses), in call order
    cdef int n_results
    cdef list inputs              # bind_inputs: [(array, pointer, bytes, format), ...]

    def __cinit__(self):
        self.ops = NULL
        self.n_ops = self.cap = 0
        self.keep = []
        self.n_results = 0
        self.inputs = []

    def __dealloc__(self):
        free(self.ops)

    def __len__(self):
        return self.n_ops

    cdef int push(self, const _op *o, tuple arrays) except -1:
        cdef Py_ssize_t cap
        cdef _op *grown
        if self.n_ops == self.cap:
            cap = 8 if self.cap == 0 else 2 * self.cap
            grown = <_op *>realloc(self.ops, cap * sizeof(_op))
            if grown == NULL:
                raise MemoryError("plan: out of memory")
            self.ops, self.cap = grown, cap
        memcpy(&self.ops[self.n_ops], o, sizeof(_op))
        self.n_ops += 1
        self.keep.append(arrays)
        return 0

    def run(self):
        """Make every captured kernel call, in order."""
        cdef Py_ssize_t i
        cdef int status = c.FNN_OK
        with nogil:
            for i in range(self.n_ops):
                status = _run(&self.ops[i])
                if status != c.FNN_OK:
                    break
        _check(status)

    @property
    def n_results(self):
        """How many result slots the captured calls fill."""
        return self.n_results

    def result(self, int i):
        """The value result slot i got in the last run (the i-th captured loss)."""
        if not 0 <= i < self.n_results:
            raise IndexError(f"plan: no result slot {i} (it has {self.n_results})")
        return self.results[i]

    def seeded_ops(self):
        """[(index, seed), ...] of the calls that draw from a random stream (Dropout and
        augmentation), in call order."""
        return [(i, self.ops[i].seed) for i in range(self.n_ops) if _seeded(self.ops[i].kind)]

    def set_offset(self, Py_ssize_t i, uint64_t offset):
        """Set the stream offset of seeded call i (each step draws new numbers)."""
        if not 0 <= i < self.n_ops or not _seeded(self.ops[i].kind):
            raise IndexError(f"plan: call {i} draws no random numbers")
        self.ops[i].offset = offset

    def set_step(self, Py_ssize_t i, int64_t t, double lr):
        """Set the step number t (Adam's bias correction) and learning rate of optimizer call i."""
        if not 0 <= i < self.n_ops or not _OP_SGD <= self.ops[i].kind <= _OP_RMSPROP:
            raise IndexError(f"plan: call {i} is no optimizer update")
        if t < 1:
            raise ValueError(f"plan: expected a step >= 1, got {t}")
        self.ops[i].t, self.ops[i].alpha = t, lr

    def bind_inputs(self, *arrays):
        """Name the arrays (C-contiguous, writable) the calls read as the plan's inputs, for
        ``load``."""
        cdef Py_buffer view
        inputs = []
        for a in arrays:
            PyObject_GetBuffer(a, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
            try:
                if view.readonly:
                    raise ValueError("plan input buffer: expected a writable array")
                inputs.append((a, <size_t>view.buf, view.len, view.format))
            finally:
                PyBuffer_Release(&view)
        self.inputs = inputs

    def load(self, *arrays):
        """Copy each array (C-contiguous, of its bound input's size and format) into its bound
        input, unless it is that memory already."""
        cdef Py_buffer view
        cdef size_t ptr
        cdef Py_ssize_t size
        cdef bytes fmt
        if len(arrays) != len(self.inputs):
            raise ValueError(f"plan: expected {len(self.inputs)} inputs, got {len(arrays)}")
        for a, (_, ptr, size, fmt) in zip(arrays, self.inputs):
            PyObject_GetBuffer(a, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
            try:
                if view.len != size or view.format == NULL or strcmp(view.format, fmt) != 0:
                    raise ValueError(f"plan: expected an input of {size} bytes of format {fmt!r}")
                if <size_t>view.buf != ptr:
                    memcpy(<void *>ptr, view.buf, size)
            finally:
                PyBuffer_Release(&view)

    def bind(self, src, dst):
        """Name the plan's input buffer src (a C-contiguous writable array the calls read) and
        output dst, for ``call``."""
        cdef Py_buffer view
        PyObject_GetBuffer(src, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
        try:
            if view.readonly:
                raise ValueError("plan input buffer: expected a writable array")
            self.src_ptr, self.src_len, self.src_format = view.buf, view.len, view.format
        finally:
            PyBuffer_Release(&view)
        self.src, self.dst = src, dst

    def call(self, x):
        """Copy x (C-contiguous, of the bound input's size and type) into the bound input, run
        the calls, return a copy of the bound output: a whole inference in one Python call."""
        cdef Py_buffer view
        if self.src is None:
            raise RuntimeError("plan: call() before bind()")
        PyObject_GetBuffer(x, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
        try:
            if view.len != self.src_len or view.format == NULL or strcmp(view.format, self.src_format) != 0:
                raise ValueError(f"plan: expected an input of {self.src_len} bytes of format "
                                 f"{self.src_format.decode()!r}")
            memcpy(self.src_ptr, view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
        self.run()
        return self.dst.copy()


def capture_begin(Plan plan):
    """From now on, this thread's forward kernel calls append to plan instead of running (and the
    other kernel functions refuse to run) until capture_end()."""
    global fnn_plan_capturing
    if fnn_plan_capturing != NULL:
        raise RuntimeError("plan: this thread is already capturing")
    fnn_plan_capturing = <void *>plan


def capture_end():
    global fnn_plan_capturing
    fnn_plan_capturing = NULL


cdef int _exec(_op *o, tuple arrays) except -1:
    """Run o now, or append it to the plan this thread captures into (arrays: what it points into)."""
    if fnn_plan_capturing != NULL:
        return (<Plan>fnn_plan_capturing).push(o, arrays)
    cdef int status
    with nogil:
        status = _run(o)
    return _check(status)


cdef double *_result_slot(double *local) except NULL:
    """Where a result-returning kernel call writes its value: local when it runs now, the next
    result slot of the plan this thread captures into otherwise."""
    if fnn_plan_capturing == NULL:
        return local
    cdef Plan plan = <Plan>fnn_plan_capturing
    if plan.n_results == _N_RESULTS:
        raise RuntimeError(f"plan: more than {_N_RESULTS} result-returning calls")
    plan.n_results += 1
    return &plan.results[plan.n_results - 1]


cdef inline object _result(double value):
    """A result-returning binding's return value: NaN while captured (the value comes later)."""
    return float("nan") if fnn_plan_capturing != NULL else value


cdef inline int _no_capture(str what) except -1:
    if fnn_plan_capturing != NULL:
        raise RuntimeError(f"{what} cannot be captured into a plan (only forward kernels can)")
    return 0
