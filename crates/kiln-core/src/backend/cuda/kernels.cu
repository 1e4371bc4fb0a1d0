// kiln's CUDA kernels, compiled at run time by NVRTC (backend/cuda/mod.rs). This file is compiled once with
// T = float and K(name) = name_f32, and once with T = double and K(name) = name_f64, after the shared
// helpers in the prelude (PRELUDE in mod.rs). Each kernel mirrors its CPU kernel in backend/cpu/ (named
// beside it), loop for loop where the order of a sum matters; sizes are 64-bit (`long long`), and every
// kernel walks its elements in a grid-stride loop (LOOP), so any grid covers any size.

// ---- elementwise (cpu/mod.rs: bias_act, unary, unary_backward, col_sum_add) ----

// y[r, j] += bias[j] (when has_bias); z = y (when keep_z); y = act(y) (when op >= 0).
extern "C" __global__ void K(bias_act)(T* y, long long len, long long cols, const T* bias, int has_bias, int op,
                                       double p, T* z, int keep_z) {
    LOOP(i, len) {
        T v = y[i];
        if (has_bias) v += bias[i % cols];
        if (op >= 0) {
            if (keep_z) z[i] = v;
            v = act_f<T>(op, p, v);
        }
        y[i] = v;
    }
}

extern "C" __global__ void K(unary)(int op, double p, const T* x, T* y, long long len) {
    LOOP(i, len) y[i] = act_f<T>(op, p, x[i]);
}

// gx (+)= gy * op'(x, y)
extern "C" __global__ void K(unary_backward)(int op, double p, const T* gy, const T* x, const T* y, T* gx,
                                             long long len, int accumulate) {
    LOOP(i, len) {
        T d = gy[i] * act_d<T>(op, p, x[i], y[i]);
        gx[i] = accumulate ? gx[i] + d : d;
    }
}

// out[j] += sum over rows of x[r, j], rows summed in order.
// partial[q, j] = Σ x[r, j] over rows r of chunk q (chunk rows each; the last may be short).
extern "C" __global__ void K(col_partial_sums)(T* partial, const T* x, long long rows, long long cols,
                                               long long chunk) {
    long long chunks = (rows + chunk - 1) / chunk;
    LOOP(i, chunks * cols) {
        long long q = i / cols, j = i % cols;
        long long end = (q + 1) * chunk < rows ? (q + 1) * chunk : rows;
        T s = 0;
        for (long long r = q * chunk; r < end; ++r) s += x[r * cols + j];
        partial[i] = s;
    }
}

extern "C" __global__ void K(col_sum_add)(T* out, const T* x, long long rows, long long cols) {
    LOOP(j, cols) {
        T s = 0;
        for (long long r = 0; r < rows; ++r) s += x[r * cols + j];
        out[j] += s;
    }
}

// ---- broadcasting binary ops (cpu/mod.rs: binary, binary_backward) ----

extern "C" __global__ void K(binary)(int op, Bcast s, const T* a, const T* b, T* y) {
    LOOP(i, s.n) {
        long long ia = 0, ib = 0, rem = i;
        for (int d = s.rank - 1; d >= 0; --d) {
            long long c = rem % s.dims[d];
            rem /= s.dims[d];
            ia += c * s.sa[d];
            ib += c * s.sb[d];
        }
        y[i] = bin_f<T>(op, a[ia], b[ib]);
    }
}

// g[j] += sum over the output elements i that read element j of the input (a, or b when wrt_b) of
// gy[i] * the partial. One thread per element of g walks the broadcast axes (those where the input's size is 1
// and the output's is not): no two threads write the same element.
extern "C" __global__ void K(binary_backward)(int op, int wrt_b, Bcast s, const T* gy, const T* a, const T* b,
                                              T* g, long long gn) {
    const long long* own = wrt_b ? s.db : s.da;
    long long reps = s.n / (gn > 0 ? gn : 1);
    LOOP(j, gn) {
        long long coord[MAXR];
        long long rem = j;
        for (int d = s.rank - 1; d >= 0; --d) {
            coord[d] = rem % own[d];
            rem /= own[d];
        }
        T acc = 0;
        for (long long t = 0; t < reps; ++t) {
            long long rr = t, i = 0, ia = 0, ib = 0, stride = 1;
            for (int d = s.rank - 1; d >= 0; --d) {
                long long c = coord[d];
                if (own[d] == 1) {
                    c = rr % s.dims[d];
                    rr /= s.dims[d];
                }
                i += c * stride;
                stride *= s.dims[d];
                ia += c * s.sa[d];
                ib += c * s.sb[d];
            }
            T pa, pb;
            bin_partials<T>(op, a[ia], b[ib], &pa, &pb);
            acc += gy[i] * (wrt_b ? pb : pa);
        }
        g[j] += acc;
    }
}

// ---- softmax over the middle axis of [outer, n, inner] (cpu/mod.rs: softmax_lanes, softmax_backward) ----

extern "C" __global__ void K(softmax)(const T* x, T* y, long long outer, long long n, long long inner, int lg) {
    LOOP(lane, outer * inner) {
        long long o = lane / inner, j = lane % inner;
        const T* xs = x + o * n * inner + j;
        T* ys = y + o * n * inner + j;
        T m = NEG_INF;
        for (long long k = 0; k < n; ++k) m = max(m, xs[k * inner]);
        T s = 0;
        for (long long k = 0; k < n; ++k) {
            T e = exp(xs[k * inner] - m);
            ys[k * inner] = e;
            s += e;
        }
        if (lg) {
            T ls = log(s);
            for (long long k = 0; k < n; ++k) ys[k * inner] = xs[k * inner] - m - ls;
        } else {
            T inv = (T)1 / s;
            for (long long k = 0; k < n; ++k) ys[k * inner] *= inv;
        }
    }
}

extern "C" __global__ void K(softmax_backward)(const T* gy, const T* y, T* gx, long long outer, long long n,
                                               long long inner, int lg) {
    LOOP(lane, outer * inner) {
        long long base = (lane / inner) * n * inner + lane % inner;
        T s = 0;
        for (long long k = 0; k < n; ++k) {
            long long at = base + k * inner;
            s += lg ? gy[at] : gy[at] * y[at];
        }
        for (long long k = 0; k < n; ++k) {
            long long at = base + k * inner;
            gx[at] += lg ? gy[at] - exp(y[at]) * s : y[at] * (gy[at] - s);
        }
    }
}

// ---- movement (cpu/movement.rs) ----

extern "C" __global__ void K(copy_blocks)(const T* src, long long s0, long long ss, T* dst, long long d0,
                                          long long ds, long long blocks, long long len, int accumulate) {
    LOOP(t, blocks * len) {
        long long i = t / len, e = t % len;
        T v = src[s0 + i * ss + e];
        T* d = dst + d0 + i * ds + e;
        *d = accumulate ? *d + v : v;
    }
}

// Output element o of the permuted tensor reads x at sum of its coordinates times `strides` (the input's
// strides in output-axis order); backward adds gy[o] there (a permutation: no two o meet).
extern "C" __global__ void K(permute)(const T* x, T* y, Perm p, int backward) {
    LOOP(o, p.n) {
        long long src = 0, rem = o;
        for (int d = p.rank - 1; d >= 0; --d) {
            src += (rem % p.dims[d]) * p.strides[d];
            rem /= p.dims[d];
        }
        if (backward) y[src] += x[o];
        else y[o] = x[src];
    }
}

// y[o, k, j] = x[o, idx[k], j]
extern "C" __global__ void K(gather)(const T* x, const unsigned* idx, long long len, long long outer, long long n,
                                     long long inner, T* y) {
    LOOP(t, outer * len * inner) {
        long long j = t % inner, k = (t / inner) % len, o = t / (inner * len);
        y[t] = x[(o * n + idx[k]) * inner + j];
    }
}

// gx[o, idx[k], j] += gy[o, k, j]; repeated indices meet, so atomically.
extern "C" __global__ void K(scatter_add)(const T* gy, const unsigned* idx, long long len, long long outer,
                                          long long n, long long inner, T* gx) {
    LOOP(t, outer * len * inner) {
        long long j = t % inner, k = (t / inner) % len, o = t / (inner * len);
        atomicAdd(&gx[(o * n + idx[k]) * inner + j], gy[t]);
    }
}

// y[b, j] = sum over l of w[b, l] * table[ids[b, l], j], weight-0 ids skipped.
extern "C" __global__ void K(embedding_bag)(const T* table, const unsigned* ids, const T* w, long long nb,
                                            long long len, long long d, T* y) {
    LOOP(t, nb * d) {
        long long b = t / d, j = t % d;
        T s = 0;
        for (long long l = 0; l < len; ++l) {
            T wt = w[b * len + l];
            if (wt != (T)0) s += wt * table[(long long)ids[b * len + l] * d + j];
        }
        y[t] = s;
    }
}

extern "C" __global__ void K(embedding_bag_backward)(const T* gy, const unsigned* ids, const T* w, long long nb,
                                                     long long len, long long d, T* gtable) {
    LOOP(t, nb * len * d) {
        long long j = t % d, bl = t / d, b = bl / len;
        T wt = w[bl];
        if (wt != (T)0) atomicAdd(&gtable[(long long)ids[bl] * d + j], wt * gy[b * d + j]);
    }
}

// op: 0 sum, 1 mean, 2 max (the first maximum; its position into arg when has_arg).
extern "C" __global__ void K(reduce)(int op, const T* x, T* y, unsigned* arg, int has_arg, long long outer,
                                     long long n, long long inner) {
    LOOP(r, outer * inner) {
        long long o = r / inner, j = r % inner;
        const T* xs = x + o * n * inner + j;
        if (op == 2) {
            long long best = 0;
            for (long long k = 1; k < n; ++k)
                if (xs[k * inner] > xs[best * inner]) best = k;
            y[r] = xs[best * inner];
            if (has_arg) arg[r] = (unsigned)best;
        } else {
            T acc = 0;
            for (long long k = 0; k < n; ++k) acc += xs[k * inner];
            y[r] = op == 1 ? acc / (T)n : acc;
        }
    }
}

extern "C" __global__ void K(reduce_backward)(int op, const T* gy, const unsigned* arg, T* gx, long long outer,
                                              long long n, long long inner) {
    LOOP(t, outer * n * inner) {
        long long j = t % inner, k = (t / inner) % n, o = t / (inner * n);
        long long r = o * inner + j;
        if (op == 2) {
            if (arg[r] == k) gx[t] += gy[r];
        } else {
            gx[t] += op == 1 ? gy[r] * ((T)1 / (T)n) : gy[r];
        }
    }
}

// A strided [rows, cols] view (element (r, c) at r*rs + c*cs) copied into a contiguous row-major matrix, for
// the products whose operands cuBLAS cannot read in place.
extern "C" __global__ void K(gather_matrix)(const T* a, long long rows, long long cols, long long rs, long long cs,
                                            T* out) {
    LOOP(t, rows * cols) out[t] = a[(t / cols) * rs + (t % cols) * cs];
}

// ---- losses (cpu/loss.rs), one thread per row ----

// kind: 0 softmax cross-entropy, 1 sparse, 2 sigmoid binary cross-entropy, 3 binary cross-entropy,
// 4 categorical cross-entropy, 5 mean squared error. rowloss[r] = w[r] * the row's summed loss; the caller
// adds the rows and divides by the row or element count, as the CPU does.
extern "C" __global__ void K(loss)(int kind, const T* x, const T* t, const unsigned* labels, const T* w,
                                   int has_w, long long n, long long c, T* probs, T* rowloss) {
    LOOP(r, n) {
        const T* xr = x + r * c;
        const T* tr = t + r * c;
        T total = 0;
        if (kind == 0 || kind == 1) {
            T m = NEG_INF;
            for (long long j = 0; j < c; ++j) m = max(m, xr[j]);
            T s = 0;
            for (long long j = 0; j < c; ++j) s += exp(xr[j] - m);
            T ls = log(s);
            for (long long j = 0; j < c; ++j) {
                T lp = xr[j] - m - ls;
                if (kind == 0) total += -tr[j] * lp;
                else if (j == (long long)labels[r]) total = -lp;
                probs[r * c + j] = exp(lp);
            }
        } else if (kind == 2) {
            for (long long j = 0; j < c; ++j) {
                T z = xr[j];
                total += max(z, (T)0) - z * tr[j] + log((T)1 + exp(-fabs(z)));
            }
        } else if (kind == 3) {
            for (long long j = 0; j < c; ++j) {
                T p = clip_p<T>(xr[j]);
                total += -(tr[j] * log(p) + ((T)1 - tr[j]) * log((T)1 - p));
            }
        } else if (kind == 4) {
            T sum = 0;
            for (long long j = 0; j < c; ++j) sum += xr[j];
            for (long long j = 0; j < c; ++j) total += -tr[j] * log(clip_p<T>(xr[j] / sum));
        } else {
            for (long long j = 0; j < c; ++j) total += (xr[j] - tr[j]) * (xr[j] - tr[j]);
        }
        rowloss[r] = (has_w ? w[r] : (T)1) * total;
    }
}

// gx += g0 * d loss / dx (cpu/loss.rs: backward).
extern "C" __global__ void K(loss_backward)(int kind, T g0, const T* x, const T* t, const unsigned* labels,
                                            const T* probs, const T* w, int has_w, long long n, long long c,
                                            T* gx) {
    const T lo = (T)1e-7, hi = (T)1 - (T)1e-7;
    LOOP(r, n) {
        T wt = has_w ? w[r] : (T)1;
        T per_row = g0 / (T)n * wt;
        T per_elem = g0 / (T)(n * c) * wt;
        const T* xr = x + r * c;
        const T* tr = t + r * c;
        const T* pr = probs + r * c;
        T* gr = gx + r * c;
        if (kind == 0) {
            T ts = 0;
            for (long long j = 0; j < c; ++j) ts += tr[j];
            for (long long j = 0; j < c; ++j) gr[j] += per_row * (pr[j] * ts - tr[j]);
        } else if (kind == 1) {
            for (long long j = 0; j < c; ++j) gr[j] += per_row * (pr[j] - (j == (long long)labels[r] ? (T)1 : (T)0));
        } else if (kind == 2) {
            for (long long j = 0; j < c; ++j) gr[j] += per_elem * (sigm<T>(xr[j]) - tr[j]);
        } else if (kind == 3) {
            for (long long j = 0; j < c; ++j) {
                T p = xr[j];
                if (p > lo && p < hi) gr[j] += per_elem * (p - tr[j]) / (p * ((T)1 - p));
            }
        } else if (kind == 4) {
            T sum = 0, tin = 0;
            for (long long j = 0; j < c; ++j) sum += xr[j];
            for (long long j = 0; j < c; ++j) {
                T q = xr[j] / sum;
                if (q > lo && q < hi) tin += tr[j];
            }
            for (long long j = 0; j < c; ++j) {
                T q = xr[j] / sum;
                T own = (q > lo && q < hi) ? tr[j] / q : (T)0;
                gr[j] += per_row * (tin - own) / sum;
            }
        } else {
            for (long long j = 0; j < c; ++j) gr[j] += per_elem * (T)2 * (xr[j] - tr[j]);
        }
    }
}

// ---- pooling, NHWC (cpu/pool.rs) ----

// The first maximum of each window (arg: its flat index in x).
extern "C" __global__ void K(max_pool)(Win g, const T* x, T* y, unsigned* arg) {
    LOOP(o, g.n * g.oh * g.ow * g.c) {
        long long c = o % g.c, ow = (o / g.c) % g.ow, oh = (o / (g.c * g.ow)) % g.oh, n = o / (g.c * g.ow * g.oh);
        T best = NEG_INF;
        long long at = 0;
        int first = 1;
        for (long long kh = 0; kh < g.kh; ++kh) {
            long long ih = oh * g.sh + kh - g.pt;
            if (ih < 0 || ih >= g.h) continue;
            for (long long kw = 0; kw < g.kw; ++kw) {
                long long iw = ow * g.sw + kw - g.pl;
                if (iw < 0 || iw >= g.w) continue;
                long long i = ((n * g.h + ih) * g.w + iw) * g.c + c;
                if (first || x[i] > best) {
                    best = x[i];
                    at = i;
                    first = 0;
                }
            }
        }
        y[o] = best;
        arg[o] = (unsigned)at;
    }
}

// gx[arg[o]] += gy[o]; windows may overlap, so atomically.
extern "C" __global__ void K(max_pool_backward)(const T* gy, const unsigned* arg, long long len, T* gx) {
    LOOP(o, len) atomicAdd(&gx[arg[o]], gy[o]);
}

// Positions of window o inside the input, through f(i) for each one's flat index.
#define AVG_WINDOW(f)                                                                                          \
    for (long long kh = 0; kh < g.kh; ++kh) {                                                                  \
        long long ih = oh * g.sh + kh - g.pt;                                                                  \
        if (ih < 0 || ih >= g.h) continue;                                                                     \
        for (long long kw = 0; kw < g.kw; ++kw) {                                                              \
            long long iw = ow * g.sw + kw - g.pl;                                                              \
            if (iw < 0 || iw >= g.w) continue;                                                                 \
            long long i = ((n * g.h + ih) * g.w + iw) * g.c + c;                                               \
            f;                                                                                                 \
        }                                                                                                      \
    }
#define WINDOW_COORDS                                                                                          \
    long long c = o % g.c, ow = (o / g.c) % g.ow, oh = (o / (g.c * g.ow)) % g.oh, n = o / (g.c * g.ow * g.oh);

// y = the mean of each window over the positions inside the input.
extern "C" __global__ void K(avg_pool)(Win g, const T* x, T* y) {
    LOOP(o, g.n * g.oh * g.ow * g.c) {
        WINDOW_COORDS
        T s = 0;
        long long cnt = 0;
        AVG_WINDOW((s += x[i], cnt += 1))
        y[o] = s / (T)(cnt > 0 ? cnt : 1);
    }
}

// gx[i] += gy[o] / count(o) for every i in window o; windows may overlap, so atomically.
extern "C" __global__ void K(avg_pool_backward)(Win g, const T* gy, T* gx) {
    LOOP(o, g.n * g.oh * g.ow * g.c) {
        WINDOW_COORDS
        long long cnt = 0;
        AVG_WINDOW(((void)i, cnt += 1))
        T d = gy[o] / (T)(cnt > 0 ? cnt : 1);
        AVG_WINDOW(atomicAdd(&gx[i], d))
    }
}

// ---- convolution: patches (cpu/conv.rs: im2col, col2im) and the max pool over a convolution's output
// (cpu/conv_pool.rs) ----

// cols[r, (kh, kw, c)] = x[n, oh*sh + kh - pt, ow*sw + kw - pl, c] (zero in the padding), r = (n, oh, ow).
extern "C" __global__ void K(im2col)(Win g, const T* x, T* cols) {
    long long k = g.kh * g.kw * g.c;
    LOOP(t, g.n * g.oh * g.ow * k) {
        long long r = t / k, q = t % k;
        long long c = q % g.c, kw = (q / g.c) % g.kw, kh = q / (g.c * g.kw);
        long long ow = r % g.ow, oh = (r / g.ow) % g.oh, n = r / (g.ow * g.oh);
        long long ih = oh * g.sh + kh - g.pt, iw = ow * g.sw + kw - g.pl;
        cols[t] = (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w) ? x[((n * g.h + ih) * g.w + iw) * g.c + c] : (T)0;
    }
}

// dx[n, ih, iw, c] += the sum of dcols over the patch entries that read it: one thread per input element, no
// atomics.
extern "C" __global__ void K(col2im)(Win g, const T* dcols, T* dx) {
    long long k = g.kh * g.kw * g.c;
    LOOP(t, g.n * g.h * g.w * g.c) {
        long long c = t % g.c, iw = (t / g.c) % g.w, ih = (t / (g.c * g.w)) % g.h, n = t / (g.c * g.w * g.h);
        T s = 0;
        for (long long kh = 0; kh < g.kh; ++kh) {
            long long a = ih + g.pt - kh;
            if (a < 0 || a % g.sh != 0 || a / g.sh >= g.oh) continue;
            long long oh = a / g.sh;
            for (long long kw = 0; kw < g.kw; ++kw) {
                long long b = iw + g.pl - kw;
                if (b < 0 || b % g.sw != 0 || b / g.sw >= g.ow) continue;
                long long ow = b / g.sw;
                s += dcols[((n * g.oh + oh) * g.ow + ow) * k + (kh * g.kw + kw) * g.c + c];
            }
        }
        dx[t] += s;
    }
}

// y = the max of a over each ph x pw window of the convolution's output [n, oh, ow, f]; arg = its index
// (row * f + channel); zs = z there when keep_z. The first maximum wins, as on the CPU.
extern "C" __global__ void K(conv_max_pool)(Win g, long long f, long long ph, long long pw, const T* a,
                                            const T* z, T* y, unsigned* arg, T* zs, int keep_z) {
    long long poh = g.oh / ph, pow_ = g.ow / pw;
    LOOP(o, g.n * poh * pow_ * f) {
        long long ch = o % f, pc = (o / f) % pow_, pr = (o / (f * pow_)) % poh, n = o / (f * pow_ * poh);
        T best = 0;
        long long at = 0;
        for (long long i = 0; i < ph; ++i)
            for (long long j = 0; j < pw; ++j) {
                long long r = (n * g.oh + pr * ph + i) * g.ow + pc * pw + j;
                T v = a[r * f + ch];
                if ((i == 0 && j == 0) || v > best) {
                    best = v;
                    at = r * f + ch;
                }
            }
        y[o] = best;
        arg[o] = (unsigned)at;
        if (keep_z) zs[o] = z[at];
    }
}

// dz[arg[o]] = gy[o] * act'(zs[o] or y[o], y[o]) (op < 0: no activation); dz is zero elsewhere. Pooling
// windows do not overlap, so each dz entry has one writer.
extern "C" __global__ void K(conv_max_pool_dz)(int op, double p, const T* gy, const T* y, const T* zs,
                                               const unsigned* arg, long long len, int needs_input, T* dz) {
    LOOP(o, len) {
        T d = gy[o];
        if (op >= 0) d *= act_d<T>(op, p, needs_input ? zs[o] : y[o], y[o]);
        dz[arg[o]] += d;
    }
}

// ---- batch norm over the last axis of c channels (cpu/norm.rs) ----

// saved = [mean (c), var (c), inv (c)]: the given statistics (has_stats) or the batch's (biased).
extern "C" __global__ void K(batch_norm_stats)(const T* x, long long m, long long c, const T* mm, const T* mv,
                                               int has_stats, double eps, T* saved) {
    LOOP(j, c) {
        T mean = 0, var = 0;
        if (has_stats) {
            mean = mm[j];
            var = mv[j];
        } else {
            for (long long r = 0; r < m; ++r) mean += x[r * c + j];
            mean /= (T)m;
            for (long long r = 0; r < m; ++r) var += (x[r * c + j] - mean) * (x[r * c + j] - mean);
            var /= (T)m;
        }
        saved[j] = mean;
        saved[c + j] = var;
        saved[2 * c + j] = (T)1 / sqrt(var + (T)eps);
    }
}

extern "C" __global__ void K(batch_norm)(const T* x, const T* gamma, const T* beta, const T* saved, long long len,
                                         long long c, T* y) {
    LOOP(i, len) {
        long long j = i % c;
        y[i] = gamma[j] * (x[i] - saved[j]) * saved[2 * c + j] + beta[j];
    }
}

// sums = [sum dy (c), sum dy * xhat (c)]
extern "C" __global__ void K(batch_norm_sums)(const T* x, const T* gy, const T* saved, long long m, long long c,
                                              T* sums) {
    LOOP(j, c) {
        T sdy = 0, sdyx = 0;
        for (long long r = 0; r < m; ++r) {
            T d = gy[r * c + j];
            sdy += d;
            sdyx += d * (x[r * c + j] - saved[j]) * saved[2 * c + j];
        }
        sums[j] = sdy;
        sums[c + j] = sdyx;
    }
}

extern "C" __global__ void K(batch_norm_backward_x)(const T* x, const T* gy, const T* gamma, const T* saved,
                                                    const T* sums, long long len, long long c, int given, T* gx) {
    T mf = (T)(len / c);
    LOOP(i, len) {
        long long j = i % c;
        T inv = saved[2 * c + j];
        if (given) {
            gx[i] += gamma[j] * inv * gy[i];
        } else {
            T xhat = (x[i] - saved[j]) * inv;
            gx[i] += gamma[j] * inv / mf * (mf * gy[i] - sums[j] - xhat * sums[c + j]);
        }
    }
}

extern "C" __global__ void K(batch_norm_backward_stat)(int variance, const T* gamma, const T* saved,
                                                       const T* sums, long long c, T* out) {
    LOOP(j, c) {
        T inv = saved[2 * c + j];
        out[j] -= variance ? (T)0.5 * gamma[j] * inv * inv * sums[c + j] : gamma[j] * inv * sums[j];
    }
}

// ---- layer norm over rows of d (cpu/layer_norm.rs), one thread per row ----

extern "C" __global__ void K(layer_norm)(const T* x, const T* gamma, const T* beta, double eps, long long rows,
                                         long long d, T* saved, T* y) {
    LOOP(r, rows) {
        const T* xr = x + r * d;
        T mu = 0, var = 0;
        for (long long j = 0; j < d; ++j) mu += xr[j];
        mu /= (T)d;
        for (long long j = 0; j < d; ++j) var += (xr[j] - mu) * (xr[j] - mu);
        var /= (T)d;
        T rs = (T)1 / sqrt(var + (T)eps);
        for (long long j = 0; j < d; ++j) y[r * d + j] = (xr[j] - mu) * rs * gamma[j] + beta[j];
        saved[2 * r] = mu;
        saved[2 * r + 1] = rs;
    }
}

// sums = [sum dy * xhat (d), sum dy (d)], one thread per column.
extern "C" __global__ void K(layer_norm_sums)(const T* x, const T* gy, const T* saved, long long rows,
                                              long long d, T* sums) {
    LOOP(j, d) {
        T a = 0, b = 0;
        for (long long r = 0; r < rows; ++r) {
            T e = gy[r * d + j];
            a += e * (x[r * d + j] - saved[2 * r]) * saved[2 * r + 1];
            b += e;
        }
        sums[j] = a;
        sums[d + j] = b;
    }
}

extern "C" __global__ void K(layer_norm_backward_x)(const T* x, const T* gy, const T* gamma, const T* saved,
                                                    long long rows, long long d, T* gx) {
    LOOP(r, rows) {
        T mu = saved[2 * r], rs = saved[2 * r + 1];
        T mg = 0, mgx = 0;
        for (long long j = 0; j < d; ++j) {
            T g = gamma[j] * gy[r * d + j];
            mg += g;
            mgx += g * (x[r * d + j] - mu) * rs;
        }
        mg /= (T)d;
        mgx /= (T)d;
        for (long long j = 0; j < d; ++j)
            gx[r * d + j] += rs * (gamma[j] * gy[r * d + j] - mg - (x[r * d + j] - mu) * rs * mgx);
    }
}

// ---- recurrent cells, one step (cpu/recurrent.rs; equations in ops/recurrent.rs), one thread per (row, unit)
// cell: 0 LSTM (gates i f g o; saved i f g o tanh c'), 1 GRU (gates z r h; saved z r h zh), 2 simple ----

extern "C" __global__ void K(rnn_step)(int cell, long long n, long long steps, long long u, long long t,
                                       const T* xw, const T* zh, const T* b_rec, const T* mask, int has_mask,
                                       const T* h_prev, const T* c_prev, T* h, T* c, T* saved) {
    long long gu = (cell == 0 ? 4 : cell == 1 ? 3 : 1) * u, sw = (cell == 0 ? 5 : cell == 1 ? 4 : 0) * u;
    LOOP(q, n * u) {
        long long row = q / u, j = q % u;
        if (has_mask && mask[row * steps + t] == (T)0) {
            h[q] = h_prev[q];  // a padded step keeps the state
            if (cell == 0) c[q] = c_prev[q];
            continue;
        }
        const T* zx = xw + (row * steps + t) * gu;
        const T* zr = zh + row * gu;
        T* sv = saved + row * sw;
        if (cell == 0) {
            T gi = sigm<T>(zx[j] + zr[j]), gf = sigm<T>(zx[u + j] + zr[u + j]);
            T gg = tanh(zx[2 * u + j] + zr[2 * u + j]), go = sigm<T>(zx[3 * u + j] + zr[3 * u + j]);
            T cn = gf * c_prev[q];
            cn = cn + gi * gg;
            T tc = tanh(cn);
            c[q] = cn;
            h[q] = go * tc;
            sv[j] = gi, sv[u + j] = gf, sv[2 * u + j] = gg, sv[3 * u + j] = go, sv[4 * u + j] = tc;
        } else if (cell == 1) {
            T z = sigm<T>((zx[j] + zr[j]) + b_rec[j]);
            T r = sigm<T>((zx[u + j] + zr[u + j]) + b_rec[u + j]);
            T szh = zr[2 * u + j] + b_rec[2 * u + j];
            T hh = tanh(zx[2 * u + j] + r * szh);
            h[q] = hh + z * (h_prev[q] - hh);
            sv[j] = z, sv[u + j] = r, sv[2 * u + j] = hh, sv[3 * u + j] = szh;
        } else {
            h[q] = tanh(zx[j] + zr[j]);
        }
    }
}

// dh (and dc) after the step become the gradients before it (less dzh·rᵀ, which the op adds); dzx row
// (row·steps + t) and dzh get the gate gradients, zeros for a masked row.
extern "C" __global__ void K(rnn_step_backward)(int cell, long long n, long long steps, long long u, long long t,
                                                const T* saved, const T* mask, int has_mask, const T* h_prev,
                                                const T* h, const T* c_prev, T* dh, T* dc, T* dzx, T* dzh) {
    long long g = cell == 0 ? 4 : cell == 1 ? 3 : 1, gu = g * u, sw = (cell == 0 ? 5 : cell == 1 ? 4 : 0) * u;
    LOOP(q, n * u) {
        long long row = q / u, j = q % u;
        T* dr = dzh + row * gu;
        T* dx = dzx + (row * steps + t) * gu;
        if (has_mask && mask[row * steps + t] == (T)0) {
            for (long long k = 0; k < g; ++k) dr[k * u + j] = (T)0, dx[k * u + j] = (T)0;
            continue;
        }
        const T* sv = saved + row * sw;
        if (cell == 0) {
            T gi = sv[j], gf = sv[u + j], gg = sv[2 * u + j], go = sv[3 * u + j], tc = sv[4 * u + j];
            T d = dh[q];
            T dcn = dc[q] + d * go * ((T)1 - tc * tc);
            dx[3 * u + j] = d * tc * go * ((T)1 - go);
            dx[j] = dcn * gg * gi * ((T)1 - gi);
            dx[u + j] = dcn * c_prev[q] * gf * ((T)1 - gf);
            dx[2 * u + j] = dcn * gi * ((T)1 - gg * gg);
            for (long long k = 0; k < 4; ++k) dr[k * u + j] = dx[k * u + j];
            dc[q] = dcn * gf;
            dh[q] = (T)0;
        } else if (cell == 1) {
            T z = sv[j], r = sv[u + j], hh = sv[2 * u + j], szh = sv[3 * u + j];
            T d = dh[q];
            T xh = d * ((T)1 - z) * ((T)1 - hh * hh);
            T xr = xh * szh * r * ((T)1 - r);
            T xz = (h_prev[q] - hh) * z * ((T)1 - z);
            xz = xz * d;
            dx[j] = xz, dx[u + j] = xr, dx[2 * u + j] = xh;
            dr[j] = xz, dr[u + j] = xr, dr[2 * u + j] = xh * r;
            dh[q] = d * z;
        } else {
            T x = dh[q] * ((T)1 - h[q] * h[q]);
            dx[j] = x;
            dr[j] = x;
            dh[q] = (T)0;
        }
    }
}

// ---- attention (cpu/attention.rs; formulas in ops/attention.rs): q, k, v, y [b·t, heads·dh]; p [b, heads,
// t, t]; one thread per row of p, or per output element; dropout on the weights as drop_factor (prelude). ----

// p[pair, i, :] = softmax over keys j of q_i·k_j / sqrt(dh) + bias[key j] (keys after i masked when causal).
extern "C" __global__ void K(attention_probs)(const T* q, const T* k, const T* bias, long long b, long long t,
                                              long long heads, long long dh, int causal, T* p) {
    long long w = heads * dh;
    T scale = (T)1 / sqrt((T)dh);
    LOOP(r, b * heads * t) {
        long long pair = r / t, i = r % t, bi = pair / heads, hd = pair % heads;
        const T* qi = q + (bi * t + i) * w + hd * dh;
        T* pr = p + r * t;
        T m = NEG_INF;
        for (long long j = 0; j < t; ++j) {
            T s;
            if (causal && j > i) {
                s = (T)-1e30;
            } else {
                const T* kj = k + (bi * t + j) * w + hd * dh;
                T dot = 0;
                for (long long d = 0; d < dh; ++d) dot += qi[d] * kj[d];
                s = dot * scale + bias[bi * t + j];
            }
            pr[j] = s;
            m = max(m, s);
        }
        T sum = 0;
        for (long long j = 0; j < t; ++j) {
            pr[j] = exp(pr[j] - m);
            sum += pr[j];
        }
        T inv = (T)1 / sum;
        for (long long j = 0; j < t; ++j) pr[j] *= inv;
    }
}

// y[bi·t + i, hd·dh + d] = sum over j of (p ⊙ dropout)[pair, i, j] · v[bi·t + j, hd·dh + d]
extern "C" __global__ void K(attention_out)(const T* p, const T* v, long long b, long long t, long long heads,
                                            long long dh, unsigned long long drop, unsigned long long seed,
                                            double keep, T* y) {
    long long w = heads * dh;
    LOOP(o, b * t * w) {
        long long row = o / w, col = o % w, hd = col / dh, bi = row / t, i = row % t;
        long long base = ((bi * heads + hd) * t + i) * t;
        T s = 0;
        for (long long j = 0; j < t; ++j)
            s += p[base + j] * (T)drop_factor(drop, seed, keep, base + j) * v[(bi * t + j) * w + col];
        y[o] = s;
    }
}

// ds[pair, i, j] = p · (dP − Σ_j dP·p) / sqrt(dh), dP = (dO·Vᵀ) ⊙ dropout: one thread per row (pair, i).
extern "C" __global__ void K(attention_ds)(const T* p, const T* v, const T* gy, long long b, long long t,
                                           long long heads, long long dh, unsigned long long drop,
                                           unsigned long long seed, double keep, T* ds) {
    long long w = heads * dh;
    T scale = (T)1 / sqrt((T)dh);
    LOOP(r, b * heads * t) {
        long long pair = r / t, i = r % t, bi = pair / heads, hd = pair % heads;
        const T* go = gy + (bi * t + i) * w + hd * dh;
        T* dr = ds + r * t;
        const T* pr = p + r * t;
        T dot = 0;
        for (long long j = 0; j < t; ++j) {
            const T* vj = v + (bi * t + j) * w + hd * dh;
            T s = 0;
            for (long long d = 0; d < dh; ++d) s += go[d] * vj[d];
            dr[j] = s * (T)drop_factor(drop, seed, keep, r * t + j);
            dot += dr[j] * pr[j];
        }
        for (long long j = 0; j < t; ++j) dr[j] = pr[j] * (dr[j] - dot) * scale;
    }
}

// grads = [dQ, dK, dV], each [b·t, w]: dQ = dS·K, dK = dSᵀ·Q, dV = (P ⊙ dropout)ᵀ·dO, per (text, head).
extern "C" __global__ void K(attention_grads)(const T* q, const T* k, const T* p, const T* ds, const T* gy,
                                              long long b, long long t, long long heads, long long dh,
                                              unsigned long long drop, unsigned long long seed, double keep,
                                              T* grads) {
    long long w = heads * dh, n = b * t * w;
    LOOP(o, 3 * n) {
        long long which = o / n, e = o % n;
        long long row = e / w, col = e % w, hd = col / dh, bi = row / t, i = row % t;
        long long pair = bi * heads + hd;
        T s = 0;
        for (long long j = 0; j < t; ++j) {
            long long other = (bi * t + j) * w + col;
            if (which == 0) s += ds[(pair * t + i) * t + j] * k[other];
            else if (which == 1) s += ds[(pair * t + j) * t + i] * q[other];
            else {
                long long at = (pair * t + j) * t + i;
                s += p[at] * (T)drop_factor(drop, seed, keep, at) * gy[other];
            }
        }
        grads[o] = s;
    }
}

// ---- utility ----

extern "C" __global__ void K(fill_zero)(T* out, long long len) {
    LOOP(i, len) out[i] = (T)0;
}

// ---- optimizer steps (backend/mod.rs: Update; kiln/src/optim.rs: sgd, adam, the host's same formulas) ----

// Zero below f32's normal range, as the host's optimizers flush their moments.
__device__ T flush_tiny(T x) { return fabs(x) < (T)1.17549435e-38 ? (T)0 : x; }

// w −= lr·g; with momentum: v = μv − lr·g, w += v (Nesterov: w += μv − lr·g).
extern "C" __global__ void K(sgd_step)(T* w, const T* g, T* v, long long len, double lr_, double mu_, int nesterov) {
    T lr = (T)lr_, mu = (T)mu_;
    LOOP(i, len) {
        if (mu == (T)0) {
            w[i] -= lr * g[i];
            continue;
        }
        T vi = flush_tiny(mu * v[i] - lr * g[i]);
        v[i] = vi;
        w[i] += nesterov ? mu * vi - lr * g[i] : vi;
    }
}

// w *= decay; m += (g − m)·c1; v += (g² − v)·c2; w −= alpha·m / (√v + eps).
extern "C" __global__ void K(adam_step)(T* w, const T* g, T* m, T* v, long long len, double alpha_, double c1_,
                                        double c2_, double eps_, double decay_) {
    T alpha = (T)alpha_, c1 = (T)c1_, c2 = (T)c2_, eps = (T)eps_, decay = (T)decay_;
    LOOP(i, len) {
        T gi = g[i], wi = w[i];
        if (decay != (T)1) wi *= decay;
        T mi = flush_tiny(m[i] + (gi - m[i]) * c1);
        T vi = flush_tiny(v[i] + (gi * gi - v[i]) * c2);
        m[i] = mi;
        v[i] = vi;
        w[i] = wi - alpha * mi / (sqrt(vi) + eps);
    }
}

// Lazy Adam over rows of `cols`: a row whose gradient is all zero keeps its weights and moments.
extern "C" __global__ void K(adam_rows_step)(T* w, const T* g, T* m, T* v, long long rows, long long cols,
                                             double alpha_, double c1_, double c2_, double eps_) {
    T alpha = (T)alpha_, c1 = (T)c1_, c2 = (T)c2_, eps = (T)eps_;
    LOOP(r, rows) {
        long long at = r * cols;
        bool reached = false;
        for (long long j = 0; j < cols && !reached; ++j) reached = g[at + j] != (T)0 || g[at + j] != g[at + j];
        if (!reached) continue;
        for (long long i = at; i < at + cols; ++i) {
            T gi = g[i];
            T mi = flush_tiny(m[i] + (gi - m[i]) * c1);
            T vi = flush_tiny(v[i] + (gi * gi - v[i]) * c2);
            m[i] = mi;
            v[i] = vi;
            w[i] -= alpha * mi / (sqrt(vi) + eps);
        }
    }
}

// v = ρv + (1 − ρ)g²; step = lr·g / √(v + eps); w −= step, or m = μm + step, w −= m.
extern "C" __global__ void K(rmsprop_step)(T* w, const T* g, T* v, T* m, long long len, double lr_, double rho_,
                                           double omr_, double mu_, double eps_) {
    T lr = (T)lr_, rho = (T)rho_, omr = (T)omr_, mu = (T)mu_, eps = (T)eps_;
    LOOP(i, len) {
        T gi = g[i];
        T vi = flush_tiny(rho * v[i] + omr * gi * gi);
        v[i] = vi;
        T step = lr * gi / sqrt(vi + eps);
        if (mu > (T)0) {
            T mi = flush_tiny(mu * m[i] + step);
            m[i] = mi;
            w[i] -= mi;
        } else {
            w[i] -= step;
        }
    }
}

// a += g²; w −= lr·g / √(a + eps).
extern "C" __global__ void K(adagrad_step)(T* w, const T* g, T* a, long long len, double lr_, double eps_) {
    T lr = (T)lr_, eps = (T)eps_;
    LOOP(i, len) {
        T gi = g[i];
        T ai = a[i] + gi * gi;
        a[i] = ai;
        w[i] -= lr * gi / sqrt(ai + eps);
    }
}
