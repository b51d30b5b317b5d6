// Direct multi-channel KS x KS convolution (zero padding, same size) fused with a layer's
// elementwise passes, for small channel counts: one thread per (image, pixel) computes every
// output channel there in registers; the stencils sit in shared memory.
//
// Compile-time: T, activation(z, s, ds) (see elementwise.cu), BLOCK (threads per block), and
//   KS            the stencil's size (odd), R = KS / 2,
//   C_FROM, C_TO  channels of the input and the output of the product,
//   FLIP          0: the correlation  Z[t, y, x] = sum_{f,a,b} w[t, f, a, b] U[f, y + a - R, x + b - R]
//                    (the stencil w is (C_TO, C_FROM, KS, KS): the transform's K);
//                 1: its transpose    Z[t, y, x] = sum_{f,a,b} w[f, t, a, b] U[f, y - a + R, x - b + R]
//                    (w is (C_FROM, C_TO, KS, KS): K^T, the exact adjoint, zero padding included),
// Images are rows of C x H x W entries, channel-major, C-contiguous.

#define R (KS / 2)
#define KK (KS * KS)
#define N_W (C_TO * C_FROM * KK)
#if FLIP
#define W_INDEX(t, f, a, b) ((((f) * C_TO + (t)) * KS + (a)) * KS + (b))
#define SHIFT(a) (R - (a))
#else
#define W_INDEX(t, f, a, b) ((((t) * C_FROM + (f)) * KS + (a)) * KS + (b))
#define SHIFT(a) ((a) - R)
#endif
#define W_AT(w, t, f, a, b) w[W_INDEX(t, f, a, b)]

// Entry i of the loops over the s H W pixels of a batch: its image and its pixel p = y W + x there.
struct Pixel {
    long long image;
    int p, y, x;
};

__device__ __forceinline__ Pixel pixel(const long long i, const int H, const int W)
{
    Pixel q;
    q.image = i / ((long long)H * W);
    q.p = (int)(i - q.image * H * W);
    q.y = q.p / W;
    q.x = q.p % W;
    return q;
}

// acc[t] += sum_{f,a,b} W_AT(w, t, f, a, b) U[f, y + SHIFT(a), x + SHIFT(b)] with U[f] = u[f] (or u[f] v[f]
// when PRODUCT: the transpose of a step reads G = D lam without storing it)
template <int PRODUCT>
__device__ __forceinline__ void correlate(T* acc, const T* w, const T* u, const T* v, const int y, const int x,
                                          const int H, const int W)
{
    const long long HW = (long long)H * W;
    for (int f = 0; f < C_FROM; ++f) {
        for (int a = 0; a < KS; ++a) {
            const int yy = y + SHIFT(a);
            if (yy < 0 || yy >= H) continue;
            for (int b = 0; b < KS; ++b) {
                const int xx = x + SHIFT(b);
                if (xx < 0 || xx >= W) continue;
                const long long k = f * HW + (long long)yy * W + xx;
                const T value = PRODUCT ? u[k] * v[k] : u[k];
                for (int t = 0; t < C_TO; ++t) acc[t] += W_AT(w, t, f, a, b) * value;
            }
        }
    }
}

// the step: out = X + c sigma(U * w + b), D = c sigma'(U * w + b)
extern "C" __global__ void conv_step(const T* U, const T* w, const T* b, const T c, const T* X, T* out, T* D,
                                     const long long s, const int H, const int W, const int has_x, const int has_d)
{
    __shared__ T ws[N_W];
    to_shared(ws, w, N_W);
    __syncthreads();
    const T bias = b[0];
    const long long HW = (long long)H * W;
    GRID_STRIDE(i, s * HW) {
        const Pixel px = pixel(i, H, W);
        T acc[C_TO];
        for (int t = 0; t < C_TO; ++t) acc[t] = 0;
        correlate<0>(acc, ws, U + px.image * C_FROM * HW, U, px.y, px.x, H, W);
        for (int t = 0; t < C_TO; ++t) {
            const long long o = (px.image * C_TO + t) * HW + px.p;
            T sv, ds;
            activation(acc[t] + bias, sv, ds);
            out[o] = has_x ? X[o] + c * sv : c * sv;
            if (has_d) D[o] = c * ds;
        }
    }
}

// the tangent: out = dX + D (dU * w + U * dw + db)
extern "C" __global__ void conv_tangent(const T* dU, const T* w, const T* U, const T* dw, const T* db, const T* D,
                                        const T* dX, T* out, const long long s, const int H, const int W,
                                        const int has_x)
{
    __shared__ T ws[2 * N_W];
    to_shared(ws, w, N_W);
    to_shared(ws + N_W, dw, N_W);
    __syncthreads();
    const T bias = db[0];
    const long long HW = (long long)H * W;
    GRID_STRIDE(i, s * HW) {
        const Pixel px = pixel(i, H, W);
        T acc[C_TO];
        for (int t = 0; t < C_TO; ++t) acc[t] = bias;
        correlate<0>(acc, ws, dU + px.image * C_FROM * HW, dU, px.y, px.x, H, W);
        correlate<0>(acc, ws + N_W, U + px.image * C_FROM * HW, U, px.y, px.x, H, W);
        for (int t = 0; t < C_TO; ++t) {
            const long long o = (px.image * C_TO + t) * HW + px.p;
            out[o] = has_x ? dX[o] + D[o] * acc[t] : D[o] * acc[t];
        }
    }
}

// the transpose of a step's linearisation in its input: out = lam_V + (D lam) * w, from a module
// compiled with the opposite FLIP and exchanged channel counts (so C_FROM here is the step's C_TO)
extern "C" __global__ void conv_cotangent(const T* D, const T* lam, const T* w, const T* lam_V, T* out,
                                          const long long s, const int H, const int W, const int has_lam_V)
{
    __shared__ T ws[N_W];
    to_shared(ws, w, N_W);
    __syncthreads();
    const long long HW = (long long)H * W;
    GRID_STRIDE(i, s * HW) {
        const Pixel px = pixel(i, H, W);
        T acc[C_TO];
        for (int t = 0; t < C_TO; ++t) acc[t] = 0;
        const long long first = px.image * C_FROM * HW;
        correlate<1>(acc, ws, D + first, lam + first, px.y, px.x, H, W);
        for (int t = 0; t < C_TO; ++t) {
            const long long o = (px.image * C_TO + t) * HW + px.p;
            out[o] = has_lam_V ? lam_V[o] + acc[t] : acc[t];
        }
    }
}

// Partial sums of the parameter gradient of a step whose product is U * w:
//   g[W_INDEX(t, f, a, b)] = sum over images and pixels of G[t, y, x] U[f, y + SHIFT(a), x + SHIFT(b)],
// G = D lam, and the bias's share of channel t, sum(G[t]), at N_W + t.  Each warp takes one channel
// pair (t, f) (blockIdx.x picks 8 of them, BLOCK / 32) and 32 consecutive pixels at a time, so that
// its loads are contiguous; the blocks of one blockIdx.y share their pixels (run together, they
// read them from L2 once) and stride over the images by gridDim.y runs of 32 pixels.  Row
// blockIdx.y of the partials gets this block's pairs; the caller sums the rows (a fixed order: the
// result does not depend on the timing of the blocks).
#define PAIRS (C_TO * C_FROM)
#define WARPS (BLOCK / 32)
extern "C" __global__ void conv_gradient(const T* D, const T* lam, const T* U, T* partials, const long long s,
                                         const int H, const int W)
{
    __shared__ T sums[BLOCK];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int pair = blockIdx.x * WARPS + warp;
    const bool active = pair < PAIRS;
    const int t = active ? pair / C_FROM : 0, f = active ? pair % C_FROM : 0;
    T acc[KK];
    for (int k = 0; k < KK; ++k) acc[k] = 0;
    T acc_bias = 0;
    const long long HW = (long long)H * W, total = s * HW;
    if (active) {
        for (long long i = (long long)blockIdx.y * 32 + lane; i < total; i += (long long)gridDim.y * 32) {
            const Pixel px = pixel(i, H, W);
            const long long o = (px.image * C_TO + t) * HW + px.p;
            const T g = D[o] * lam[o];
            acc_bias += g;
            const T* u = U + (px.image * C_FROM + f) * HW;
            for (int a = 0; a < KS; ++a) {
                const int yy = px.y + SHIFT(a);
                if (yy < 0 || yy >= H) continue;
                for (int b = 0; b < KS; ++b) {
                    const int xx = px.x + SHIFT(b);
                    if (xx < 0 || xx >= W) continue;
                    acc[a * KS + b] += g * u[(long long)yy * W + xx];
                }
            }
        }
    }
    // the 32 lanes of each warp added, entry by entry (k = KK: the bias), by the warp's first thread
    for (int k = 0; k <= KK; ++k) {
        sums[threadIdx.x] = k < KK ? acc[k] : acc_bias;
        __syncthreads();
        if (lane == 0 && active && (k < KK || f == 0)) {
            T sum = 0;
            for (int l = 0; l < 32; ++l) sum += sums[warp * 32 + l];
            const long long row = (long long)blockIdx.y * (N_W + C_TO);
            partials[row + (k < KK ? W_INDEX(t, f, k / KS, k % KS) : N_W + t)] = sum;
        }
        __syncthreads();
    }
}
