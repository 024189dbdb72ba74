// CPU implementation of RMSNorm (optionally fused with a residual add): rows
// are split across threads with at::parallel_for, statistics are accumulated
// in float32.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

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

constexpr int kLanes = 8;  // independent partial sums (vectorizable, accurate)

template <typename T>
inline float sum_squares(const T* x, int64_t n) {
  float acc[kLanes] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float v = static_cast<float>(x[i + j]);
      acc[j] += v * v;
    }
  }
  for (; i < n; ++i) {
    const float v = static_cast<float>(x[i]);
    acc[0] += v * v;
  }
  float total = 0.f;
  for (int j = 0; j < kLanes; ++j) {
    total += acc[j];
  }
  return total;
}

// residual_out = T(x + residual); returns sum of squares of residual_out.
template <typename T>
inline float add_residual(T* res_out, const T* x, const T* res, int64_t n) {
  float acc[kLanes] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const T s = static_cast<T>(static_cast<float>(x[i + j]) +
                                 static_cast<float>(res[i + j]));
      res_out[i + j] = s;
      const float v = static_cast<float>(s);
      acc[j] += v * v;
    }
  }
  for (; i < n; ++i) {
    const T s = static_cast<T>(static_cast<float>(x[i]) +
                               static_cast<float>(res[i]));
    res_out[i] = s;
    const float v = static_cast<float>(s);
    acc[0] += v * v;
  }
  float total = 0.f;
  for (int j = 0; j < kLanes; ++j) {
    total += acc[j];
  }
  return total;
}

template <typename T>
inline void normalize(T* out, const T* x, const T* w, float inv_rms,
                      int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    // Round the normalized value to T before the weight multiply, as
    // transformers does (`weight * hidden.to(input_dtype)`).
    const T normed = static_cast<T>(static_cast<float>(x[i]) * inv_rms);
    out[i] = static_cast<T>(static_cast<float>(w[i]) *
                            static_cast<float>(normed));
  }
}

template <typename T, bool kFused>
void rms_norm_rows(const RmsNormArgs& a, T* out, T* res_out, const T* in,
                   const T* res, const T* w) {
  const int64_t d = a.cols;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1));
  const float inv_d = 1.0f / static_cast<float>(d);
  at::parallel_for(0, a.rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* x = in + r * a.in_stride;
      T* o = out + r * a.out_stride;
      float ss;
      const T* src = x;
      if constexpr (kFused) {
        T* ro = res_out + r * a.res_out_stride;
        ss = add_residual(ro, x, res + r * a.res_stride, d);
        src = ro;
      } else {
        ss = sum_squares(x, d);
      }
      const float inv_rms = 1.0f / std::sqrt(ss * inv_d + a.eps);
      normalize(o, src, w, inv_rms, d);
    }
  });
}

template <typename T>
void launch_typed(const RmsNormArgs& a, at::Tensor& out,
                  at::Tensor& residual_out, const at::Tensor& input,
                  const at::Tensor& residual, const at::Tensor& weight) {
  if (residual.defined()) {
    rms_norm_rows<T, true>(a, out.data_ptr<T>(), residual_out.data_ptr<T>(),
                           input.const_data_ptr<T>(),
                           residual.const_data_ptr<T>(),
                           weight.const_data_ptr<T>());
  } else {
    rms_norm_rows<T, false>(a, out.data_ptr<T>(), nullptr,
                            input.const_data_ptr<T>(), nullptr,
                            weight.const_data_ptr<T>());
  }
}

}  // namespace

KB_RMS_HIDDEN void launch_rms_norm(const RmsNormArgs& args, at::Tensor& out,
                                   at::Tensor& residual_out,
                                   const at::Tensor& input,
                                   const at::Tensor& residual,
                                   const at::Tensor& weight) {
  switch (input.scalar_type()) {
    case at::kFloat:
      launch_typed<float>(args, out, residual_out, input, residual, weight);
      break;
    case at::kHalf:
      launch_typed<c10::Half>(args, out, residual_out, input, residual, weight);
      break;
    case at::kBFloat16:
      launch_typed<c10::BFloat16>(args, out, residual_out, input, residual,
                                  weight);
      break;
    default:
      TORCH_CHECK(false, "rmsnorm: unsupported dtype ", input.scalar_type());
  }
}

}  // namespace kb_rmsnorm
