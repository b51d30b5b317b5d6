// Whole sweeps of networks with a small matrix, each one kernel over all N steps: the forward sweep, its tangent
// and its adjoint, for ResNet, leapfrog and Verlet.  A thread carries one example (its rows of the state, in
// registers) through every step, so a sweep is one launch instead of one or more per step.
//
// Compile-time: T, activation(z, s, ds) and common.cu (see elementwise.cu), and
//   N_IN, N_OUT  the matrices K_j (N_IN x N_OUT, row-major; at most 32 x 32),
//   A_STRIDE     numbers from K_j to K_{j+1} in the array A of the matrices (and dA of their directions),
//   P_THETA      numbers per step of theta, the N x P_THETA row-major view of the parameters (b_j last),
//   ROWS         threads per block: the rows of a block (the adjoints' partial sums are over them).
// A is theta itself where the parameters are the matrix (Dense: A_STRIDE = P_THETA), else the stack of the
// explicit matrices (A_STRIDE = N_IN N_OUT).  The stored states and caches are step-major, N x s x width:
// X[j] is step j's.  The adjoints' gradients are in K_j's entries, then b_j (Q numbers a step).  Every kernel
// ends with (s, n_steps).

#define Q (N_IN * N_OUT + 1)
#define K_AT(A, j, f, t) A[(long long)(j) * A_STRIDE + (f) * N_OUT + (t)]
#define B_AT(th, j) th[(long long)(j) * P_THETA + P_THETA - 1]

// z = y K_j: a row of N_IN numbers times K_j, each entry summed over f in order (z and y in registers).
__device__ __forceinline__ void times_K(T* z, const T* y, const T* A, const int j)
{
    for (int t = 0; t < N_OUT; ++t) {
        T acc = 0;
        for (int f = 0; f < N_IN; ++f) acc += y[f] * K_AT(A, j, f, t);
        z[t] = acc;
    }
}

// v = z K_j^T: a row of N_OUT numbers times K_j's transpose, each entry summed over t in order.
__device__ __forceinline__ void times_KT(T* v, const T* z, const T* A, const int j)
{
    for (int f = 0; f < N_IN; ++f) {
        T acc = 0;
        for (int t = 0; t < N_OUT; ++t) acc += z[t] * K_AT(A, j, f, t);
        v[f] = acc;
    }
}

// ---- ResNet, Y_{j+1} = Y_j + h sigma(Y_j K_j + b_j) with a square K_j (N_F = N_IN = N_OUT):
// Ys[j] = Y_j, Ds[j] = D_j = h sigma'(Y_j K_j + b_j).
#define N_F N_IN

// Adds the gradient of step j over a block's rows to out (Q numbers): Y_j^T G_j in K_j's layout, then the bias
// entry, from Vs = Y_j, Gs = G_j and Rs = the rows' sums of G_j in shared memory (between the caller's barriers).
__device__ __forceinline__ void add_block_gradient(T* out, const T* Vs, const T* Gs, const T* Rs)
{
    for (int q = threadIdx.x; q < Q; q += ROWS) {
        T sum = 0;
        if (q < N_F * N_F) {
            const int f = q / N_F, t = q % N_F;
            for (int k = 0; k < ROWS; ++k) sum += Vs[k * N_F + f] * Gs[k * N_F + t];
        } else {
            for (int k = 0; k < ROWS; ++k) sum += Rs[k];
        }
        out[q] += sum;
    }
}

// Y_{j+1} = Y_j + h sigma(Y_j K_j + b_j) from Y0 to YN; with store, Ys[j] = Y_j and Ds[j] = h sigma'(...).
extern "C" __global__ void resnet_forward(const T* Y0, const T* A, const T* theta, const T h, T* Ys, T* Ds, T* YN,
                                          const int store, const long long s, const int n_steps)
{
    GRID_STRIDE(r, s) {
        T y[N_F], z[N_F];
        for (int f = 0; f < N_F; ++f) y[f] = Y0[r * N_F + f];
        for (int j = 0; j < n_steps; ++j) {
            times_K(z, y, A, j);
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
extern "C" __global__ void resnet_tangent(const T* Ys, const T* Ds, const T* A, const T* dA, const T* dtheta,
                                          const T* dY0, T* dYN, const long long s, const int n_steps)
{
    GRID_STRIDE(r, s) {
        T dy[N_F], z[N_F];
        for (int f = 0; f < N_F; ++f) dy[f] = dY0[r * N_F + f];
        for (int j = 0; j < n_steps; ++j) {
            const long long at = ((long long)j * s + r) * N_F;
            for (int t = 0; t < N_F; ++t) {
                T acc = B_AT(dtheta, j);
                for (int f = 0; f < N_F; ++f) acc += dy[f] * K_AT(A, j, f, t) + Ys[at + f] * K_AT(dA, j, f, t);
                z[t] = acc;
            }
            for (int t = 0; t < N_F; ++t) dy[t] = dy[t] + Ds[at + t] * z[t];
        }
        for (int f = 0; f < N_F; ++f) dYN[r * N_F + f] = dy[f];
    }
}

// The adjoint sweep from lam_N = lamN down to lam_0 = lam0, with G_j = D_j lam_{j+1}:
//   lam_j = lam_{j+1} + G_j K_j^T,   g_j = (Y_j^T G_j, sum of G_j's entries)   (K_j's layout, then b_j).
// partials (gridDim.x x N x Q, zero on entry) receives each block's sums of g_j over its rows: a block takes
// groups of ROWS rows in turn and adds each group's sums; the caller sums the blocks (a fixed order).
extern "C" __global__ void resnet_adjoint(const T* Ys, const T* Ds, const T* A, const T* lamN, T* lam0,
                                          T* partials, const long long s, const int n_steps)
{
    __shared__ T Vs[ROWS * N_F];
    __shared__ T Gs[ROWS * N_F];
    __shared__ T Rs[ROWS];  // the rows' sums of G_j: the bias entry sums ROWS numbers, as the others do
    const long long groups = (s + ROWS - 1) / ROWS;
    for (long long g = blockIdx.x; g < groups; g += gridDim.x) {  // every thread of a block runs the same loops
        const long long r = g * ROWS + threadIdx.x;
        const bool row = r < s;
        T lam[N_F], gr[N_F], w[N_F];
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
            times_KT(w, gr, A, j);
            for (int f = 0; f < N_F; ++f) lam[f] = lam[f] + w[f];
            __syncthreads();
            add_block_gradient(partials + ((long long)blockIdx.x * n_steps + j) * Q, Vs, Gs, Rs);
            __syncthreads();
        }
        if (row)
            for (int f = 0; f < N_F; ++f) lam0[r * N_F + f] = lam[f];
    }
}

// ---- Verlet (the paper's eq. 4.17) with K_j of size N_IN x N_OUT: the state (Y_j, Z_j), rows of widths N_IN, N_OUT,
//   Z_{j+1} = Z_j - h sigma(Y_j K_j + b_j),          D1_j = -h sigma'(Y_j K_j + b_j),
//   Y_{j+1} = Y_j + h sigma(Z_{j+1} K_j^T + b_j),    D2_j =  h sigma'(Z_{j+1} K_j^T + b_j).
// Ys, D2s are N x s x N_IN; Zs is (N + 1) x s x N_OUT (Zs[j] = Z_j, Zs[N] = Z_N); D1s is N x s x N_OUT.

extern "C" __global__ void verlet_forward(const T* Y0, const T* Z0, const T* A, const T* theta, const T h, T* Ys,
                                          T* Zs, T* D1s, T* D2s, T* YN, T* ZN, const int store, const long long s,
                                          const int n_steps)
{
    GRID_STRIDE(r, s) {
        T y[N_IN], z[N_OUT], u[N_OUT], v[N_IN];
        for (int f = 0; f < N_IN; ++f) y[f] = Y0[r * N_IN + f];
        for (int t = 0; t < N_OUT; ++t) z[t] = Z0[r * N_OUT + t];
        for (int j = 0; j < n_steps; ++j) {
            const T bias = B_AT(theta, j);
            const long long at_y = ((long long)j * s + r) * N_IN, at_z = ((long long)j * s + r) * N_OUT;
            if (store) {
                for (int f = 0; f < N_IN; ++f) Ys[at_y + f] = y[f];
                for (int t = 0; t < N_OUT; ++t) Zs[at_z + t] = z[t];
            }
            times_K(u, y, A, j);
            for (int t = 0; t < N_OUT; ++t) {
                T sv, ds;
                activation(u[t] + bias, sv, ds);
                z[t] = z[t] + (-h) * sv;
                if (store) D1s[at_z + t] = (-h) * ds;
            }
            times_KT(v, z, A, j);
            for (int f = 0; f < N_IN; ++f) {
                T sv, ds;
                activation(v[f] + bias, sv, ds);
                y[f] = y[f] + h * sv;
                if (store) D2s[at_y + f] = h * ds;
            }
        }
        if (store)
            for (int t = 0; t < N_OUT; ++t) Zs[((long long)n_steps * s + r) * N_OUT + t] = z[t];
        for (int f = 0; f < N_IN; ++f) YN[r * N_IN + f] = y[f];
        for (int t = 0; t < N_OUT; ++t) ZN[r * N_OUT + t] = z[t];
    }
}

// dZ_{j+1} = dZ_j + D1_j (dY_j K_j + Y_j dK_j + db_j),  dY_{j+1} = dY_j + D2_j (dZ_{j+1} K_j^T + Z_{j+1} dK_j^T + db_j)
extern "C" __global__ void verlet_tangent(const T* Ys, const T* Zs, const T* D1s, const T* D2s, const T* A,
                                          const T* dA, const T* dtheta, const T* dY0, const T* dZ0, T* dYN, T* dZN,
                                          const long long s, const int n_steps)
{
    GRID_STRIDE(r, s) {
        T dy[N_IN], dz[N_OUT], u[N_OUT], v[N_IN];
        for (int f = 0; f < N_IN; ++f) dy[f] = dY0[r * N_IN + f];
        for (int t = 0; t < N_OUT; ++t) dz[t] = dZ0[r * N_OUT + t];
        for (int j = 0; j < n_steps; ++j) {
            const T dbias = B_AT(dtheta, j);
            const long long at_y = ((long long)j * s + r) * N_IN, at_z = ((long long)j * s + r) * N_OUT;
            const long long at_z1 = at_z + s * N_OUT;  // Z_{j+1}
            // The outer loops stay loops (unroll 1): unrolled, nvcc loads both matrices' entries at once and
            // spills registers for 8 x 8 in float64; their results go to local memory, the rows stay in registers.
#pragma unroll 1
            for (int t = 0; t < N_OUT; ++t) {
                T acc = dbias;
                for (int f = 0; f < N_IN; ++f)
                    acc += dy[f] * K_AT(A, j, f, t) + Ys[at_y + f] * K_AT(dA, j, f, t);
                u[t] = acc;
            }
            for (int t = 0; t < N_OUT; ++t) dz[t] = dz[t] + D1s[at_z + t] * u[t];
#pragma unroll 1
            for (int f = 0; f < N_IN; ++f) {
                T acc = dbias;
                for (int t = 0; t < N_OUT; ++t)
                    acc += dz[t] * K_AT(A, j, f, t) + Zs[at_z1 + t] * K_AT(dA, j, f, t);
                v[f] = acc;
            }
            for (int f = 0; f < N_IN; ++f) dy[f] = dy[f] + D2s[at_y + f] * v[f];
        }
        for (int f = 0; f < N_IN; ++f) dYN[r * N_IN + f] = dy[f];
        for (int t = 0; t < N_OUT; ++t) dZN[r * N_OUT + t] = dz[t];
    }
}

// The adjoint sweep from (L_Y, L_Z) at N down to 0: with G2 = D2_j L_Y and G1 = D1_j Lam,
//   Lam = L_Z + G2 K_j,   L_Y <- L_Y + G1 K_j^T,   L_Z <- Lam,
//   g_j = (G2^T Z_{j+1} + Y_j^T G1 in K_j's layout, the sums of G2's and G1's entries);
// partial sums per block as in resnet_adjoint.
extern "C" __global__ void verlet_adjoint(const T* Ys, const T* Zs, const T* D1s, const T* D2s, const T* A,
                                          const T* LYN, const T* LZN, T* LY0, T* LZ0, T* partials,
                                          const long long s, const int n_steps)
{
    __shared__ T Vs[ROWS * N_IN];   // Y_j
    __shared__ T G2s[ROWS * N_IN];
    __shared__ T Ws[ROWS * N_OUT];  // Z_{j+1}
    __shared__ T G1s[ROWS * N_OUT];
    __shared__ T Rs[ROWS];
    const long long groups = (s + ROWS - 1) / ROWS;
    for (long long g = blockIdx.x; g < groups; g += gridDim.x) {
        const long long r = g * ROWS + threadIdx.x;
        const bool row = r < s;
        T ly[N_IN], lz[N_OUT], g2[N_IN], g1[N_OUT], u[N_OUT], v[N_IN];
        for (int f = 0; f < N_IN; ++f) ly[f] = row ? LYN[r * N_IN + f] : (T)0;
        for (int t = 0; t < N_OUT; ++t) lz[t] = row ? LZN[r * N_OUT + t] : (T)0;
        for (int j = n_steps - 1; j >= 0; --j) {
            const long long at_y = ((long long)j * s + r) * N_IN, at_z = ((long long)j * s + r) * N_OUT;
            const long long at_z1 = at_z + s * N_OUT;
            T rowsum = 0;
            for (int f = 0; f < N_IN; ++f) {
                g2[f] = row ? D2s[at_y + f] * ly[f] : (T)0;
                rowsum += g2[f];
                G2s[threadIdx.x * N_IN + f] = g2[f];
                Vs[threadIdx.x * N_IN + f] = row ? Ys[at_y + f] : (T)0;
            }
            times_K(u, g2, A, j);
            for (int t = 0; t < N_OUT; ++t) {  // Lam = L_Z + G2 K, then G1 = D1 Lam
                lz[t] = lz[t] + u[t];
                g1[t] = row ? D1s[at_z + t] * lz[t] : (T)0;
                rowsum += g1[t];
                G1s[threadIdx.x * N_OUT + t] = g1[t];
                Ws[threadIdx.x * N_OUT + t] = row ? Zs[at_z1 + t] : (T)0;
            }
            times_KT(v, g1, A, j);
            for (int f = 0; f < N_IN; ++f) ly[f] = ly[f] + v[f];
            Rs[threadIdx.x] = rowsum;
            __syncthreads();
            T* out = partials + ((long long)blockIdx.x * n_steps + j) * Q;
            for (int q = threadIdx.x; q < Q; q += ROWS) {
                T sum = 0;
                if (q < N_IN * N_OUT) {
                    const int f = q / N_OUT, t = q % N_OUT;
                    for (int k = 0; k < ROWS; ++k)
                        sum += G2s[k * N_IN + f] * Ws[k * N_OUT + t] + Vs[k * N_IN + f] * G1s[k * N_OUT + t];
                } else {
                    for (int k = 0; k < ROWS; ++k) sum += Rs[k];
                }
                out[q] += sum;
            }
            __syncthreads();
        }
        if (row) {
            for (int f = 0; f < N_IN; ++f) LY0[r * N_IN + f] = ly[f];
            for (int t = 0; t < N_OUT; ++t) LZ0[r * N_OUT + t] = lz[t];
        }
    }
}

// ---- Leapfrog (the paper's eq. 4.16) with a square K_j (N_F = N_IN = N_OUT): the state (Y_j, Y_{j-1}),
//   Y_{j+1} = (Y_j + h^2 sigma(Y_j K_j + b_j)) + Y_j - Y_{j-1},   D_j = h^2 sigma'(Y_j K_j + b_j)
// (the per-step order: the layer step, then + Y_j, then - Y_{j-1}).  Ys is (N + 1) x s x N_F with Ys[0] =
// Y_{-1} and Ys[j + 1] = Y_j; Ds[j] = D_j.

extern "C" __global__ void leapfrog_forward(const T* Y0, const T* Yprev0, const T* A, const T* theta, const T hh,
                                            T* Ys, T* Ds, T* YN, T* YprevN, const int store, const long long s,
                                            const int n_steps)
{
    GRID_STRIDE(r, s) {
        T y[N_F], yp[N_F], z[N_F];
        for (int f = 0; f < N_F; ++f) {
            y[f] = Y0[r * N_F + f];
            yp[f] = Yprev0[r * N_F + f];
        }
        if (store)
            for (int f = 0; f < N_F; ++f) Ys[r * N_F + f] = yp[f];
        for (int j = 0; j < n_steps; ++j) {
            times_K(z, y, A, j);
            const T bias = B_AT(theta, j);
            const long long at = ((long long)j * s + r) * N_F;
            for (int t = 0; t < N_F; ++t) {
                T sv, ds;
                activation(z[t] + bias, sv, ds);
                if (store) {
                    Ys[at + s * N_F + t] = y[t];
                    Ds[at + t] = hh * ds;
                }
                const T next = ((y[t] + hh * sv) + y[t]) - yp[t];
                yp[t] = y[t];
                y[t] = next;
            }
        }
        for (int f = 0; f < N_F; ++f) {
            YN[r * N_F + f] = y[f];
            YprevN[r * N_F + f] = yp[f];
        }
    }
}

// dY_{j+1} = (dY_j + D_j (dY_j K_j + Y_j dK_j + db_j)) + dY_j - dY_{j-1} (the sensitivity sweep).
extern "C" __global__ void leapfrog_tangent(const T* Ys, const T* Ds, const T* A, const T* dA, const T* dtheta,
                                            const T* dY0, const T* dYprev0, T* dYN, T* dYprevN, const long long s,
                                            const int n_steps)
{
    GRID_STRIDE(r, s) {
        T dy[N_F], dyp[N_F], z[N_F];
        for (int f = 0; f < N_F; ++f) {
            dy[f] = dY0[r * N_F + f];
            dyp[f] = dYprev0[r * N_F + f];
        }
        for (int j = 0; j < n_steps; ++j) {
            const long long at = ((long long)j * s + r) * N_F, at_y = at + s * N_F;  // Y_j is Ys[j + 1]
            // Loops kept short (unroll 1, then 8): fully unrolled, nvcc spills registers for 32 x 32 in float64.
#pragma unroll 1
            for (int t = 0; t < N_F; ++t) {
                T acc = B_AT(dtheta, j);
#pragma unroll 8
                for (int f = 0; f < N_F; ++f) acc += dy[f] * K_AT(A, j, f, t) + Ys[at_y + f] * K_AT(dA, j, f, t);
                z[t] = acc;
            }
            for (int t = 0; t < N_F; ++t) {
                const T next = ((dy[t] + Ds[at + t] * z[t]) + dy[t]) - dyp[t];
                dyp[t] = dy[t];
                dy[t] = next;
            }
        }
        for (int f = 0; f < N_F; ++f) {
            dYN[r * N_F + f] = dy[f];
            dYprevN[r * N_F + f] = dyp[f];
        }
    }
}

// The adjoint sweep from (L, L') at N down to 0: with G_j = D_j L,
//   (L, L') <- ((L + G_j K_j^T) + L + L', -L),   g_j = (Y_j^T G_j, sum of G_j's entries);
// partial sums per block as in resnet_adjoint.
extern "C" __global__ void leapfrog_adjoint(const T* Ys, const T* Ds, const T* A, const T* LN, const T* LprevN,
                                            T* L0, T* Lprev0, T* partials, const long long s, const int n_steps)
{
    __shared__ T Vs[ROWS * N_F];
    __shared__ T Gs[ROWS * N_F];
    __shared__ T Rs[ROWS];
    const long long groups = (s + ROWS - 1) / ROWS;
    for (long long g = blockIdx.x; g < groups; g += gridDim.x) {
        const long long r = g * ROWS + threadIdx.x;
        const bool row = r < s;
        T lam[N_F], lamp[N_F], gr[N_F], w[N_F];
        for (int f = 0; f < N_F; ++f) {
            lam[f] = row ? LN[r * N_F + f] : (T)0;
            lamp[f] = row ? LprevN[r * N_F + f] : (T)0;
        }
        for (int j = n_steps - 1; j >= 0; --j) {
            const long long at = ((long long)j * s + r) * N_F, at_y = at + s * N_F;
            T rowsum = 0;
            for (int t = 0; t < N_F; ++t) {
                gr[t] = row ? Ds[at + t] * lam[t] : (T)0;
                rowsum += gr[t];
                Gs[threadIdx.x * N_F + t] = gr[t];
                Vs[threadIdx.x * N_F + t] = row ? Ys[at_y + t] : (T)0;
            }
            Rs[threadIdx.x] = rowsum;
            times_KT(w, gr, A, j);
            for (int f = 0; f < N_F; ++f) {
                const T l = lam[f];
                lam[f] = ((l + w[f]) + l) + lamp[f];
                lamp[f] = -l;
            }
            __syncthreads();
            add_block_gradient(partials + ((long long)blockIdx.x * n_steps + j) * Q, Vs, Gs, Rs);
            __syncthreads();
        }
        if (row)
            for (int f = 0; f < N_F; ++f) {
                L0[r * N_F + f] = lam[f];
                Lprev0[r * N_F + f] = lamp[f];
            }
    }
}
