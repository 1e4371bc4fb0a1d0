// Shared by both instantiations of kernels.cu (f32 and f64): the grid-stride loop, the argument structs
// (mirrored by #[repr(C)] structs in mod.rs), and the activation and binary formulas of ops/unary.rs and
// ops/binary.rs as device functions. NEG_INF is −∞ in the kernels' T.

#define MAXR 6
#define NEG_INF ((T)-__longlong_as_double(0x7ff0000000000000LL))
#define LOOP(i, n) for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
                        i += (long long)blockDim.x * gridDim.x)

// Window geometry (ops/conv.rs: Window).
struct Win {
    long long n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow;
};

// A broadcast of a and b to an output of `rank` axes `dims` (n elements): sa, sb are their strides in output
// axes (0 where broadcast); da, db their own sizes aligned to the output's axes (1 where broadcast).
struct Bcast {
    long long n, rank;
    long long dims[MAXR], sa[MAXR], sb[MAXR], da[MAXR], db[MAXR];
};

// A permutation: the output's dims and, per output axis, the input's stride.
struct Perm {
    long long n, rank;
    long long dims[MAXR], strides[MAXR];
};

template <typename T> __device__ T sigm(T x) {
    if (x >= (T)0) return (T)1 / ((T)1 + exp(-x));
    T e = exp(x);
    return e / ((T)1 + e);
}

template <typename T> __device__ T normal_cdf(T x) { return (T)0.5 * erfc(-x * (T)0.70710678118654752440); }

template <typename T> __device__ T clip_p(T p) { return min(max(p, (T)1e-7), (T)1 - (T)1e-7); }

// UnaryOp codes (mod.rs: unary_code): 0 neg, 1 exp, 2 log, 3 sqrt, 4 pow(p), 5 abs, 6 relu, 7 leaky relu(p),
// 8 sigmoid, 9 tanh, 10 gelu (exact), 11 sin, 12 cos.
template <typename T> __device__ T act_f(int op, double p, T x) {
    switch (op) {
    case 0: return -x;
    case 1: return exp(x);
    case 2: return log(x);
    case 3: return sqrt(x);
    case 4: return pow(x, (T)p);
    case 5: return fabs(x);
    case 6: return x > (T)0 ? x : (T)0;
    case 7: return x > (T)0 ? x : x * (T)p;
    case 8: return sigm<T>(x);
    case 9: return tanh(x);
    case 10: return x * normal_cdf<T>(x);
    case 11: return sin(x);
    default: return cos(x);
    }
}

// dy/dx at input x with output y (UnaryOp::deriv).
template <typename T> __device__ T act_d(int op, double p, T x, T y) {
    switch (op) {
    case 0: return (T)-1;
    case 1: return y;
    case 2: return (T)1 / x;
    case 3: return (T)0.5 / y;
    case 4: return (T)p * pow(x, (T)(p - 1.0));
    case 5: return x > (T)0 ? (T)1 : (x < (T)0 ? (T)-1 : (T)0);
    case 6: return x > (T)0 ? (T)1 : (T)0;
    case 7: return x > (T)0 ? (T)1 : (T)p;
    case 8: return y * ((T)1 - y);
    case 9: return (T)1 - y * y;
    case 10: return normal_cdf<T>(x) + x * exp(-(x * x) * (T)0.5) * (T)0.3989422804014327;
    case 11: return cos(x);
    default: return -sin(x);
    }
}

// BinaryOp codes: 0 add, 1 sub, 2 mul, 3 div.
template <typename T> __device__ T bin_f(int op, T a, T b) {
    switch (op) {
    case 0: return a + b;
    case 1: return a - b;
    case 2: return a * b;
    default: return a / b;
    }
}

template <typename T> __device__ void bin_partials(int op, T a, T b, T* pa, T* pb) {
    switch (op) {
    case 0: *pa = (T)1; *pb = (T)1; break;
    case 1: *pa = (T)1; *pb = (T)-1; break;
    case 2: *pa = b; *pb = a; break;
    default: *pa = (T)1 / b; *pb = -a / (b * b); break;
    }
}

// Attention's dropout (ops/attention.rs: dropout_hash, AttentionDims::kept): SplitMix64's finalizer of
// seed + (i + 1)·γ; element i of the weights is kept when it is at least `drop` (rate·2⁶⁴), scaled by keep.
__device__ unsigned long long drop_hash(unsigned long long seed, unsigned long long i) {
    unsigned long long z = seed + (i + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// The dropout factor of element i of p: 1 without dropout, else keep or 0.
__device__ double drop_factor(unsigned long long drop, unsigned long long seed, double keep, long long i) {
    if (drop == 0) return 1.0;
    return drop_hash(seed, (unsigned long long)i) >= drop ? keep : 0.0;
}
