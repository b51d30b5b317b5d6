// Whole sweeps of networks with a small matrix, each one kernel over all N steps: the forward sweep, its tangent
// and its adjoint, for ResNet, leapfrog, Verlet and RK4.  A thread carries one example (its rows of the state, in
// registers) through every step, so a sweep is one launch instead of one or more per step.
//
// Compile-time: T, activation(z, s, ds) and common.cu (see elementwise.cu), and
//   N_IN, N_OUT  the matrices K_j (N_IN x N_OUT, row-major; at most 32 x 32),
//   A_STRIDE     numbers from K_j to K_{j+1} in the array A of the matrices (and dA of their directions),
//   P_THETA      numbers per step of theta, the N x P_THETA row-major view of the parameters (b_j last),
//   ROWS         threads per block: the rows of a block (the adjoints' partial sums are over them),
//   SWEEP_RESNET, SWEEP_LEAPFROG, SWEEP_VERLET or SWEEP_RK4: the stepper whose three kernels the module holds
//                (a module compiles only the kernels it runs).
// A is theta itself where the parameters are the matrix (Dense: A_STRIDE = P_THETA), else the stack of the
// explicit matrices (A_STRIDE = N_IN N_OUT).  The stored states and caches are step-major, N x s x width:
// X[j] is step j's.  The adjoints' gradients are in K_j's entries, then b_j (Q numbers a step).  Every kernel
// ends with (s, n_steps).

#define Q (N_IN * N_OUT + 1)
#define K_AT(A, j, f, t) A[(long long)(j) * A_STRIDE + (f) * N_OUT + (t)]
#define B_AT(th, j) th[(long long)(j) * P_THETA + P_THETA - 1]

// The outer loops of times_K and times_KT: left to the compiler where both sizes are at most 8 (it unrolls them
// fully, and nothing spills), else kept loops (unroll 1: the product's result then lives in local memory, its
// input and the inner loop in registers).  Measured with NVRTC 13.0 for sm_90 and CuPy's options, every size 1 to
// 32 (square) and lopsided Verlet matrices: left to itself the compiler unrolls both loops fully up to about 384
// entries of K_j and loads all of them at once, so that verlet_forward spilled 0.1 to 6.5 KB a thread (12 x 12,
// 16 x 16, 2 x 32 to 12 x 32 and their transposes; float32 and float64), verlet_adjoint up to 3.3 KB and
// rk4_forward up to 3 KB (12 x 12, 16 x 16); with kept loops none of them spills (rk4_forward at 32 x 32 aside,
// see there).  At 24 x 24 and 32 x 32 the compiler kept the loops itself: their machine code is the same either way.
#if N_IN <= 8 && N_OUT <= 8
#define PRODUCT_LOOP
#else
#define PRODUCT_LOOP _Pragma("unroll 1")
#endif

// z = y K_j: a row of N_IN numbers times K_j, each entry summed over f in order (y in registers, z
// too where the loop is unrolled).
__device__ __forceinline__ void times_K(T* z, const T* y, const T* A, const int j)
{
    PRODUCT_LOOP
    for (int t = 0; t < N_OUT; ++t) {
        T acc = 0;
        for (int f = 0; f < N_IN; ++f) acc += y[f] * K_AT(A, j, f, t);
        z[t] = acc;
    }
}

// v = z K_j^T: a row of N_OUT numbers times K_j's transpose, each entry summed over t in order.
__device__ __forceinline__ void times_KT(T* v, const T* z, const T* A, const int j)
{
    PRODUCT_LOOP
    for (int f = 0; f < N_IN; ++f) {
        T acc = 0;
        for (int t = 0; t < N_OUT; ++t) acc += z[t] * K_AT(A, j, f, t);
        v[f] = acc;
    }
}

// ---- What the steppers with a square K_j (N_F = N_IN = N_OUT) share: ResNet, leapfrog and RK4.
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

// Adds one layer step's gradient over a block's rows to out: its rows of G = gr (registers) and of V (Vg at
// `at`; zero past the last row) into shared memory, then add_block_gradient between barriers.
__device__ __forceinline__ void add_rows_gradient(T* out, T* Vs, T* Gs, T* Rs, const T* gr, const T* Vg,
                                                  const long long at, const bool row)
{
    T rowsum = 0;
    for (int t = 0; t < N_F; ++t) {
        rowsum += gr[t];
        Gs[threadIdx.x * N_F + t] = gr[t];
        Vs[threadIdx.x * N_F + t] = row ? Vg[at + t] : (T)0;
    }
    Rs[threadIdx.x] = rowsum;
    __syncthreads();
    add_block_gradient(out, Vs, Gs, Rs);
    __syncthreads();
}

// z = db_j + dv K_j + V dK_j: the tangent of a row's product (dv in registers, V the stored row at `at`), each
// entry summed over f in order.  Loops kept short (unroll 1, then 8): fully unrolled, nvcc spills registers for
// 32 x 32 in float64.
__device__ __forceinline__ void tangent_K(T* z, const T* dv, const T* Vg, const long long at, const T* A,
                                          const T* dA, const T dbias, const int j)
{
#pragma unroll 1
    for (int t = 0; t < N_F; ++t) {
        T acc = dbias;
#pragma unroll 8
        for (int f = 0; f < N_F; ++f) acc += dv[f] * K_AT(A, j, f, t) + Vg[at + f] * K_AT(dA, j, f, t);
        z[t] = acc;
    }
}

#ifdef SWEEP_RESNET
// ---- ResNet, Y_{j+1} = Y_j + h sigma(Y_j K_j + b_j): Ys[j] = Y_j, Ds[j] = D_j = h sigma'(Y_j K_j + b_j).

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
            for (int t = 0; t < N_F; ++t) gr[t] = row ? Ds[at + t] * lam[t] : (T)0;
            add_rows_gradient(partials + ((long long)blockIdx.x * n_steps + j) * Q, Vs, Gs, Rs, gr, Ys, at, row);
            times_KT(w, gr, A, j);
            for (int f = 0; f < N_F; ++f) lam[f] = lam[f] + w[f];
        }
        if (row)
            for (int f = 0; f < N_F; ++f) lam0[r * N_F + f] = lam[f];
    }
}

#endif

#ifdef SWEEP_VERLET
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

#endif

#ifdef SWEEP_LEAPFROG
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
            tangent_K(z, dy, Ys, at_y, A, dA, B_AT(dtheta, j), j);
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
            for (int t = 0; t < N_F; ++t) gr[t] = row ? Ds[at + t] * lam[t] : (T)0;
            add_rows_gradient(partials + ((long long)blockIdx.x * n_steps + j) * Q, Vs, Gs, Rs, gr, Ys, at_y, row);
            times_KT(w, gr, A, j);
            for (int f = 0; f < N_F; ++f) {
                const T l = lam[f];
                lam[f] = ((l + w[f]) + l) + lamp[f];
                lamp[f] = -l;
            }
        }
        if (row)
            for (int f = 0; f < N_F; ++f) {
                L0[r * N_F + f] = lam[f];
                Lprev0[r * N_F + f] = lamp[f];
            }
    }
}

#endif

#ifdef SWEEP_RK4
// ---- RK4 (ocdl.steppers.RK4) with a square K_j (N_F = N_IN = N_OUT) held over the step: four layer steps
// X + c_i sigma(V K_j + b_j), c = (h/2, h/2, h, h/6),
//   U1 = Y_j + c0 sigma(Y_j K_j + b_j),  U2 = Y_j + c1 sigma(U1 K_j + b_j),  U3 = Y_j + c2 sigma(U2 K_j + b_j),
//   Y_{j+1} = X + c3 sigma(U3 K_j + b_j),  X = (((2 U2 + U1) + U3) - Y_j) / 3,
// the stages' caches D_i = c_i sigma'(.) (the per-step order of every sum).  Ys, U1s, U2s, U3s and D0s .. D3s
// are N x s x N_F.  X is built as the stages come (2 U2 + U1 once U2 is known), so a thread holds four rows.

// z <- c sigma(z + b_j), and with store Ds[at + .] = c sigma'(z + b_j): a stage's force on a row.  The loop stays a
// loop (unroll 1), so z lives in local memory and the other three rows in registers: with all four there, nvcc
// spills registers for 32 x 32 in float64.  Even so rk4_forward is at the limit there: 254 registers with tanh,
// and with relu, identity or smoothrelu ptxas (NVRTC 13.0, sm_90) spills 60 to 68 bytes a thread.
__device__ __forceinline__ void rk4_force(T* z, const T bias, const T c, T* Ds, const long long at, const int store)
{
#pragma unroll 1
    for (int t = 0; t < N_F; ++t) {
        T sv, ds;
        activation(z[t] + bias, sv, ds);
        z[t] = c * sv;
        if (store) Ds[at + t] = c * ds;
    }
}

extern "C" __global__ void rk4_forward(const T* Y0, const T* A, const T* theta, const T h, T* Ys, T* U1s, T* U2s,
                                       T* U3s, T* D0s, T* D1s, T* D2s, T* D3s, T* YN, const int store,
                                       const long long s, const int n_steps)
{
    const T half = h * (T)0.5, sixth = h / (T)6;
    GRID_STRIDE(r, s) {
        T y[N_F], u[N_F], x[N_F], z[N_F];  // Y_j, the last stage U_i, the combination X, the force
        for (int f = 0; f < N_F; ++f) y[f] = Y0[r * N_F + f];
        for (int j = 0; j < n_steps; ++j) {
            const T bias = B_AT(theta, j);
            const long long at = ((long long)j * s + r) * N_F;
            times_K(z, y, A, j);
            rk4_force(z, bias, half, D0s, at, store);
            for (int t = 0; t < N_F; ++t) u[t] = y[t] + z[t];
            times_K(z, u, A, j);
            rk4_force(z, bias, half, D1s, at, store);
            for (int t = 0; t < N_F; ++t) {
                const T u2 = y[t] + z[t];
                x[t] = (T)2 * u2 + u[t];
                if (store) {
                    Ys[at + t] = y[t];
                    U1s[at + t] = u[t];
                }
                u[t] = u2;
            }
            times_K(z, u, A, j);
            rk4_force(z, bias, h, D2s, at, store);
            for (int t = 0; t < N_F; ++t) {
                const T u3 = y[t] + z[t];
                x[t] = ((x[t] + u3) - y[t]) / (T)3;
                if (store) {
                    U2s[at + t] = u[t];
                    U3s[at + t] = u3;
                }
                u[t] = u3;
            }
            times_K(z, u, A, j);
            rk4_force(z, bias, sixth, D3s, at, store);
            for (int t = 0; t < N_F; ++t) y[t] = x[t] + z[t];
        }
        for (int f = 0; f < N_F; ++f) YN[r * N_F + f] = y[f];
    }
}

// The sensitivity sweep: per step the stages' tangents dU_i = dY_j + D_{i-1} (dU_{i-1} K_j + U_{i-1} dK_j + db_j)
// (dU_0 = dY_j, U_0 = Y_j), dX = (((2 dU2 + dU1) + dU3) - dY_j) / 3, dY_{j+1} = dX + D3 (dU3 K_j + U3 dK_j + db_j).
extern "C" __global__ void rk4_tangent(const T* Ys, const T* U1s, const T* U2s, const T* U3s, const T* D0s,
                                       const T* D1s, const T* D2s, const T* D3s, const T* A, const T* dA,
                                       const T* dtheta, const T* dY0, T* dYN, const long long s, const int n_steps)
{
    GRID_STRIDE(r, s) {
        T dy[N_F], du[N_F], dx[N_F], z[N_F];
        for (int f = 0; f < N_F; ++f) dy[f] = dY0[r * N_F + f];
        for (int j = 0; j < n_steps; ++j) {
            const T dbias = B_AT(dtheta, j);
            const long long at = ((long long)j * s + r) * N_F;
            tangent_K(z, dy, Ys, at, A, dA, dbias, j);
            for (int t = 0; t < N_F; ++t) du[t] = dy[t] + D0s[at + t] * z[t];
            tangent_K(z, du, U1s, at, A, dA, dbias, j);
            for (int t = 0; t < N_F; ++t) {
                const T du2 = dy[t] + D1s[at + t] * z[t];
                dx[t] = (T)2 * du2 + du[t];
                du[t] = du2;
            }
            tangent_K(z, du, U2s, at, A, dA, dbias, j);
            for (int t = 0; t < N_F; ++t) {
                const T du3 = dy[t] + D2s[at + t] * z[t];
                dx[t] = ((dx[t] + du3) - dy[t]) / (T)3;
                du[t] = du3;
            }
            tangent_K(z, du, U3s, at, A, dA, dbias, j);
            for (int t = 0; t < N_F; ++t) dy[t] = dx[t] + D3s[at + t] * z[t];
        }
        for (int f = 0; f < N_F; ++f) dYN[r * N_F + f] = dy[f];
    }
}

// The adjoint sweep from lam_N = lamN down to lam_0 = lam0, the stages' transposes backward (L = lam_{j+1}, l_i
// the cotangent of U_i):
//   G3 = D3 L,    l3 = L/3 + G3 K_j^T,       G2 = D2 l3,   l2 = 2 (L/3) + G2 K_j^T,
//   G1 = D1 l2,   l1 = L/3 + G1 K_j^T,       G0 = D0 l1,   lam_j = (((l1 + l2) + l3) - L/3) + G0 K_j^T,
//   g_j = U3^T G3 + U2^T G2 + U1^T G1 + Y_j^T G0 and the sums of the G's entries, in that order;
// partial sums per block as in resnet_adjoint.  A thread holds four rows: L/3, l3, l2 (then l1), G.
extern "C" __global__ void rk4_adjoint(const T* Ys, const T* U1s, const T* U2s, const T* U3s, const T* D0s,
                                       const T* D1s, const T* D2s, const T* D3s, const T* A, const T* lamN, T* lam0,
                                       T* partials, const long long s, const int n_steps)
{
    __shared__ T Vs[ROWS * N_F];
    __shared__ T Gs[ROWS * N_F];
    __shared__ T Rs[ROWS];
    const long long groups = (s + ROWS - 1) / ROWS;
    for (long long g = blockIdx.x; g < groups; g += gridDim.x) {
        const long long r = g * ROWS + threadIdx.x;
        const bool row = r < s;
        T lam[N_F], l3[N_F], l2[N_F], gr[N_F];
        for (int f = 0; f < N_F; ++f) lam[f] = row ? lamN[r * N_F + f] : (T)0;
        for (int j = n_steps - 1; j >= 0; --j) {
            const long long at = ((long long)j * s + r) * N_F;
            T* out = partials + ((long long)blockIdx.x * n_steps + j) * Q;
            for (int t = 0; t < N_F; ++t) {
                gr[t] = row ? D3s[at + t] * lam[t] : (T)0;
                lam[t] = lam[t] / (T)3;  // from here on lam holds L/3
            }
            add_rows_gradient(out, Vs, Gs, Rs, gr, U3s, at, row);
            times_KT(l3, gr, A, j);
            for (int f = 0; f < N_F; ++f) l3[f] = lam[f] + l3[f];
            for (int t = 0; t < N_F; ++t) gr[t] = row ? D2s[at + t] * l3[t] : (T)0;
            add_rows_gradient(out, Vs, Gs, Rs, gr, U2s, at, row);
            times_KT(l2, gr, A, j);
            for (int f = 0; f < N_F; ++f) l2[f] = (T)2 * lam[f] + l2[f];
            for (int t = 0; t < N_F; ++t) gr[t] = row ? D1s[at + t] * l2[t] : (T)0;
            add_rows_gradient(out, Vs, Gs, Rs, gr, U1s, at, row);
            for (int f = 0; f < N_F; ++f) {  // times_KT's sums, one entry at a time: l1 into l2, the sum into l3
                T acc = 0;
                for (int t = 0; t < N_F; ++t) acc += gr[t] * K_AT(A, j, f, t);
                const T l1 = lam[f] + acc;
                l3[f] = ((l1 + l2[f]) + l3[f]) - lam[f];
                l2[f] = l1;
            }
            for (int t = 0; t < N_F; ++t) gr[t] = row ? D0s[at + t] * l2[t] : (T)0;
            add_rows_gradient(out, Vs, Gs, Rs, gr, Ys, at, row);
            times_KT(l2, gr, A, j);
            for (int f = 0; f < N_F; ++f) lam[f] = l3[f] + l2[f];
        }
        if (row)
            for (int f = 0; f < N_F; ++f) lam0[r * N_F + f] = lam[f];
    }
}
#endif
