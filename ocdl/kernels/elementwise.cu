// The elementwise passes of a layer step after a GEMM (large dense transforms), each one kernel.
//
// Prepended at compile time (ocdl/kernels/compile.py): `typedef float|double T;`,
// `activation(z, s, ds)`, which sets s = sigma(z) and ds = sigma'(z), and common.cu.
// Every array is C-contiguous with n entries; a flag says whether an optional one is given.

// out = X + c sigma(Z + b),  D = c sigma'(Z + b)
extern "C" __global__ void step_epilogue(const T* Z, const T* b, const T c, const T* X, T* out, T* D,
                                         const long long n, const int has_x, const int has_d)
{
    const T bias = b[0];
    GRID_STRIDE(i, n) {
        T s, ds;
        activation(Z[i] + bias, s, ds);
        out[i] = has_x ? X[i] + c * s : c * s;
        if (has_d) D[i] = c * ds;
    }
}

// out = dX + D (Z1 + Z2 + db)   (Z2, dX optional; out may be Z1)
extern "C" __global__ void tangent_epilogue(const T* Z1, const T* Z2, const T* db, const T* D, const T* dX, T* out,
                                            const long long n, const int has_z2, const int has_x)
{
    const T bias = db[0];
    GRID_STRIDE(i, n) {
        T z = Z1[i] + bias;
        if (has_z2) z += Z2[i];
        out[i] = has_x ? dX[i] + D[i] * z : D[i] * z;
    }
}
