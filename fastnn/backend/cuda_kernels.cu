// CUDA kernels of fastnn's CUDA backend (fastnn/backend/cuda.py), compiled at run time by
// CuPy's RawModule (NVRTC). Each kernel is a template body plus one extern "C" wrapper per
// type, named <kernel>_f32 / <kernel>_f64, so the names are plain and greppable.
//
// Rules that keep these kernels checkable without a GPU (tests/cuda_emu.py runs this file as
// C++ on the CPU, one thread after another): no shared memory, no __syncthreads, no warp
// intrinsics, no atomics. Every thread owns its outputs and computes them in a fixed order,
// so every result is also deterministic. Loops are grid-stride, so any launch size is right.
//
// The arithmetic follows the CPU kernels of csrc/ op for op (the backend compiles with
// --fmad=false so a*b+c is not contracted where the C code does not contract it either).

#define FNN_LOOP(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

template <typename T> __device__ T fnn_exp(T x);
template <> __device__ float fnn_exp<float>(float x) { return expf(x); }
template <> __device__ double fnn_exp<double>(double x) { return exp(x); }
template <typename T> __device__ T fnn_log(T x);
template <> __device__ float fnn_log<float>(float x) { return logf(x); }
template <> __device__ double fnn_log<double>(double x) { return log(x); }
template <typename T> __device__ T fnn_log1p(T x);
template <> __device__ float fnn_log1p<float>(float x) { return log1pf(x); }
template <> __device__ double fnn_log1p<double>(double x) { return log1p(x); }
template <typename T> __device__ T fnn_tanh(T x);
template <> __device__ float fnn_tanh<float>(float x) { return tanhf(x); }
template <> __device__ double fnn_tanh<double>(double x) { return tanh(x); }
template <typename T> __device__ T fnn_sqrt(T x);
template <> __device__ float fnn_sqrt<float>(float x) { return sqrtf(x); }
template <> __device__ double fnn_sqrt<double>(double x) { return sqrt(x); }

// ---- bfloat16 ---------------------------------------------------------------------------------

// y = x rounded to bfloat16 (to nearest even; NaN stays NaN, overflow gives infinity), as float:
// the input rounding of "mixed_bfloat16" layers, whose GEMMs then run in float32 on the rounded
// operands (exact products, float32 sums: the numerics of the CPU's bf16 kernels). y may be x.
extern "C" __global__ void round_bf16_f32(long long n, const float *x, float *y) {
    FNN_LOOP(i, n) {
        union { float f; unsigned int u; } v;
        v.f = x[i];
        if ((v.u & 0x7fffffffu) > 0x7f800000u)
            v.u = (v.u | 0x00400000u) & 0xffff0000u;
        else
            v.u = (v.u + 0x7fffu + ((v.u >> 16) & 1u)) & 0xffff0000u;
        y[i] = v.f;
    }
}

// ---- activations (codes as fastnn.backend.ACT_CODES) ------------------------------------------

template <typename T> __device__ T fnn_sigmoid(T x) {
    T e = fnn_exp<T>(x >= 0 ? -x : x);   // exp(-|x|) <= 1 never overflows
    T r = (T)1 / ((T)1 + e);
    return x >= 0 ? r : e * r;
}

template <typename T> __device__ T fnn_act(int act, T x, T alpha) {
    switch (act) {
    case 1: return x < (T)0 ? (T)0 : x;   // NaN stays NaN, as the CPU kernels
    case 2: return fnn_sigmoid<T>(x);
    case 3: return fnn_tanh<T>(x);
    case 4: return x > 0 ? x : alpha * x;
    default: return x;
    }
}

template <typename T> __device__ T fnn_act_grad(int act, T y, T g, T alpha) {
    switch (act) {
    case 1: return y > 0 ? g : (T)0;
    case 2: return g * y * ((T)1 - y);
    case 3: return g * ((T)1 - y * y);
    case 4: return y > 0 ? g : alpha * g;
    default: return g;
    }
}

// y[i, j] = act(y[i, j] + bias[j]) over rows x cols (bias may be null): the epilogue of a GEMM.
template <typename T>
__device__ void bias_act(long long rows, long long cols, const T *bias, int act, T alpha, T *y) {
    FNN_LOOP(i, rows * cols) {
        T v = y[i];
        if (bias) v += bias[i % cols];
        y[i] = fnn_act<T>(act, v, alpha);
    }
}
extern "C" __global__ void bias_act_f32(long long rows, long long cols, const float *bias, int act, float alpha,
                                        float *y) { bias_act<float>(rows, cols, bias, act, alpha, y); }
extern "C" __global__ void bias_act_f64(long long rows, long long cols, const double *bias, int act, double alpha,
                                        double *y) { bias_act<double>(rows, cols, bias, act, alpha, y); }

template <typename T> __device__ void act_fwd(long long n, int act, T alpha, const T *x, T *y) {
    FNN_LOOP(i, n) y[i] = fnn_act<T>(act, x[i], alpha);
}
extern "C" __global__ void act_fwd_f32(long long n, int act, float alpha, const float *x, float *y) {
    act_fwd<float>(n, act, alpha, x, y);
}
extern "C" __global__ void act_fwd_f64(long long n, int act, double alpha, const double *x, double *y) {
    act_fwd<double>(n, act, alpha, x, y);
}

template <typename T> __device__ void act_bwd(long long n, int act, T alpha, const T *y, const T *dy, T *dx) {
    FNN_LOOP(i, n) dx[i] = fnn_act_grad<T>(act, y[i], dy[i], alpha);
}
extern "C" __global__ void act_bwd_f32(long long n, int act, float alpha, const float *y, const float *dy,
                                       float *dx) { act_bwd<float>(n, act, alpha, y, dy, dx); }
extern "C" __global__ void act_bwd_f64(long long n, int act, double alpha, const double *y, const double *dy,
                                       double *dx) { act_bwd<double>(n, act, alpha, y, dy, dx); }

// out[i] = a[i] * b[i]
template <typename T> __device__ void mul(long long n, const T *a, const T *b, T *out) {
    FNN_LOOP(i, n) out[i] = a[i] * b[i];
}
extern "C" __global__ void mul_f32(long long n, const float *a, const float *b, float *out) {
    mul<float>(n, a, b, out);
}
extern "C" __global__ void mul_f64(long long n, const double *a, const double *b, double *out) {
    mul<double>(n, a, b, out);
}

// out[o] = sum_i x[o * so + i * si] for i = 0 .. terms-1 in order: bias gradients, over the rows of
// a (rows, cols) matrix (so = 1, si = cols) or along each row (so = cols, si = 1).
template <typename T>
__device__ void axis_sum(long long outs, long long terms, long long so, long long si, const T *x, T *out) {
    FNN_LOOP(o, outs) {
        T s = 0;
        for (long long i = 0; i < terms; i++) s += x[o * so + i * si];
        out[o] = s;
    }
}
extern "C" __global__ void axis_sum_f32(long long outs, long long terms, long long so, long long si, const float *x,
                                        float *out) {
    axis_sum<float>(outs, terms, so, si, x, out);
}
extern "C" __global__ void axis_sum_f64(long long outs, long long terms, long long so, long long si,
                                        const double *x, double *out) {
    axis_sum<double>(outs, terms, so, si, x, out);
}

// ---- softmax and the fused losses: one thread per row (k is the class count, small) --------------

template <typename T> __device__ void softmax_fwd(long long m, long long k, const T *x, T *y) {
    FNN_LOOP(i, m) {
        const T *xi = x + i * k;
        T *yi = y + i * k;
        T mx = xi[0];
        for (long long j = 1; j < k; j++) mx = xi[j] > mx ? xi[j] : mx;
        T s = 0;
        for (long long j = 0; j < k; j++) {
            yi[j] = fnn_exp<T>(xi[j] - mx);
            s += yi[j];
        }
        T inv = (T)1 / s;
        for (long long j = 0; j < k; j++) yi[j] *= inv;
    }
}
extern "C" __global__ void softmax_fwd_f32(long long m, long long k, const float *x, float *y) {
    softmax_fwd<float>(m, k, x, y);
}
extern "C" __global__ void softmax_fwd_f64(long long m, long long k, const double *x, double *y) {
    softmax_fwd<double>(m, k, x, y);
}

template <typename T> __device__ void softmax_bwd(long long m, long long k, const T *y, const T *dy, T *dx) {
    FNN_LOOP(i, m) {
        const T *yi = y + i * k, *gi = dy + i * k;
        T *oi = dx + i * k;
        T dot = 0;
        for (long long j = 0; j < k; j++) dot += yi[j] * gi[j];
        for (long long j = 0; j < k; j++) oi[j] = yi[j] * (gi[j] - dot);
    }
}
extern "C" __global__ void softmax_bwd_f32(long long m, long long k, const float *y, const float *dy, float *dx) {
    softmax_bwd<float>(m, k, y, dy, dx);
}
extern "C" __global__ void softmax_bwd_f64(long long m, long long k, const double *y, const double *dy,
                                           double *dx) { softmax_bwd<double>(m, k, y, dy, dx); }

// Row losses of softmax cross-entropy (in double, summed by the caller), with grad = (p - t) *
// scale and prob = p where given; t is one-hot rows or, when onehot is null, labels. A label
// outside [0, k) makes the row loss NaN (the caller checks labels before the call). w (may be
// null): per-row weights scaling the row loss and its gradient, as in csrc/ref/softmax_tmpl.h.
template <typename T>
__device__ void softmax_xent(long long m, long long k, T scale, const T *z, const long long *labels, const T *onehot,
                             const T *w, T *grad, T *prob, double *loss) {
    FNN_LOOP(i, m) {
        const T *zi = z + i * k;
        const T *ti = onehot ? onehot + i * k : nullptr;
        const long long label = onehot ? -1 : labels[i];
        const T wi = w ? w[i] : (T)1, sc = scale * wi;
        T mx = zi[0];
        for (long long j = 1; j < k; j++) mx = zi[j] > mx ? zi[j] : mx;
        T s = 0;
        for (long long j = 0; j < k; j++) s += fnn_exp<T>(zi[j] - mx);
        T lse = mx + fnn_log<T>(s), inv = (T)1 / s;
        double l;
        if (ti) {
            double tz = 0, tsum = 0;
            for (long long j = 0; j < k; j++) {
                tz += (double)ti[j] * zi[j];
                tsum += ti[j];
            }
            l = tsum * lse - tz;
        } else {
            l = (label >= 0 && label < k) ? (double)lse - zi[label] : (0.0 / 0.0);
        }
        loss[i] = (double)wi * l;
        if (grad || prob)
            for (long long j = 0; j < k; j++) {
                T pj = fnn_exp<T>(zi[j] - mx) * inv;
                if (prob) prob[i * k + j] = pj;
                if (grad) grad[i * k + j] = (pj - (ti ? ti[j] : (T)(j == label))) * sc;
            }
    }
}
extern "C" __global__ void softmax_xent_f32(long long m, long long k, float scale, const float *z,
                                            const long long *labels, const float *onehot, const float *w,
                                            float *grad, float *prob, double *loss) {
    softmax_xent<float>(m, k, scale, z, labels, onehot, w, grad, prob, loss);
}
extern "C" __global__ void softmax_xent_f64(long long m, long long k, double scale, const double *z,
                                            const long long *labels, const double *onehot, const double *w,
                                            double *grad, double *prob, double *loss) {
    softmax_xent<double>(m, k, scale, z, labels, onehot, w, grad, prob, loss);
}

// w (may be null): one weight per sample of `cols` consecutive elements
template <typename T>
__device__ void sigmoid_bce(long long n, long long cols, T scale, const T *z, const T *t, const T *w, T *grad, T *prob,
                            double *loss) {
    FNN_LOOP(i, n) {
        T x = z[i], ti = t[i], wi = w ? w[i / cols] : (T)1;
        T e = fnn_exp<T>(x >= 0 ? -x : x);
        loss[i] = (double)wi * (double)((x > 0 ? x : (T)0) - x * ti + fnn_log1p<T>(e));
        T p = x >= 0 ? (T)1 / ((T)1 + e) : e / ((T)1 + e);
        if (prob) prob[i] = p;
        if (grad) grad[i] = (p - ti) * (scale * wi);
    }
}
extern "C" __global__ void sigmoid_bce_f32(long long n, long long cols, float scale, const float *z, const float *t,
                                           const float *w, float *grad, float *prob, double *loss) {
    sigmoid_bce<float>(n, cols, scale, z, t, w, grad, prob, loss);
}
extern "C" __global__ void sigmoid_bce_f64(long long n, long long cols, double scale, const double *z, const double *t,
                                           const double *w, double *grad, double *prob, double *loss) {
    sigmoid_bce<double>(n, cols, scale, z, t, w, grad, prob, loss);
}

template <typename T>
__device__ void mse(long long n, long long cols, T scale, const T *y, const T *t, const T *w, T *grad, double *loss) {
    FNN_LOOP(i, n) {
        T d = y[i] - t[i], wi = w ? w[i / cols] : (T)1;
        loss[i] = (double)wi * ((double)d * d);
        if (grad) grad[i] = 2 * d * (scale * wi);
    }
}
extern "C" __global__ void mse_f32(long long n, long long cols, float scale, const float *y, const float *t,
                                   const float *w, float *grad, double *loss) {
    mse<float>(n, cols, scale, y, t, w, grad, loss);
}
extern "C" __global__ void mse_f64(long long n, long long cols, double scale, const double *y, const double *t,
                                   const double *w, double *grad, double *loss) {
    mse<double>(n, cols, scale, y, t, w, grad, loss);
}

// ---- dropout: the counter-based mask of csrc/ref/dropout.c, bit for bit ---------------------------

__device__ unsigned int fnn_mix32(unsigned int x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    return x ^ (x >> 16);
}

template <typename T>
__device__ void dropout_fwd(long long n, unsigned int k0, unsigned int k1, unsigned long long offset, unsigned int thr,
                            T scale, const T *x, T *y, T *mask) {
    FNN_LOOP(i, n) {
        unsigned long long c = offset + (unsigned long long)i;
        unsigned int h = fnn_mix32((unsigned int)c ^ k0);
        h = fnn_mix32(h ^ (unsigned int)(c >> 32) ^ k1);
        T mk = (h >> 8) >= thr ? scale : (T)0;
        mask[i] = mk;
        y[i] = x[i] * mk;
    }
}
extern "C" __global__ void dropout_fwd_f32(long long n, unsigned int k0, unsigned int k1, unsigned long long offset,
                                           unsigned int thr, float scale, const float *x, float *y, float *mask) {
    dropout_fwd<float>(n, k0, k1, offset, thr, scale, x, y, mask);
}
extern "C" __global__ void dropout_fwd_f64(long long n, unsigned int k0, unsigned int k1, unsigned long long offset,
                                           unsigned int thr, double scale, const double *x, double *y,
                                           double *mask) {
    dropout_fwd<double>(n, k0, k1, offset, thr, scale, x, y, mask);
}

// ---- optimizers over the flat parameter buffer (csrc/ref/optim_tmpl.h) ---------------------------

template <typename T>
__device__ void sgd_step(long long n, int nesterov, int first, T lr, T mom, T wd, const T *g, T *p, T *buf) {
    FNN_LOOP(i, n) {
        T d = g[i] + wd * p[i];
        if (buf) {
            T b = first ? d : mom * buf[i] + d;
            buf[i] = b;
            d = nesterov ? d + mom * b : b;
        }
        p[i] -= lr * d;
    }
}
extern "C" __global__ void sgd_step_f32(long long n, int nesterov, int first, float lr, float mom, float wd,
                                        const float *g, float *p, float *buf) {
    sgd_step<float>(n, nesterov, first, lr, mom, wd, g, p, buf);
}
extern "C" __global__ void sgd_step_f64(long long n, int nesterov, int first, double lr, double mom, double wd,
                                        const double *g, double *p, double *buf) {
    sgd_step<double>(n, nesterov, first, lr, mom, wd, g, p, buf);
}

template <typename T>
__device__ void adam_step(long long n, int decoupled, T step, T rs2, T b1, T b2, T eps, T wd, T shrink, const T *g,
                          T *p, T *m, T *v) {
    FNN_LOOP(i, n) {
        T d = decoupled ? g[i] : g[i] + wd * p[i];
        T mi = b1 * m[i] + (1 - b1) * d;
        T vi = b2 * v[i] + (1 - b2) * d * d;
        m[i] = mi;
        v[i] = vi;
        T upd = step * mi / (fnn_sqrt<T>(vi) * rs2 + eps);
        p[i] = decoupled ? p[i] * shrink - upd : p[i] - upd;
    }
}
extern "C" __global__ void adam_step_f32(long long n, int decoupled, float step, float rs2, float b1, float b2,
                                         float eps, float wd, float shrink, const float *g, float *p, float *m,
                                         float *v) {
    adam_step<float>(n, decoupled, step, rs2, b1, b2, eps, wd, shrink, g, p, m, v);
}
extern "C" __global__ void adam_step_f64(long long n, int decoupled, double step, double rs2, double b1, double b2,
                                         double eps, double wd, double shrink, const double *g, double *p,
                                         double *m, double *v) {
    adam_step<double>(n, decoupled, step, rs2, b1, b2, eps, wd, shrink, g, p, m, v);
}

// ga (centered) and buf (momentum) may be NULL
template <typename T>
__device__ void rmsprop_step(long long n, T lr, T rho, T mom, T eps, T wd, const T *g, T *p, T *sq, T *ga, T *buf) {
    FNN_LOOP(i, n) {
        T d = g[i] + wd * p[i];
        T s = rho * sq[i] + (1 - rho) * d * d;
        sq[i] = s;
        if (ga) {
            T a = ga[i] + (1 - rho) * (d - ga[i]);
            ga[i] = a;
            s -= a * a;
        }
        T u = d / (fnn_sqrt<T>(s) + eps);
        if (buf) {
            u = mom * buf[i] + u;
            buf[i] = u;
        }
        p[i] -= lr * u;
    }
}
extern "C" __global__ void rmsprop_step_f32(long long n, float lr, float rho, float mom, float eps, float wd,
                                            const float *g, float *p, float *sq, float *ga, float *buf) {
    rmsprop_step<float>(n, lr, rho, mom, eps, wd, g, p, sq, ga, buf);
}
extern "C" __global__ void rmsprop_step_f64(long long n, double lr, double rho, double mom, double eps, double wd,
                                            const double *g, double *p, double *sq, double *ga, double *buf) {
    rmsprop_step<double>(n, lr, rho, mom, eps, wd, g, p, sq, ga, buf);
}

// weight penalties (csrc/ref/optim_tmpl.h): grad += l1 sign(w) + 2 l2 w, per-element penalty terms
template <typename T>
__device__ void penalty(long long n, T l1, T l2, const T *w, T *g, double *terms) {
    FNN_LOOP(i, n) {
        T wi = w[i];
        g[i] += l1 * ((T)(wi > 0) - (T)(wi < 0)) + 2 * l2 * wi;
        terms[i] = (double)l1 * (wi < 0 ? -wi : wi) + (double)l2 * ((double)wi * wi);
    }
}
extern "C" __global__ void penalty_f32(long long n, float l1, float l2, const float *w, float *g, double *terms) {
    penalty<float>(n, l1, l2, w, g, terms);
}
extern "C" __global__ void penalty_f64(long long n, double l1, double l2, const double *w, double *g,
                                       double *terms) {
    penalty<double>(n, l1, l2, w, g, terms);
}

// ---- convolution: im2col / col2im over the whole batch, NCHW ------------------------------------
// cols[(c*kh + u)*kw + v, (b*oh + i)*ow + j] = x[b, c, i*sh + u - pt, j*sw + v - pl] (0 in padding)
// The geometry comes as a device array of 12 int64 (cached per shape by the caller): the same
// kernel arguments on every backend, no struct passing.
struct fnn_conv_geom {
    long long n, c, h, w, kh, kw, sh, sw, pt, pl, oh, ow;
};
__device__ fnn_conv_geom fnn_conv_load(const long long *q) {
    fnn_conv_geom g = {q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7], q[8], q[9], q[10], q[11]};
    return g;
}

template <typename T> __device__ void im2col(fnn_conv_geom g, const T *x, T *cols) {
    const long long p = g.n * g.oh * g.ow, total = g.c * g.kh * g.kw * p;
    FNN_LOOP(e, total) {
        const long long col = e % p, row = e / p;
        const long long j = col % g.ow, i = (col / g.ow) % g.oh, b = col / (g.ow * g.oh);
        const long long v = row % g.kw, u = (row / g.kw) % g.kh, c = row / (g.kw * g.kh);
        const long long ih = i * g.sh + u - g.pt, iw = j * g.sw + v - g.pl;
        cols[e] = (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w) ? x[((b * g.c + c) * g.h + ih) * g.w + iw] : (T)0;
    }
}
extern "C" __global__ void im2col_f32(const long long *geo, const float *x, float *cols) {
    im2col<float>(fnn_conv_load(geo), x, cols);
}
extern "C" __global__ void im2col_f64(const long long *geo, const double *x, double *cols) {
    im2col<double>(fnn_conv_load(geo), x, cols);
}

// f(i, j) for each window (output i, j) of a kh x kw window moved by (sh, sw) over oh x ow
// outputs whose tap lands on position (r, c) of its (padded) input, taps in order: the gathered
// adjoints of im2col and pooling loop over these.
template <typename F>
__device__ void fnn_windows_at(long long r, long long c, long long kh, long long kw, long long sh, long long sw,
                               long long oh, long long ow, F f) {
    for (long long u = 0; u < kh; u++) {
        const long long ti = r - u;
        if (ti < 0 || ti % sh != 0 || ti / sh >= oh) continue;
        for (long long v = 0; v < kw; v++) {
            const long long tj = c - v;
            if (tj < 0 || tj % sw != 0 || tj / sw >= ow) continue;
            f(u, v, ti / sh, tj / sw);
        }
    }
}

// The adjoint, gathered: each input element sums the column entries that read it, taps in order.
template <typename T> __device__ void col2im(fnn_conv_geom g, const T *cols, T *dx) {
    const long long p = g.n * g.oh * g.ow;
    FNN_LOOP(e, g.n * g.c * g.h * g.w) {
        const long long iw = e % g.w, ih = (e / g.w) % g.h, c = (e / (g.w * g.h)) % g.c, b = e / (g.w * g.h * g.c);
        T s = 0;
        fnn_windows_at(ih + g.pt, iw + g.pl, g.kh, g.kw, g.sh, g.sw, g.oh, g.ow,
                       [&](long long u, long long v, long long i, long long j) {
                           s += cols[((c * g.kh + u) * g.kw + v) * p + (b * g.oh + i) * g.ow + j];
                       });
        dx[e] = s;
    }
}
extern "C" __global__ void col2im_f32(const long long *geo, const float *cols, float *dx) {
    col2im<float>(fnn_conv_load(geo), cols, dx);
}
extern "C" __global__ void col2im_f64(const long long *geo, const double *cols, double *dx) {
    col2im<double>(fnn_conv_load(geo), cols, dx);
}

// y[b, f, q] = act(yt[f, b*hw + q] + bias[f]) (the GEMM's (f, n*hw) result into NCHW)
template <typename T>
__device__ void conv_out(long long n, long long f, long long hw, const T *yt, const T *bias, int relu, T *y) {
    FNN_LOOP(e, n * f * hw) {
        const long long q = e % hw, o = (e / hw) % f, b = e / (hw * f);
        T v = yt[o * n * hw + b * hw + q];
        if (bias) v += bias[o];
        y[e] = relu && !(v > 0) && v == v ? (T)0 : v;   // max(0, v), NaN kept
    }
}
extern "C" __global__ void conv_out_f32(long long n, long long f, long long hw, const float *yt, const float *bias,
                                        int relu, float *y) { conv_out<float>(n, f, hw, yt, bias, relu, y); }
extern "C" __global__ void conv_out_f64(long long n, long long f, long long hw, const double *yt,
                                        const double *bias, int relu, double *y) {
    conv_out<double>(n, f, hw, yt, bias, relu, y);
}

// gt[f, b*hw + q] = dy[b, f, q], masked by y > 0 when y is given (the fused ReLU)
template <typename T>
__device__ void conv_grad_in(long long n, long long f, long long hw, const T *dy, const T *y, T *gt) {
    FNN_LOOP(e, n * f * hw) {
        const long long q = e % hw, b = (e / hw) % n, o = e / (hw * n);
        const long long src = (b * f + o) * hw + q;
        T g = dy[src];
        gt[e] = (y && !(y[src] > 0)) ? (T)0 : g;
    }
}
extern "C" __global__ void conv_grad_in_f32(long long n, long long f, long long hw, const float *dy, const float *y,
                                            float *gt) { conv_grad_in<float>(n, f, hw, dy, y, gt); }
extern "C" __global__ void conv_grad_in_f64(long long n, long long f, long long hw, const double *dy,
                                            const double *y, double *gt) { conv_grad_in<double>(n, f, hw, dy, y, gt); }

// ---- pooling (no padding): planes of h x w into oh x ow ------------------------------------------
struct fnn_pool_geom {
    long long planes, h, w, kh, kw, sh, sw, oh, ow;
};
__device__ fnn_pool_geom fnn_pool_load(const long long *q) {
    fnn_pool_geom g = {q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7], q[8]};
    return g;
}

// PyTorch's rule: a value replaces the maximum when larger or NaN; idx = offset in the plane.
template <typename T> __device__ void maxpool_fwd(fnn_pool_geom g, const T *x, T *y, int *idx) {
    FNN_LOOP(e, g.planes * g.oh * g.ow) {
        const long long j = e % g.ow, i = (e / g.ow) % g.oh, pl = e / (g.ow * g.oh);
        const T *xp = x + pl * g.h * g.w;
        const long long base = i * g.sh * g.w + j * g.sw;
        T m = xp[base];
        long long best = base;
        bool first = true;
        for (long long u = 0; u < g.kh; u++)
            for (long long v = 0; v < g.kw; v++) {
                const T val = xp[base + u * g.w + v];
                if (first || val > m || val != val) {
                    m = val;
                    best = base + u * g.w + v;
                }
                first = false;
            }
        y[e] = m;
        if (idx) idx[e] = (int)best;
    }
}
extern "C" __global__ void maxpool_fwd_f32(const long long *geo, const float *x, float *y, int *idx) {
    maxpool_fwd<float>(fnn_pool_load(geo), x, y, idx);
}
extern "C" __global__ void maxpool_fwd_f64(const long long *geo, const double *x, double *y, int *idx) {
    maxpool_fwd<double>(fnn_pool_load(geo), x, y, idx);
}

// dx[pl, q] = sum of dy over the windows of q whose argmax is q, windows in order.
template <typename T> __device__ void maxpool_bwd(fnn_pool_geom g, const T *dy, const int *idx, T *dx) {
    FNN_LOOP(e, g.planes * g.h * g.w) {
        const long long q = e % (g.h * g.w), pl = e / (g.h * g.w);
        T s = 0;
        fnn_windows_at(q / g.w, q % g.w, g.kh, g.kw, g.sh, g.sw, g.oh, g.ow,
                       [&](long long, long long, long long i, long long j) {
                           const long long o = (pl * g.oh + i) * g.ow + j;
                           if (idx[o] == q) s += dy[o];
                       });
        dx[e] = s;
    }
}
extern "C" __global__ void maxpool_bwd_f32(const long long *geo, const float *dy, const int *idx, float *dx) {
    maxpool_bwd<float>(fnn_pool_load(geo), dy, idx, dx);
}
extern "C" __global__ void maxpool_bwd_f64(const long long *geo, const double *dy, const int *idx, double *dx) {
    maxpool_bwd<double>(fnn_pool_load(geo), dy, idx, dx);
}

template <typename T> __device__ void avgpool_fwd(fnn_pool_geom g, const T *x, T *y) {
    const T inv = (T)1 / (T)(g.kh * g.kw);
    FNN_LOOP(e, g.planes * g.oh * g.ow) {
        const long long j = e % g.ow, i = (e / g.ow) % g.oh, pl = e / (g.ow * g.oh);
        const T *xp = x + pl * g.h * g.w + i * g.sh * g.w + j * g.sw;
        T acc = 0;
        for (long long u = 0; u < g.kh; u++)
            for (long long v = 0; v < g.kw; v++) acc += xp[u * g.w + v];
        y[e] = acc * inv;
    }
}
extern "C" __global__ void avgpool_fwd_f32(const long long *geo, const float *x, float *y) {
    avgpool_fwd<float>(fnn_pool_load(geo), x, y);
}
extern "C" __global__ void avgpool_fwd_f64(const long long *geo, const double *x, double *y) {
    avgpool_fwd<double>(fnn_pool_load(geo), x, y);
}

template <typename T> __device__ void avgpool_bwd(fnn_pool_geom g, const T *dy, T *dx) {
    const T inv = (T)1 / (T)(g.kh * g.kw);
    FNN_LOOP(e, g.planes * g.h * g.w) {
        const long long q = e % (g.h * g.w), pl = e / (g.h * g.w);
        T s = 0;
        fnn_windows_at(q / g.w, q % g.w, g.kh, g.kw, g.sh, g.sw, g.oh, g.ow,
                       [&](long long, long long, long long i, long long j) {
                           s += dy[(pl * g.oh + i) * g.ow + j] * inv;
                       });
        dx[e] = s;
    }
}
extern "C" __global__ void avgpool_bwd_f32(const long long *geo, const float *dy, float *dx) {
    avgpool_bwd<float>(fnn_pool_load(geo), dy, dx);
}
extern "C" __global__ void avgpool_bwd_f64(const long long *geo, const double *dy, double *dx) {
    avgpool_bwd<double>(fnn_pool_load(geo), dy, dx);
}

// ---- recurrent cells: one time step, thread per (sample, unit) -----------------------------------
// ax: x_t W_x + b_x for the step (row stride lda: rows of the whole sequence's projection);
// hb: h_{t-1} W_h (n, G*H), null at t = 0 (h_0 = 0), plus bh here. Gate blocks as the CPU: i, f,
// g, o (LSTM); r, z, n (GRU). gates (row stride ldg) keeps what backward needs: the activations,
// and for a GRU also h W_hn + b_hn. cell: 0 rnn, 1 lstm, 2 gru. c_prev/c (LSTM) may be null
// otherwise; h_prev null at t = 0.
template <typename T>
__device__ void rnn_step_fwd(int cell, long long n, long long H, const T *ax, long long lda, const T *hb, const T *bh,
                             const T *h_prev, const T *c_prev, T *gates, long long ldg, T *h, long long ldh, T *c,
                             long long ldc) {
    const long long G = cell == 0 ? 1 : cell == 1 ? 4 : 3;
    FNN_LOOP(e, n * H) {
        const long long j = e % H, b = e / H;
        const T *a = ax + b * lda, *rb = hb ? hb + b * G * H : nullptr;
        T *gt = gates + b * ldg;
#define FNN_RB(q) ((rb ? rb[(q) * H + j] : (T)0) + bh[(q) * H + j])
        if (cell == 0) {
            T v = fnn_tanh<T>(a[j] + FNN_RB(0));
            gt[j] = v;
            h[b * ldh + j] = v;
        } else if (cell == 1) {
            T ig = fnn_sigmoid<T>(a[j] + FNN_RB(0));
            T fg = fnn_sigmoid<T>(a[H + j] + FNN_RB(1));
            T gg = fnn_tanh<T>(a[2 * H + j] + FNN_RB(2));
            T og = fnn_sigmoid<T>(a[3 * H + j] + FNN_RB(3));
            T cp = c_prev ? c_prev[b * ldc + j] : (T)0;
            T cn = fg * cp + ig * gg;
            gt[j] = ig;
            gt[H + j] = fg;
            gt[2 * H + j] = gg;
            gt[3 * H + j] = og;
            c[b * ldc + j] = cn;
            h[b * ldh + j] = og * fnn_tanh<T>(cn);
        } else {
            T rg = fnn_sigmoid<T>(a[j] + FNN_RB(0));
            T zg = fnn_sigmoid<T>(a[H + j] + FNN_RB(1));
            T bn = FNN_RB(2);
            T ng = fnn_tanh<T>(a[2 * H + j] + rg * bn);
            T hp = h_prev ? h_prev[b * ldh + j] : (T)0;
            gt[j] = rg;
            gt[H + j] = zg;
            gt[2 * H + j] = ng;
            gt[3 * H + j] = bn;
            h[b * ldh + j] = (1 - zg) * ng + zg * hp;
        }
#undef FNN_RB
    }
}
extern "C" __global__ void rnn_step_fwd_f32(int cell, long long n, long long H, const float *ax, long long lda,
                                            const float *hb, const float *bh, const float *h_prev,
                                            const float *c_prev, float *gates, long long ldg, float *h, long long ldh,
                                            float *c, long long ldc) {
    rnn_step_fwd<float>(cell, n, H, ax, lda, hb, bh, h_prev, c_prev, gates, ldg, h, ldh, c, ldc);
}
extern "C" __global__ void rnn_step_fwd_f64(int cell, long long n, long long H, const double *ax, long long lda,
                                            const double *hb, const double *bh, const double *h_prev,
                                            const double *c_prev, double *gates, long long ldg, double *h,
                                            long long ldh, double *c, long long ldc) {
    rnn_step_fwd<double>(cell, n, H, ax, lda, hb, bh, h_prev, c_prev, gates, ldg, h, ldh, c, ldc);
}

// One step back. dL/dh_t = dh (n, H: from the later steps) + dy_t (the output's gradient at
// this step, row stride lddy; null when there is none). Writes the gate gradients of the input
// projection dax (row stride lda) and of the recurrent one dah (n, G*H), and into dh_prev the
// direct part of dL/dh_{t-1} (GRU: dh z; else 0), to which the caller adds dah W_h^T. For an
// LSTM, dc is updated in place (in: dL/dc_t from later steps; out: dL/dc_{t-1}).
template <typename T>
__device__ void rnn_step_bwd(int cell, long long n, long long H, const T *gates, long long ldg, const T *h_prev,
                             long long ldh, const T *c, const T *c_prev, long long ldc, const T *dh, const T *dy_t,
                             long long lddy, T *dc, T *dax, long long lda, T *dah, T *dh_prev) {
    FNN_LOOP(e, n * H) {
        const long long j = e % H, b = e / H;
        const T *gt = gates + b * ldg;
        const T g = dy_t ? dh[b * H + j] + dy_t[b * lddy + j] : dh[b * H + j];
        T *ax = dax + b * lda;
        if (cell == 0) {
            const T y = gt[j];
            const T d = g * (1 - y * y);
            ax[j] = d;
            dah[b * H + j] = d;
            dh_prev[b * H + j] = 0;
        } else if (cell == 1) {
            const T ig = gt[j], fg = gt[H + j], gg = gt[2 * H + j], og = gt[3 * H + j];
            const T tc = fnn_tanh<T>(c[b * ldc + j]);
            const T cp = c_prev ? c_prev[b * ldc + j] : (T)0;
            const T dcv = dc[b * H + j] + g * og * (1 - tc * tc);
            T *ah = dah + b * 4 * H;
            ax[j] = ah[j] = dcv * gg * ig * (1 - ig);
            ax[H + j] = ah[H + j] = dcv * cp * fg * (1 - fg);
            ax[2 * H + j] = ah[2 * H + j] = dcv * ig * (1 - gg * gg);
            ax[3 * H + j] = ah[3 * H + j] = g * tc * og * (1 - og);
            dc[b * H + j] = dcv * fg;
            dh_prev[b * H + j] = 0;
        } else {
            const T rg = gt[j], zg = gt[H + j], ng = gt[2 * H + j], bn = gt[3 * H + j];
            const T hp = h_prev ? h_prev[b * ldh + j] : (T)0;
            const T dn = g * (1 - zg) * (1 - ng * ng);
            const T dr = dn * bn * rg * (1 - rg);
            const T dz = g * (hp - ng) * zg * (1 - zg);
            T *ah = dah + b * 3 * H;
            ax[j] = ah[j] = dr;
            ax[H + j] = ah[H + j] = dz;
            ax[2 * H + j] = dn;
            ah[2 * H + j] = dn * rg;
            dh_prev[b * H + j] = g * zg;
        }
    }
}
extern "C" __global__ void rnn_step_bwd_f32(int cell, long long n, long long H, const float *gates, long long ldg,
                                            const float *h_prev, long long ldh, const float *c, const float *c_prev,
                                            long long ldc, const float *dh, const float *dy_t, long long lddy,
                                            float *dc, float *dax, long long lda, float *dah, float *dh_prev) {
    rnn_step_bwd<float>(cell, n, H, gates, ldg, h_prev, ldh, c, c_prev, ldc, dh, dy_t, lddy, dc, dax, lda, dah,
                        dh_prev);
}
extern "C" __global__ void rnn_step_bwd_f64(int cell, long long n, long long H, const double *gates, long long ldg,
                                            const double *h_prev, long long ldh, const double *c,
                                            const double *c_prev, long long ldc, const double *dh,
                                            const double *dy_t, long long lddy, double *dc, double *dax,
                                            long long lda, double *dah, double *dh_prev) {
    rnn_step_bwd<double>(cell, n, H, gates, ldg, h_prev, ldh, c, c_prev, ldc, dh, dy_t, lddy, dc, dax, lda, dah,
                         dh_prev);
}

// ---- batch normalization: x as (outer, ch, inner) ----------------------------------------------
// The statistics take a thread per channel (each sums its own values in a fixed order: no
// atomics, no shared memory); the elementwise parts a thread per element.
template <typename T>
__device__ void bn_stats(long long outer, long long ch, long long inner, T momentum, T eps, const T *x, T *mean,
                         T *invstd, T *moving_mean, T *moving_var) {
    FNN_LOOP(c, ch) {
        const T k = x[c * inner];               // the shift of the one-pass moments (as the CPU)
        double s = 0, q = 0;
        for (long long o = 0; o < outer; o++)
            for (long long i = 0; i < inner; i++) {
                const double d = (double)(x[(o * ch + c) * inner + i] - k);
                s += d;
                q += d * d;
            }
        const double m = (double)(outer * inner), dm = s / m;
        double var = q / m - dm * dm;
        var = var < 0 ? 0 : var;
        const T mu = (T)((double)k + dm), v = (T)var;
        mean[c] = mu;
        invstd[c] = (T)1 / fnn_sqrt<T>(v + eps);
        if (moving_mean) moving_mean[c] = momentum * moving_mean[c] + ((T)1 - momentum) * mu;
        if (moving_var) moving_var[c] = momentum * moving_var[c] + ((T)1 - momentum) * v;
    }
}
extern "C" __global__ void bn_stats_f32(long long outer, long long ch, long long inner, float momentum, float eps,
                                        const float *x, float *mean, float *invstd, float *mm, float *mv) {
    bn_stats<float>(outer, ch, inner, momentum, eps, x, mean, invstd, mm, mv);
}
extern "C" __global__ void bn_stats_f64(long long outer, long long ch, long long inner, double momentum, double eps,
                                        const double *x, double *mean, double *invstd, double *mm, double *mv) {
    bn_stats<double>(outer, ch, inner, momentum, eps, x, mean, invstd, mm, mv);
}

// y = s x + (beta - mean s), s = gamma * invstd (training) or gamma / sqrt(var + eps) (inference,
// invstd null); gamma/beta may be null (1 and 0); relu: y = max(y, 0) (NaN stays NaN, as the CPU).
template <typename T>
__device__ void bn_apply(long long total, long long ch, long long inner, int relu, T eps, const T *x,
                         const T *gamma, const T *beta, const T *mean, const T *var, const T *invstd, T *y) {
    FNN_LOOP(e, total) {
        const long long c = (e / inner) % ch;
        const T g = gamma ? gamma[c] : (T)1;
        const T s = invstd ? g * invstd[c] : g / fnn_sqrt<T>(var[c] + eps);
        const T v = s * x[e] + ((beta ? beta[c] : (T)0) - mean[c] * s);
        y[e] = relu && v < 0 ? (T)0 : v;
    }
}
extern "C" __global__ void bn_apply_f32(long long total, long long ch, long long inner, int relu, float eps,
                                        const float *x, const float *gamma, const float *beta, const float *mean,
                                        const float *var, const float *invstd, float *y) {
    bn_apply<float>(total, ch, inner, relu, eps, x, gamma, beta, mean, var, invstd, y);
}
extern "C" __global__ void bn_apply_f64(long long total, long long ch, long long inner, int relu, double eps,
                                        const double *x, const double *gamma, const double *beta, const double *mean,
                                        const double *var, const double *invstd, double *y) {
    bn_apply<double>(total, ch, inner, relu, eps, x, gamma, beta, mean, var, invstd, y);
}

// g = dy, or dy where y > 0 else 0 when y (the forward's fused-ReLU output) is given.
template <typename T> __device__ T bn_grad(const T *dy, const T *y, long long at) {
    return y && !(y[at] > 0) ? (T)0 : dy[at];
}

// dbeta = sum g, dgamma = sum g (x - mean) invstd, a thread per channel.
template <typename T>
__device__ void bn_grad_sums(long long outer, long long ch, long long inner, const T *x, const T *mean,
                             const T *invstd, const T *dy, const T *y, T *dgamma, T *dbeta) {
    FNN_LOOP(c, ch) {
        double s = 0, q = 0;
        for (long long o = 0; o < outer; o++)
            for (long long i = 0; i < inner; i++) {
                const long long at = (o * ch + c) * inner + i;
                const double g = (double)bn_grad<T>(dy, y, at);
                s += g;
                q += g * (double)(x[at] - mean[c]);
            }
        dgamma[c] = (T)(q * (double)invstd[c]);
        dbeta[c] = (T)s;
    }
}
extern "C" __global__ void bn_grad_sums_f32(long long outer, long long ch, long long inner, const float *x,
                                            const float *mean, const float *invstd, const float *dy, const float *y,
                                            float *dgamma, float *dbeta) {
    bn_grad_sums<float>(outer, ch, inner, x, mean, invstd, dy, y, dgamma, dbeta);
}
extern "C" __global__ void bn_grad_sums_f64(long long outer, long long ch, long long inner, const double *x,
                                            const double *mean, const double *invstd, const double *dy,
                                            const double *y, double *dgamma, double *dbeta) {
    bn_grad_sums<double>(outer, ch, inner, x, mean, invstd, dy, y, dgamma, dbeta);
}

// dx = gamma invstd (dy - dbeta / m - xhat dgamma / m), m = outer * inner.
template <typename T>
__device__ void bn_bwd_dx(long long total, long long ch, long long inner, const T *x, const T *gamma, const T *mean,
                          const T *invstd, const T *dy, const T *y, const T *dgamma, const T *dbeta, T *dx) {
    const double m = (double)total / (double)ch;
    FNN_LOOP(e, total) {
        const long long c = (e / inner) % ch;
        const double is = (double)invstd[c], A = (gamma ? (double)gamma[c] : 1.0) * is;
        const double B = -A * is * ((double)dgamma[c] / m), C = -A * ((double)dbeta[c] / m) - B * (double)mean[c];
        dx[e] = (T)A * bn_grad<T>(dy, y, e) + ((T)B * x[e] + (T)C);
    }
}
extern "C" __global__ void bn_bwd_dx_f32(long long total, long long ch, long long inner, const float *x,
                                         const float *gamma, const float *mean, const float *invstd, const float *dy,
                                         const float *y, const float *dgamma, const float *dbeta, float *dx) {
    bn_bwd_dx<float>(total, ch, inner, x, gamma, mean, invstd, dy, y, dgamma, dbeta, dx);
}
extern "C" __global__ void bn_bwd_dx_f64(long long total, long long ch, long long inner, const double *x,
                                         const double *gamma, const double *mean, const double *invstd,
                                         const double *dy, const double *y, const double *dgamma, const double *dbeta,
                                         double *dx) {
    bn_bwd_dx<double>(total, ch, inner, x, gamma, mean, invstd, dy, y, dgamma, dbeta, dx);
}

// ---- embedding ----------------------------------------------------------------------------------
// y[i, j] = w[idx[i], j]; an index outside [0, v) (checked on the host first) gives 0, not a read.
template <typename T>
__device__ void embedding_fwd(long long n, long long v, long long d, const long long *idx, const T *w, T *y) {
    FNN_LOOP(e, n * d) {
        long long i = e / d, j = e - i * d, r = idx[i];
        y[e] = (r >= 0 && r < v) ? w[r * d + j] : (T)0;
    }
}
extern "C" __global__ void embedding_fwd_f32(long long n, long long v, long long d, const long long *idx,
                                             const float *w, float *y) {
    embedding_fwd<float>(n, v, d, idx, w, y);
}
extern "C" __global__ void embedding_fwd_f64(long long n, long long v, long long d, const long long *idx,
                                             const double *w, double *y) {
    embedding_fwd<double>(n, v, d, idx, w, y);
}

// keys[i] = idx[i] * n + i: unique sort keys whose order is (index, position).
template <typename T> __device__ void embedding_keys(long long n, const long long *idx, long long *keys) {
    FNN_LOOP(i, n) { keys[i] = idx[i] * n + i; }
}
extern "C" __global__ void embedding_keys_f32(long long n, const long long *idx, long long *keys) {
    embedding_keys<float>(n, idx, keys);
}
extern "C" __global__ void embedding_keys_f64(long long n, const long long *idx, long long *keys) {
    embedding_keys<double>(n, idx, keys);
}

// starts[r] = the first position of sorted keys at or above r * n (r = 0..v): row r's terms are
// keys[starts[r] .. starts[r + 1]).
template <typename T>
__device__ void embedding_starts(long long n, long long v, const long long *keys, long long *starts) {
    FNN_LOOP(r, v + 1) {
        long long lo = 0, hi = n, key = r * n;
        while (lo < hi) {
            long long mid = lo + (hi - lo) / 2;
            if (keys[mid] < key) lo = mid + 1; else hi = mid;
        }
        starts[r] = lo;
    }
}
extern "C" __global__ void embedding_starts_f32(long long n, long long v, const long long *keys, long long *starts) {
    embedding_starts<float>(n, v, keys, starts);
}
extern "C" __global__ void embedding_starts_f64(long long n, long long v, const long long *keys, long long *starts) {
    embedding_starts<double>(n, v, keys, starts);
}

// dw[r, j] = sum of dy[i, j] over the positions i of index r, in ascending i (as the C kernel).
template <typename T>
__device__ void embedding_bwd(long long n, long long v, long long d, const long long *keys, const long long *starts,
                              const T *dy, T *dw) {
    FNN_LOOP(e, v * d) {
        long long r = e / d, j = e - r * d;
        T acc = 0;
        for (long long k = starts[r]; k < starts[r + 1]; k++) acc += dy[(keys[k] - r * n) * d + j];
        dw[e] = acc;
    }
}
extern "C" __global__ void embedding_bwd_f32(long long n, long long v, long long d, const long long *keys,
                                             const long long *starts, const float *dy, float *dw) {
    embedding_bwd<float>(n, v, d, keys, starts, dy, dw);
}
extern "C" __global__ void embedding_bwd_f64(long long n, long long v, long long d, const long long *keys,
                                             const long long *starts, const double *dy, double *dw) {
    embedding_bwd<double>(n, v, d, keys, starts, dy, dw);
}

// ---- data augmentation: the counters and decisions of csrc/ref/augment.c, bit for bit -----------
// (the hash of fnn_mix32 above on counter c: fnn_mix32(fnn_mix32(lo32(c) ^ k0) ^ hi32(c) ^ k1))

__device__ unsigned int fnn_rng_bits(unsigned int k0, unsigned int k1, unsigned long long c) {
    return fnn_mix32(fnn_mix32((unsigned int)c ^ k0) ^ (unsigned int)(c >> 32) ^ k1);
}

// y[s, ch, i, j] = x[s, ch, fh ? h-1-i : i, fw ? w-1-j : j]; fw, fh: bits 31, 30 of sample s's hash.
template <typename T>
__device__ void random_flip(long long n, long long c, long long h, long long w, int flags, unsigned int k0,
                            unsigned int k1, unsigned long long offset, const T *x, T *y) {
    FNN_LOOP(e, n * c * h * w) {
        long long j = e % w, r = e / w, i = r % h, s = r / (c * h);
        unsigned int bits = fnn_rng_bits(k0, k1, offset + (unsigned long long)s);
        bool fw = (flags & 1) && (bits >> 31), fh = (flags & 2) && ((bits >> 30) & 1u);
        y[e] = x[(r - i + (fh ? h - 1 - i : i)) * w + (fw ? w - 1 - j : j)];
    }
}
extern "C" __global__ void random_flip_f32(long long n, long long c, long long h, long long w, int flags,
                                           unsigned int k0, unsigned int k1, unsigned long long offset,
                                           const float *x, float *y) {
    random_flip<float>(n, c, h, w, flags, k0, k1, offset, x, y);
}
extern "C" __global__ void random_flip_f64(long long n, long long c, long long h, long long w, int flags,
                                           unsigned int k0, unsigned int k1, unsigned long long offset,
                                           const double *x, double *y) {
    random_flip<double>(n, c, h, w, flags, k0, k1, offset, x, y);
}

__device__ long long fnn_shift_of(unsigned int b, long long m) {
    return (long long)(((unsigned long long)b * (unsigned long long)(2 * m + 1)) >> 32) - m;
}

// y[i, j] = x[i - sy, j - sx] (fill outside); adjoint: x[i + sy, j + sx] (fill passed as 0).
template <typename T>
__device__ void random_translate(long long n, long long c, long long h, long long w, long long max_h,
                                 long long max_w, unsigned int k0, unsigned int k1, unsigned long long offset,
                                 int adjoint, T fill, const T *x, T *y) {
    FNN_LOOP(e, n * c * h * w) {
        long long j = e % w, r = e / w, i = r % h, s = r / (c * h);
        unsigned long long ctr = offset + 2ULL * (unsigned long long)s;
        long long sy = fnn_shift_of(fnn_rng_bits(k0, k1, ctr), max_h);
        long long sx = fnn_shift_of(fnn_rng_bits(k0, k1, ctr + 1ULL), max_w);
        if (adjoint) {
            sy = -sy;
            sx = -sx;
        }
        long long si = i - sy, sj = j - sx;
        y[e] = (si >= 0 && si < h && sj >= 0 && sj < w) ? x[(r - i + si) * w + sj] : fill;
    }
}
extern "C" __global__ void random_translate_f32(long long n, long long c, long long h, long long w, long long max_h,
                                                long long max_w, unsigned int k0, unsigned int k1,
                                                unsigned long long offset, int adjoint, float fill, const float *x,
                                                float *y) {
    random_translate<float>(n, c, h, w, max_h, max_w, k0, k1, offset, adjoint, fill, x, y);
}
extern "C" __global__ void random_translate_f64(long long n, long long c, long long h, long long w, long long max_h,
                                                long long max_w, unsigned int k0, unsigned int k1,
                                                unsigned long long offset, int adjoint, double fill,
                                                const double *x, double *y) {
    random_translate<double>(n, c, h, w, max_h, max_w, k0, k1, offset, adjoint, fill, x, y);
}

// y[i] = x[i] + (T)(stddev * z), z from Box-Muller in double on counters offset + 2i, offset + 2i + 1.
template <typename T>
__device__ void gaussian_noise(long long n, double stddev, unsigned int k0, unsigned int k1,
                               unsigned long long offset, const T *x, T *y) {
    FNN_LOOP(i, n) {
        unsigned long long ctr = offset + 2ULL * (unsigned long long)i;
        unsigned int a = fnn_rng_bits(k0, k1, ctr), b = fnn_rng_bits(k0, k1, ctr + 1ULL);
        double u1 = (double)((a >> 8) + 1u) * (1.0 / 16777216.0);
        double u2 = (double)(b >> 8) * (1.0 / 16777216.0);
        double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
        y[i] = x[i] + (T)(stddev * z);
    }
}
extern "C" __global__ void gaussian_noise_f32(long long n, double stddev, unsigned int k0, unsigned int k1,
                                              unsigned long long offset, const float *x, float *y) {
    gaussian_noise<float>(n, stddev, k0, k1, offset, x, y);
}
extern "C" __global__ void gaussian_noise_f64(long long n, double stddev, unsigned int k0, unsigned int k1,
                                              unsigned long long offset, const double *x, double *y) {
    gaussian_noise<double>(n, stddev, k0, k1, offset, x, y);
}
