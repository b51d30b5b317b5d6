// Layer step, tangent, transpose and parameter gradient for a small explicit matrix (at most 32 x 32):
// each a single kernel, the product with the matrix done in registers, the matrix in shared memory.
//
// Compile-time: T, activation(z, s, ds) and common.cu (see elementwise.cu), and
//   N_IN, N_OUT   the matrix K (N_IN x N_OUT, row-major) of the transform,
//   TRANSPOSE     0: the layer applies A = K (rows of width N_IN to N_OUT); 1: A = K^T,
// so a step maps rows of width N_FROM to N_TO.  All arrays are C-contiguous, s rows.

#if TRANSPOSE
#define N_FROM N_OUT
#define N_TO N_IN
#define A_AT(M, f, t) M[(t) * N_OUT + (f)]
#else
#define N_FROM N_IN
#define N_TO N_OUT
#define A_AT(M, f, t) M[(f) * N_OUT + (t)]
#endif
#define N_K (N_IN * N_OUT)

// out = X + c sigma(V A + b), D = c sigma'(V A + b); one thread per entry of out
extern "C" __global__ void dense_step(const T* V, const T* K, const T* b, const T c, const T* X, T* out, T* D,
                                      const long long s, const int has_x, const int has_d)
{
    __shared__ T Ks[N_K];
    to_shared(Ks, K, N_K);
    __syncthreads();
    const T bias = b[0];
    GRID_STRIDE(i, s * N_TO) {
        const long long row = i / N_TO;
        const int t = (int)(i - row * N_TO);
        const T* v = V + row * N_FROM;
        T z = 0;
        for (int f = 0; f < N_FROM; ++f) z += v[f] * A_AT(Ks, f, t);
        T sv, ds;
        activation(z + bias, sv, ds);
        out[i] = has_x ? X[i] + c * sv : c * sv;
        if (has_d) D[i] = c * ds;
    }
}

// out = dX + D (dV A + V dA + db)
extern "C" __global__ void dense_tangent(const T* V, const T* dV, const T* K, const T* dK, const T* db, const T* D,
                                         const T* dX, T* out, const long long s, const int has_x)
{
    __shared__ T Ks[N_K];
    __shared__ T dKs[N_K];
    to_shared(Ks, K, N_K);
    to_shared(dKs, dK, N_K);
    __syncthreads();
    const T bias = db[0];
    GRID_STRIDE(i, s * N_TO) {
        const long long row = i / N_TO;
        const int t = (int)(i - row * N_TO);
        const T* v = V + row * N_FROM;
        const T* dv = dV + row * N_FROM;
        T z = bias;
        for (int f = 0; f < N_FROM; ++f) z += dv[f] * A_AT(Ks, f, t) + v[f] * A_AT(dKs, f, t);
        out[i] = has_x ? dX[i] + D[i] * z : D[i] * z;
    }
}

// out = lam_V + (D lam) A^T; one thread per entry of out (rows of width N_FROM)
extern "C" __global__ void dense_cotangent(const T* K, const T* D, const T* lam, const T* lam_V, T* out,
                                           const long long s, const int has_lam_V)
{
    __shared__ T Ks[N_K];
    to_shared(Ks, K, N_K);
    __syncthreads();
    GRID_STRIDE(i, s * N_FROM) {
        const long long row = i / N_FROM;
        const int f = (int)(i - row * N_FROM);
        const T* d = D + row * N_TO;
        const T* l = lam + row * N_TO;
        T g = 0;
        for (int t = 0; t < N_TO; ++t) g += d[t] * l[t] * A_AT(Ks, f, t);
        out[i] = has_lam_V ? lam_V[i] + g : g;
    }
}

// Partial sums, one row of partials per block, of the gradient of <V A + b, G> with G = D lam:
// entry q = i N_OUT + o of K's layout (sum over rows of V[:, f] G[:, t], (f, t) = (i, o), or (o, i)
// with TRANSPOSE), then the bias sum(G) at q = N_K.  Blocks take chunks of ROWS rows in turn; the
// caller sums the partials over blocks (a fixed order: the result does not depend on the timing).
#define ROWS 32
#define N_Q (N_K + 1)
#define Q_PER_THREAD ((N_Q + BLOCK - 1) / BLOCK)
extern "C" __global__ void dense_gradient(const T* V, const T* D, const T* lam, T* partials, const long long s)
{
    __shared__ T Vs[ROWS * N_FROM];
    __shared__ T Gs[ROWS * N_TO];
    T acc[Q_PER_THREAD];
    for (int k = 0; k < Q_PER_THREAD; ++k) acc[k] = 0;
    for (long long r0 = (long long)blockIdx.x * ROWS; r0 < s; r0 += (long long)gridDim.x * ROWS) {
        const int rows = (int)(s - r0 < ROWS ? s - r0 : ROWS);
        for (int q = threadIdx.x; q < ROWS * N_FROM; q += blockDim.x)
            Vs[q] = q < rows * N_FROM ? V[r0 * N_FROM + q] : (T)0;
        for (int q = threadIdx.x; q < ROWS * N_TO; q += blockDim.x)
            Gs[q] = q < rows * N_TO ? D[r0 * N_TO + q] * lam[r0 * N_TO + q] : (T)0;
        __syncthreads();
        for (int k = 0; k < Q_PER_THREAD; ++k) {
            const int q = threadIdx.x + k * BLOCK;
            if (q < N_K) {
#if TRANSPOSE
                const int f = q % N_OUT, t = q / N_OUT;
#else
                const int f = q / N_OUT, t = q % N_OUT;
#endif
                T sum = 0;
                for (int r = 0; r < rows; ++r) sum += Vs[r * N_FROM + f] * Gs[r * N_TO + t];
                acc[k] += sum;
            } else if (q == N_K) {
                T sum = 0;
                for (int r = 0; r < rows * N_TO; ++r) sum += Gs[r];
                acc[k] += sum;
            }
        }
        __syncthreads();
    }
    for (int k = 0; k < Q_PER_THREAD; ++k) {
        const int q = threadIdx.x + k * BLOCK;
        if (q < N_Q) partials[(long long)blockIdx.x * N_Q + q] = acc[k];
    }
}
