// Whole sweeps of a ResNet with a small dense layer, Y_{j+1} = Y_j + h sigma(Y_j K_j + b_j), j = 0..N-1:
// the forward sweep, its tangent and its adjoint, each one kernel over all N steps.  A thread carries one
// example (one row, N_F numbers in registers) through every step, so a sweep is one launch instead of one
// or more per step.
//
// Compile-time: T, activation(z, s, ds) and common.cu (see elementwise.cu), and
//   N_F    the width of the rows (K_j is N_F x N_F, at most 32),
//   ROWS   threads per block: the rows of a block (the adjoint's partial sums are over them).
// theta is the N x P row-major view of the parameters: step j's K_j (N_F x N_F, row-major), then b_j.
// The states Ys and caches Ds (D_j = h sigma'(Y_j K_j + b_j)) are N x s x N_F, step-major: Ys[j] is Y_j.

#define P (N_F * N_F + 1)
#define K_AT(th, j, f, t) th[(long long)(j) * P + (f) * N_F + (t)]
#define B_AT(th, j) th[(long long)(j) * P + N_F * N_F]

// Y_{j+1} = Y_j + h sigma(Y_j K_j + b_j) from Y0 to YN; with store, Ys[j] = Y_j and Ds[j] = h sigma'(...).
extern "C" __global__ void resnet_forward(const T* Y0, const T* theta, const T h, T* Ys, T* Ds, T* YN,
                                          const long long s, const int n_steps, const int store)
{
    GRID_STRIDE(r, s) {
        T y[N_F], z[N_F];
        for (int f = 0; f < N_F; ++f) y[f] = Y0[r * N_F + f];
        for (int j = 0; j < n_steps; ++j) {
            for (int t = 0; t < N_F; ++t) {
                T acc = 0;
                for (int f = 0; f < N_F; ++f) acc += y[f] * K_AT(theta, j, f, t);
                z[t] = acc;
            }
            const T bias = B_AT(theta, j);
            const long long at = ((long long)j * s + r) * N_F;
            for (int t = 0; t < N_F; ++t) {
                T sv, ds;
                activation(z[t] + bias, sv, ds);
                if (store) {
                    Ys[at + t] = y[t];
                    Ds[at + t] = h * ds;
                }
                y[t] = y[t] + h * sv;
            }
        }
        for (int f = 0; f < N_F; ++f) YN[r * N_F + f] = y[f];
    }
}

// dY_{j+1} = dY_j + D_j (dY_j K_j + Y_j dK_j + db_j) from dY0 to dYN (the sensitivity sweep).
extern "C" __global__ void resnet_tangent(const T* Ys, const T* Ds, const T* theta, const T* dtheta, const T* dY0,
                                          T* dYN, const long long s, const int n_steps)
{
    GRID_STRIDE(r, s) {
        T dy[N_F], z[N_F];
        for (int f = 0; f < N_F; ++f) dy[f] = dY0[r * N_F + f];
        for (int j = 0; j < n_steps; ++j) {
            const long long at = ((long long)j * s + r) * N_F;
            for (int t = 0; t < N_F; ++t) {
                T acc = B_AT(dtheta, j);
                for (int f = 0; f < N_F; ++f) acc += dy[f] * K_AT(theta, j, f, t) + Ys[at + f] * K_AT(dtheta, j, f, t);
                z[t] = acc;
            }
            for (int t = 0; t < N_F; ++t) dy[t] = dy[t] + Ds[at + t] * z[t];
        }
        for (int f = 0; f < N_F; ++f) dYN[r * N_F + f] = dy[f];
    }
}

// The adjoint sweep from lam_N = lamN down to lam_0 = lam0, with G_j = D_j lam_{j+1}:
//   lam_j = lam_{j+1} + G_j K_j^T,   g_j = (Y_j^T G_j, sum of G_j's entries)   (K_j's layout, then b_j).
// partials (gridDim.x x N x P, zero on entry) receives each block's sums of g_j over its rows: a block takes
// groups of ROWS rows in turn and adds each group's sums; the caller sums the blocks (a fixed order).
extern "C" __global__ void resnet_adjoint(const T* Ys, const T* Ds, const T* theta, const T* lamN, T* lam0,
                                          T* partials, const long long s, const int n_steps)
{
    __shared__ T Vs[ROWS * N_F];
    __shared__ T Gs[ROWS * N_F];
    __shared__ T Rs[ROWS];  // the rows' sums of G_j: the bias entry sums ROWS numbers, as the others do
    const long long groups = (s + ROWS - 1) / ROWS;
    for (long long g = blockIdx.x; g < groups; g += gridDim.x) {  // every thread of a block runs the same loops
        const long long r = g * ROWS + threadIdx.x;
        const bool row = r < s;
        T lam[N_F], gr[N_F];
        for (int f = 0; f < N_F; ++f) lam[f] = row ? lamN[r * N_F + f] : (T)0;
        for (int j = n_steps - 1; j >= 0; --j) {
            const long long at = ((long long)j * s + r) * N_F;
            T rowsum = 0;
            for (int t = 0; t < N_F; ++t) {
                gr[t] = row ? Ds[at + t] * lam[t] : (T)0;
                rowsum += gr[t];
                Gs[threadIdx.x * N_F + t] = gr[t];
                Vs[threadIdx.x * N_F + t] = row ? Ys[at + t] : (T)0;
            }
            Rs[threadIdx.x] = rowsum;
            for (int f = 0; f < N_F; ++f) {
                T acc = 0;
                for (int t = 0; t < N_F; ++t) acc += gr[t] * K_AT(theta, j, f, t);
                lam[f] = lam[f] + acc;
            }
            __syncthreads();
            T* out = partials + ((long long)blockIdx.x * n_steps + j) * P;
            for (int q = threadIdx.x; q < P; q += ROWS) {
                T sum = 0;
                if (q < N_F * N_F) {
                    const int f = q / N_F, t = q % N_F;
                    for (int k = 0; k < ROWS; ++k) sum += Vs[k * N_F + f] * Gs[k * N_F + t];
                } else {
                    for (int k = 0; k < ROWS; ++k) sum += Rs[k];
                }
                out[q] += sum;
            }
            __syncthreads();
        }
        if (row)
            for (int f = 0; f < N_F; ++f) lam0[r * N_F + f] = lam[f];
    }
}
