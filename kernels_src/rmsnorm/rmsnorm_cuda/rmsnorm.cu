// CUDA implementation of RMSNorm (optionally fused with a residual add).
//
// One thread block per row (grid-stride over rows). Pass 1 accumulates the
// sum of squares in float32 (and, when fused, writes residual_out) while
// keeping the row in registers; a warp shuffle + shared-memory block
// reduction gives the row's inverse RMS; pass 2 writes the output. Rows too
// long for the register cache (more than 8 packs per thread, 4 when fused,
// at 512 threads) are re-read from L1/L2 in pass 2 instead. Loads and stores
// move up to 16 bytes per thread; the pack width is chosen at launch from the
// alignment of every pointer, row stride and the row length, so any hidden
// size and any element-aligned pointer works (odd sizes fall back to one
// element per access).
#include <ATen/ATen.h>
// c10/cuda/CUDAStream.h gives the same current stream as
// at::cuda::getCurrentCUDAStream() without ATen/cuda/CUDAContext.h, which
// needs the cuBLAS/cuSPARSE headers on the include path.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <initializer_list>

#if defined(__GNUC__) || defined(__clang__)
#define KB_RMS_HIDDEN __attribute__((visibility("hidden")))
#else
#define KB_RMS_HIDDEN
#endif

namespace kb_rmsnorm {

// Must match torch-ext/torch_binding.h.
struct RmsNormArgs {
  int64_t rows;
  int64_t cols;
  int64_t in_stride;
  int64_t out_stride;
  int64_t res_stride;
  int64_t res_out_stride;
  float eps;
};

namespace {

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <typename T, int N>
__device__ __forceinline__ Pack<T, N> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, N>*>(p);
}

template <typename T, int N>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, N>& v) {
  *reinterpret_cast<Pack<T, N>*>(p) = v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

// Sum of v over the block (blockDim.x is a multiple of 32). shm holds 33
// floats; the trailing __syncthreads lets the caller reuse shm right away.
__device__ __forceinline__ float block_sum(float v, float* shm) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) {
    shm[warp] = v;
  }
  __syncthreads();
  if (warp == 0) {
    float t = lane < nwarps ? shm[lane] : 0.0f;
    t = warp_sum(t);
    if (lane == 0) {
      shm[32] = t;
    }
  }
  __syncthreads();
  const float total = shm[32];
  __syncthreads();
  return total;
}

// x (+ residual) -> the value to normalize, written to residual_out when
// fused; returns it and adds its squares to ss.
template <typename T, int N, bool kFused>
__device__ __forceinline__ Pack<T, N> load_row_pack(const T* x, const T* r,
                                                    T* ro, int64_t i,
                                                    float& ss) {
  const Pack<T, N> xv = load_pack<T, N>(x + i * N);
  if constexpr (kFused) {
    const Pack<T, N> rv = load_pack<T, N>(r + i * N);
    Pack<T, N> sv;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      sv.v[j] = static_cast<T>(static_cast<float>(xv.v[j]) +
                               static_cast<float>(rv.v[j]));
      const float f = static_cast<float>(sv.v[j]);
      ss += f * f;
    }
    store_pack<T, N>(ro + i * N, sv);
    return sv;
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float f = static_cast<float>(xv.v[j]);
      ss += f * f;
    }
    return xv;
  }
}

template <typename T, int N>
__device__ __forceinline__ void store_normalized(T* o,
                                                 const T* __restrict__ weight,
                                                 const Pack<T, N>& xv,
                                                 float inv_rms, int64_t i) {
  const Pack<T, N> wv = load_pack<T, N>(weight + i * N);
  Pack<T, N> ov;
#pragma unroll
  for (int j = 0; j < N; ++j) {
    // Round the normalized value to T before the weight multiply, as
    // transformers does (`weight * hidden.to(input_dtype)`).
    const T normed = static_cast<T>(static_cast<float>(xv.v[j]) * inv_rms);
    ov.v[j] =
        static_cast<T>(static_cast<float>(wv.v[j]) * static_cast<float>(normed));
  }
  store_pack<T, N>(o + i * N, ov);
}

// kCache > 0: each thread keeps its (at most kCache) packs of the row in
// registers between the two passes, so the row is read from memory once; the
// launch guarantees npacks <= kCache * blockDim.x and blockDim.x <= 512 (the
// register budget of the cached variant). kCache == 0: rows of any
// length, pass 2 re-reads the row (from L1/L2).
//
// Outputs may alias inputs (out/input, residual_out/residual): every element
// is read and then written by the same thread, in both passes.
template <typename T, int N, bool kFused, int kCache>
__global__ void __launch_bounds__(kCache > 0 ? 512 : 1024)
    rms_norm_kernel(T* out, T* res_out, const T* in, const T* res,
                                const T* __restrict__ weight, RmsNormArgs a) {
  __shared__ float shm[33];
  const int64_t d = a.cols;
  const int64_t npacks = d / N;  // launch guarantees d % N == 0
  for (int64_t row = blockIdx.x; row < a.rows; row += gridDim.x) {
    const T* x = in + row * a.in_stride;
    const T* r = kFused ? res + row * a.res_stride : nullptr;
    T* ro = kFused ? res_out + row * a.res_out_stride : nullptr;
    T* o = out + row * a.out_stride;
    float ss = 0.0f;
    if constexpr (kCache > 0) {
      // All loads first, so they are in flight together (a store in between
      // would pin the next loads behind it: the pointers may alias).
      Pack<T, N> cache[kCache];
      Pack<T, N> rcache[kFused ? kCache : 1];
#pragma unroll
      for (int c = 0; c < kCache; ++c) {
        const int64_t i = threadIdx.x + static_cast<int64_t>(c) * blockDim.x;
        if (i < npacks) {
          cache[c] = load_pack<T, N>(x + i * N);
          if constexpr (kFused) {
            rcache[c] = load_pack<T, N>(r + i * N);
          }
        }
      }
#pragma unroll
      for (int c = 0; c < kCache; ++c) {
        const int64_t i = threadIdx.x + static_cast<int64_t>(c) * blockDim.x;
        if (i < npacks) {
          if constexpr (kFused) {
#pragma unroll
            for (int j = 0; j < N; ++j) {
              cache[c].v[j] = static_cast<T>(static_cast<float>(cache[c].v[j]) +
                                             static_cast<float>(rcache[c].v[j]));
            }
            store_pack<T, N>(ro + i * N, cache[c]);
          }
#pragma unroll
          for (int j = 0; j < N; ++j) {
            const float f = static_cast<float>(cache[c].v[j]);
            ss += f * f;
          }
        }
      }
      ss = block_sum(ss, shm);
      const float inv_rms = rsqrtf(ss / static_cast<float>(d) + a.eps);
#pragma unroll
      for (int c = 0; c < kCache; ++c) {
        const int64_t i = threadIdx.x + static_cast<int64_t>(c) * blockDim.x;
        if (i < npacks) {
          store_normalized<T, N>(o, weight, cache[c], inv_rms, i);
        }
      }
    } else {
      for (int64_t i = threadIdx.x; i < npacks; i += blockDim.x) {
        load_row_pack<T, N, kFused>(x, r, ro, i, ss);
      }
      ss = block_sum(ss, shm);
      const float inv_rms = rsqrtf(ss / static_cast<float>(d) + a.eps);
      const T* src = kFused ? ro : x;  // what pass 2 normalizes
      for (int64_t i = threadIdx.x; i < npacks; i += blockDim.x) {
        store_normalized<T, N>(o, weight, load_pack<T, N>(src + i * N),
                               inv_rms, i);
      }
    }
  }
}

inline bool aligned(const void* p, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
}

// Largest pack (in elements, <= 16 bytes) such that every pointer is aligned
// to it and every extent/stride is a multiple of it.
template <typename T>
int pick_pack(std::initializer_list<const void*> ptrs,
              std::initializer_list<int64_t> extents) {
  for (int bytes = 16; bytes > static_cast<int>(sizeof(T)); bytes /= 2) {
    const int64_t n = bytes / static_cast<int64_t>(sizeof(T));
    bool ok = true;
    for (const void* p : ptrs) {
      ok = ok && aligned(p, bytes);
    }
    for (int64_t e : extents) {
      ok = ok && (e % n == 0);
    }
    if (ok) {
      return static_cast<int>(n);
    }
  }
  return 1;
}

int sm_count() {
  // Cached per device: launches (and CUDA graph captures) make no extra
  // runtime calls after the first.
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices];
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  if (device >= 0 && device < kMaxDevices) {
    const int cached = cache[device].load(std::memory_order_relaxed);
    if (cached > 0) {
      return cached;
    }
  }
  int count = 0;
  C10_CUDA_CHECK(
      cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  count = count > 0 ? count : 1;
  if (device >= 0 && device < kMaxDevices) {
    cache[device].store(count, std::memory_order_relaxed);
  }
  return count;
}

// Packs per thread kept in registers: the fused kernel holds x and residual
// packs at once, so it caches fewer (no spills at the 128-register budget).
template <bool kFused>
constexpr int kCachePacks = kFused ? 4 : 8;
constexpr int kCachedMaxThreads = 512;  // __launch_bounds__ of the cached kernel

template <typename T, int N, bool kFused>
void launch_n(const RmsNormArgs& a, T* out, T* res_out, const T* in,
              const T* res, const T* weight, cudaStream_t stream) {
  constexpr int kCache = kCachePacks<kFused>;
  const int64_t npacks = a.cols / N;
  const int sms = sm_count();
  // Few rows: wide blocks so each row finishes fast. Many rows: 256-thread
  // blocks so several rows per SM overlap their reductions.
  const auto round32 = [](int64_t v) { return (v + 31) / 32 * 32; };
  // One-element packs (odd hidden sizes) take the streaming kernel: caching
  // them costs more registers (addresses) than it saves.
  const bool cached =
      N > 1 && npacks <= static_cast<int64_t>(kCache) * kCachedMaxThreads;
  int64_t max_threads = a.rows < 2 * static_cast<int64_t>(sms) ? 1024 : 256;
  if (cached) {
    max_threads = std::min<int64_t>(max_threads, kCachedMaxThreads);
  }
  int64_t threads = std::min<int64_t>(max_threads, round32(npacks));
  if (cached && (npacks + threads - 1) / threads > kCache) {
    threads = round32((npacks + kCache - 1) / kCache);  // <= 512
  }
  const int64_t max_blocks = static_cast<int64_t>(sms) * 256;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(a.rows, max_blocks)));
  const dim3 block(static_cast<unsigned>(threads));
  if constexpr (N > 1) {
    if (cached) {
      rms_norm_kernel<T, N, kFused, kCache><<<grid, block, 0, stream>>>(
          out, res_out, in, res, weight, a);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
  }
  rms_norm_kernel<T, N, kFused, 0><<<grid, block, 0, stream>>>(
      out, res_out, in, res, weight, a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T, bool kFused>
void launch_typed(const RmsNormArgs& a, T* out, T* res_out, const T* in,
                  const T* res, const T* weight, cudaStream_t stream) {
  int n;
  if constexpr (kFused) {
    n = pick_pack<T>({out, res_out, in, res, weight},
                     {a.cols, a.in_stride, a.out_stride, a.res_stride,
                      a.res_out_stride});
  } else {
    n = pick_pack<T>({out, in, weight}, {a.cols, a.in_stride, a.out_stride});
  }
  constexpr int kMax = static_cast<int>(16 / sizeof(T));
  switch (n) {
    case kMax:
      launch_n<T, kMax, kFused>(a, out, res_out, in, res, weight, stream);
      break;
    case kMax / 2:
      launch_n<T, kMax / 2, kFused>(a, out, res_out, in, res, weight, stream);
      break;
    case kMax / 4:
      launch_n<T, kMax / 4, kFused>(a, out, res_out, in, res, weight, stream);
      break;
    default:  // one element at a time (only reachable for 16-bit types)
      launch_n<T, 1, kFused>(a, out, res_out, in, res, weight, stream);
      break;
  }
}

template <typename T>
void launch_dtype(const RmsNormArgs& a, at::Tensor& out,
                  at::Tensor& residual_out, const at::Tensor& input,
                  const at::Tensor& residual, const at::Tensor& weight,
                  cudaStream_t stream) {
  if (residual.defined()) {
    launch_typed<T, true>(a, out.data_ptr<T>(), residual_out.data_ptr<T>(),
                          input.const_data_ptr<T>(),
                          residual.const_data_ptr<T>(),
                          weight.const_data_ptr<T>(), stream);
  } else {
    launch_typed<T, false>(a, out.data_ptr<T>(), nullptr,
                           input.const_data_ptr<T>(), nullptr,
                           weight.const_data_ptr<T>(), stream);
  }
}

}  // namespace

KB_RMS_HIDDEN void launch_rms_norm(const RmsNormArgs& args, at::Tensor& out,
                                   at::Tensor& residual_out,
                                   const at::Tensor& input,
                                   const at::Tensor& residual,
                                   const at::Tensor& weight) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  switch (input.scalar_type()) {
    case at::kFloat:
      launch_dtype<float>(args, out, residual_out, input, residual, weight,
                          stream);
      break;
    case at::kHalf:
      launch_dtype<c10::Half>(args, out, residual_out, input, residual, weight,
                              stream);
      break;
    case at::kBFloat16:
      launch_dtype<c10::BFloat16>(args, out, residual_out, input, residual,
                                  weight, stream);
      break;
    default:
      TORCH_CHECK(false, "rmsnorm: unsupported dtype ", input.scalar_type());
  }
}

}  // namespace kb_rmsnorm
