// Code that builds under Hugging Face's nvcc flags and not under cpp_extension's defaults.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#ifdef ENABLE_FP8
#include <cuda_fp8.h>
#endif

#include <ATen/cuda/CUDAContext.h>
#include <torch/torch.h>

namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n) { return static_cast<int>((n + kThreads - 1) / kThreads); }

// Needs --expt-extended-lambda: a __device__ lambda made in host code is passed to a kernel template.
template <typename F>
__global__ void for_each_index(int64_t n, F f) {
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) f(i);
}

// Needs the __CUDA_NO_HALF_OPERATORS__ / _CONVERSIONS__ defines absent: half and bfloat16 arithmetic with
// operators, and a float literal converted implicitly.
__global__ void axpb_half(__half *out, const __half *x, __half a, int64_t n) {
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  __half one = 1.0f;
  if (i < n) out[i] = a * x[i] + one;
}

__global__ void axpb_bf16(__nv_bfloat16 *out, const __nv_bfloat16 *x, __nv_bfloat16 a, int64_t n) {
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  __nv_bfloat16 one = 1.0f;
  if (i < n) out[i] = a * x[i] + one;
}

#ifdef ENABLE_FP8
__global__ void fp8_round_trip(float *out, const float *x, int64_t n) {
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = static_cast<float>(__nv_fp8_e4m3(x[i]));
}
#endif

void check_pair(const torch::Tensor &out, const torch::Tensor &x, at::ScalarType dtype) {
  TORCH_CHECK(x.is_cuda() && out.is_cuda(), "CUDA tensors only");
  TORCH_CHECK(x.scalar_type() == dtype && out.scalar_type() == dtype, "dtype mismatch");
  TORCH_CHECK(x.is_contiguous() && out.is_contiguous() && out.numel() == x.numel(), "contiguous, same size");
}

}  // namespace

void scale_lambda(torch::Tensor &out, torch::Tensor const &x, double factor) {
  check_pair(out, x, at::kFloat);
  float *o = out.data_ptr<float>();
  const float *in = x.data_ptr<float>();
  const float f = static_cast<float>(factor);
  const int64_t n = x.numel();
  if (n == 0) return;
  auto stream = at::cuda::getCurrentCUDAStream();
  for_each_index<<<blocks_for(n), kThreads, 0, stream>>>(n, [=] __device__(int64_t i) { o[i] = in[i] * f; });
}

void axpb(torch::Tensor &out, torch::Tensor const &x, double a) {
  const int64_t n = x.numel();
  auto stream = at::cuda::getCurrentCUDAStream();
  if (x.scalar_type() == at::kHalf) {
    check_pair(out, x, at::kHalf);
    if (n) axpb_half<<<blocks_for(n), kThreads, 0, stream>>>(
        reinterpret_cast<__half *>(out.data_ptr()), reinterpret_cast<const __half *>(x.data_ptr()),
        __float2half(static_cast<float>(a)), n);
  } else {
    check_pair(out, x, at::kBFloat16);
    if (n) axpb_bf16<<<blocks_for(n), kThreads, 0, stream>>>(
        reinterpret_cast<__nv_bfloat16 *>(out.data_ptr()), reinterpret_cast<const __nv_bfloat16 *>(x.data_ptr()),
        __float2bfloat16(static_cast<float>(a)), n);
  }
}

void fp8_round_trip(torch::Tensor &out, torch::Tensor const &x) {
#ifdef ENABLE_FP8
  check_pair(out, x, at::kFloat);
  const int64_t n = x.numel();
  if (n) fp8_round_trip<<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
      out.data_ptr<float>(), x.data_ptr<float>(), n);
#else
  TORCH_CHECK(false, "built without ENABLE_FP8");
#endif
}

// What this translation unit was compiled with, as bits (host code: answers without a GPU).
int64_t build_facts() {
  int64_t facts = 0;
#ifdef ENABLE_FP8
  facts |= 1;
#endif
#ifdef NDEBUG
  facts |= 2;
#endif
#if __cplusplus >= 202002L
  facts |= 4;
#endif
#ifdef __CUDA_NO_HALF_OPERATORS__
  facts |= 8;
#endif
#ifdef KB_COMPAT_KERNEL_FLAG
  facts |= 16;
#endif
  return facts;
}
