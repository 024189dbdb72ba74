// CUDA implementation of the rotary position embedding.
//
// One launch covers q and k. Each thread block works on one token (batch,
// seq position) at a time (grid-stride over tokens): threadIdx.x walks the
// packs of the first half of head_dim, threadIdx.y the heads of q followed
// by the heads of k. A thread loads its cos/sin packs (both halves) once per
// token and keeps them in registers across the heads it handles; for each
// head it loads the pack at i and the pack at i + head_dim/2, rotates them in
// float32 and stores both, so the output may be the input itself. Packs move
// up to 16 bytes; the width is chosen at launch from the alignment of every
// pointer and stride and from head_dim/2, falling back to one element.
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
#define KB_ROT_HIDDEN __attribute__((visibility("hidden")))
#else
#define KB_ROT_HIDDEN
#endif

namespace kb_rotary {

// Must match torch-ext/torch_binding.h.
struct RotaryArgs {
  int64_t batch;
  int64_t seq;
  int64_t q_heads;
  int64_t k_heads;
  int64_t head_dim;
  int64_t q_stride[3];
  int64_t k_stride[3];
  int64_t q_out_stride[3];
  int64_t k_out_stride[3];
  int64_t cos_stride[2];
  int64_t sin_stride[2];
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

// kCached: the launch guarantees one pack per thread (npacks <= blockDim.x),
// so cos/sin stay in registers across all heads of the token. Otherwise
// (very large head_dim) each thread loops over its packs and reloads cos/sin
// per head (from L1).
template <typename T, int N, bool kCached>
__global__ void __launch_bounds__(256)
    rotary_kernel(T* q_out, T* k_out, const T* q, const T* k,
                  const T* __restrict__ cos, const T* __restrict__ sin,
                  RotaryArgs a) {
  const int64_t half = a.head_dim / 2;
  const int64_t npacks = half / N;  // launch guarantees half % N == 0
  const int64_t tokens = a.batch * a.seq;
  const int64_t heads = a.q_heads + a.k_heads;
  const int64_t i = threadIdx.x;
  if (kCached && i >= npacks) {
    return;
  }
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const int64_t b = t / a.seq;
    const int64_t p = t - b * a.seq;
    const T* crow = cos + b * a.cos_stride[0] + p * a.cos_stride[1];
    const T* srow = sin + b * a.sin_stride[0] + p * a.sin_stride[1];
    for (int64_t pk = i; pk < npacks; pk += blockDim.x) {
      const int64_t off = pk * N;
      const Pack<T, N> c1 = load_pack<T, N>(crow + off);
      const Pack<T, N> c2 = load_pack<T, N>(crow + off + half);
      const Pack<T, N> s1 = load_pack<T, N>(srow + off);
      const Pack<T, N> s2 = load_pack<T, N>(srow + off + half);
      for (int64_t h = threadIdx.y; h < heads; h += blockDim.y) {
        const bool is_q = h < a.q_heads;
        const int64_t hh = is_q ? h : h - a.q_heads;
        // Select scalars, not pointers into the parameter arrays (which
        // would force a local-memory copy of the arguments).
        const T* x = (is_q ? q : k) +
                     b * (is_q ? a.q_stride[0] : a.k_stride[0]) +
                     hh * (is_q ? a.q_stride[1] : a.k_stride[1]) +
                     p * (is_q ? a.q_stride[2] : a.k_stride[2]) + off;
        T* o = (is_q ? q_out : k_out) +
               b * (is_q ? a.q_out_stride[0] : a.k_out_stride[0]) +
               hh * (is_q ? a.q_out_stride[1] : a.k_out_stride[1]) +
               p * (is_q ? a.q_out_stride[2] : a.k_out_stride[2]) + off;
        const Pack<T, N> x1 = load_pack<T, N>(x);
        const Pack<T, N> x2 = load_pack<T, N>(x + half);
        Pack<T, N> o1;
        Pack<T, N> o2;
#pragma unroll
        for (int j = 0; j < N; ++j) {
          const float a1 = static_cast<float>(x1.v[j]);
          const float a2 = static_cast<float>(x2.v[j]);
          o1.v[j] = static_cast<T>(a1 * static_cast<float>(c1.v[j]) -
                                   a2 * static_cast<float>(s1.v[j]));
          o2.v[j] = static_cast<T>(a2 * static_cast<float>(c2.v[j]) +
                                   a1 * static_cast<float>(s2.v[j]));
        }
        store_pack<T, N>(o, o1);
        store_pack<T, N>(o + half, o2);
      }
      if constexpr (kCached) {
        break;  // one pack per thread
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

constexpr int kThreads = 256;  // __launch_bounds__ of the kernel

template <typename T, int N>
void launch_n(const RotaryArgs& a, T* q_out, T* k_out, const T* q, const T* k,
              const T* cos, const T* sin, cudaStream_t stream) {
  const int64_t npacks = a.head_dim / 2 / N;
  const int64_t heads = a.q_heads + a.k_heads;
  const int64_t tokens = a.batch * a.seq;
  const bool cached = npacks <= kThreads;
  const int64_t bx = std::min<int64_t>(npacks, kThreads);
  const int64_t by = std::max<int64_t>(
      1, std::min<int64_t>(kThreads / bx, heads));
  const int64_t max_blocks = static_cast<int64_t>(sm_count()) * 32;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(tokens, max_blocks)));
  const dim3 block(static_cast<unsigned>(bx), static_cast<unsigned>(by));
  if (cached) {
    rotary_kernel<T, N, true>
        <<<grid, block, 0, stream>>>(q_out, k_out, q, k, cos, sin, a);
  } else {
    rotary_kernel<T, N, false>
        <<<grid, block, 0, stream>>>(q_out, k_out, q, k, cos, sin, a);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void launch_typed(const RotaryArgs& a, T* q_out, T* k_out, const T* q,
                  const T* k, const T* cos, const T* sin,
                  cudaStream_t stream) {
  const int n = pick_pack<T>(
      {q_out, k_out, q, k, cos, sin},
      {a.head_dim / 2, a.q_stride[0], a.q_stride[1], a.q_stride[2],
       a.k_stride[0], a.k_stride[1], a.k_stride[2], a.q_out_stride[0],
       a.q_out_stride[1], a.q_out_stride[2], a.k_out_stride[0],
       a.k_out_stride[1], a.k_out_stride[2], a.cos_stride[0],
       a.cos_stride[1], a.sin_stride[0], a.sin_stride[1]});
  constexpr int kMax = static_cast<int>(16 / sizeof(T));
  switch (n) {
    case kMax:
      launch_n<T, kMax>(a, q_out, k_out, q, k, cos, sin, stream);
      break;
    case kMax / 2:
      launch_n<T, kMax / 2>(a, q_out, k_out, q, k, cos, sin, stream);
      break;
    case kMax / 4:
      launch_n<T, kMax / 4>(a, q_out, k_out, q, k, cos, sin, stream);
      break;
    default:  // one element at a time (only reachable for 16-bit types)
      launch_n<T, 1>(a, q_out, k_out, q, k, cos, sin, stream);
      break;
  }
}

template <typename T>
void launch_dtype(const RotaryArgs& a, at::Tensor& q_out, at::Tensor& k_out,
                  const at::Tensor& q, const at::Tensor& k,
                  const at::Tensor& cos, const at::Tensor& sin,
                  cudaStream_t stream) {
  launch_typed<T>(a, q_out.data_ptr<T>(), k_out.data_ptr<T>(),
                  q.const_data_ptr<T>(), k.const_data_ptr<T>(),
                  cos.const_data_ptr<T>(), sin.const_data_ptr<T>(), stream);
}

}  // namespace

KB_ROT_HIDDEN void launch_rotary(const RotaryArgs& args, at::Tensor& q_out,
                                 at::Tensor& k_out, const at::Tensor& q,
                                 const at::Tensor& k, const at::Tensor& cos,
                                 const at::Tensor& sin) {
  const c10::cuda::CUDAGuard device_guard(q.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  switch (q.scalar_type()) {
    case at::kFloat:
      launch_dtype<float>(args, q_out, k_out, q, k, cos, sin, stream);
      break;
    case at::kHalf:
      launch_dtype<c10::Half>(args, q_out, k_out, q, k, cos, sin, stream);
      break;
    case at::kBFloat16:
      launch_dtype<c10::BFloat16>(args, q_out, k_out, q, k, cos, sin, stream);
      break;
    default:
      TORCH_CHECK(false, "rotary: unsupported dtype ", q.scalar_type());
  }
}

}  // namespace kb_rotary
