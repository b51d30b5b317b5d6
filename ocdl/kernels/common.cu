// What every kernel file uses, prepended after T, BLOCK and activation (ocdl/kernels/compile.py).

// A grid-stride loop: the launch's threads take the indices i < n in turn (a launch has at most
// MAX_BLOCKS blocks, so a thread may take several).
#define GRID_STRIDE(i, n)                                                                  \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n);          \
         i += (long long)blockDim.x * gridDim.x)

// dst[q] = src[q] for q < n, by the block's threads together (the caller then __syncthreads()).
__device__ __forceinline__ void to_shared(T* dst, const T* src, const int n)
{
    for (int q = threadIdx.x; q < n; q += blockDim.x) dst[q] = src[q];
}
