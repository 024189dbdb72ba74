// CPU implementation of the rotary position embedding: tokens (batch, seq)
// are split across threads with at::parallel_for; each token's cos/sin row
// is read once and applied to every head of q and k, in float32.
// qk_norm_rotary does the same with each head row RMS-normalized first: the
// row is converted to float32 once, into a per-thread buffer, so the norm and
// the rotation read it from there and the output may be the input itself.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

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

// One head row. Reads x[i] and x[i + half] before writing either, so out may
// be x itself.
template <typename T>
inline void rotate_row(T* out, const T* x, const float* c, const float* s,
                       int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float x1 = static_cast<float>(x[i]);
    const float x2 = static_cast<float>(x[i + half]);
    out[i] = static_cast<T>(x1 * c[i] - x2 * s[i]);
    out[i + half] = static_cast<T>(x2 * c[i + half] + x1 * s[i + half]);
  }
}

// Splits the tokens across threads and calls row(out, x, c, s, scratch, is_k)
// for every head row of q, then of k, of each token, with c and s its cos/sin
// rows in float32 (read once per token) and scratch a per-thread buffer of
// `scratch` floats.
template <typename T, typename Row>
void for_each_head_row(const RotaryArgs& a, T* q_out, T* k_out, const T* q,
                       const T* k, const T* cos, const T* sin,
                       int64_t scratch, Row row) {
  const int64_t d = a.head_dim;
  const int64_t tokens = a.batch * a.seq;
  const int64_t heads = a.q_heads + a.k_heads;
  const int64_t grain =
      std::max<int64_t>(1, 32768 / std::max<int64_t>(heads * d, 1));
  at::parallel_for(0, tokens, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(static_cast<size_t>(2 * d + scratch));
    float* c = buf.data();
    float* s = buf.data() + d;
    float* y = buf.data() + 2 * d;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / a.seq;
      const int64_t p = t % a.seq;
      const T* crow = cos + b * a.cos_stride[0] + p * a.cos_stride[1];
      const T* srow = sin + b * a.sin_stride[0] + p * a.sin_stride[1];
      for (int64_t i = 0; i < d; ++i) {
        c[i] = static_cast<float>(crow[i]);
        s[i] = static_cast<float>(srow[i]);
      }
      const auto heads_of = [&](T* out, const T* x, const int64_t* out_stride,
                                const int64_t* stride, int64_t n, bool is_k) {
        for (int64_t h = 0; h < n; ++h) {
          row(out + b * out_stride[0] + h * out_stride[1] + p * out_stride[2],
              x + b * stride[0] + h * stride[1] + p * stride[2], c, s, y,
              is_k);
        }
      };
      heads_of(q_out, q, a.q_out_stride, a.q_stride, a.q_heads, false);
      heads_of(k_out, k, a.k_out_stride, a.k_stride, a.k_heads, true);
    }
  });
}

template <typename T>
void rotary_typed(const RotaryArgs& a, T* q_out, T* k_out, const T* q,
                  const T* k, const T* cos, const T* sin) {
  const int64_t half = a.head_dim / 2;
  for_each_head_row(a, q_out, k_out, q, k, cos, sin, 0,
                    [&](T* out, const T* x, const float* c, const float* s,
                        float*, bool) { rotate_row(out, x, c, s, half); });
}

// One head row of qk_norm_rotary: y = x * rsqrt(mean(x^2) + eps) * w, then
// rotated, kept in float32 from load to the single rounding at the store.
template <typename T>
inline void norm_rotate_row(T* out, const T* x, const float* w,
                            const float* c, const float* s, float* y,
                            int64_t d, float eps) {
  const int64_t half = d / 2;
  // Independent partial sums, as rms_norm's CPU kernel: they vectorize and
  // keep a long row's float32 sum accurate.
  constexpr int kLanes = 8;
  float acc[kLanes] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t i0 = 0;
  for (; i0 + kLanes <= d; i0 += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      y[i0 + j] = static_cast<float>(x[i0 + j]);
      acc[j] += y[i0 + j] * y[i0 + j];
    }
  }
  for (; i0 < d; ++i0) {
    y[i0] = static_cast<float>(x[i0]);
    acc[0] += y[i0] * y[i0];
  }
  float ss = 0.f;
  for (int j = 0; j < kLanes; ++j) {
    ss += acc[j];
  }
  const float inv_rms = 1.0f / std::sqrt(ss / static_cast<float>(d) + eps);
  for (int64_t i = 0; i < d; ++i) {
    y[i] = y[i] * inv_rms * w[i];
  }
  for (int64_t i = 0; i < half; ++i) {
    out[i] = static_cast<T>(y[i] * c[i] - y[i + half] * s[i]);
    out[i + half] = static_cast<T>(y[i + half] * c[i + half] + y[i] * s[i + half]);
  }
}

template <typename T>
void qk_norm_rotary_typed(const RotaryArgs& a, float eps, T* q_out, T* k_out,
                          const T* q, const T* k, const T* qw, const T* kw,
                          const T* cos, const T* sin) {
  const int64_t d = a.head_dim;
  std::vector<float> weights(static_cast<size_t>(2 * d));
  for (int64_t i = 0; i < d; ++i) {
    weights[i] = static_cast<float>(qw[i]);
    weights[d + i] = static_cast<float>(kw[i]);
  }
  const float* fqw = weights.data();
  const float* fkw = weights.data() + d;
  // The scratch holds the normalized row, so out may be x itself.
  for_each_head_row(a, q_out, k_out, q, k, cos, sin, d,
                    [&](T* out, const T* x, const float* c, const float* s,
                        float* y, bool is_k) {
                      norm_rotate_row(out, x, is_k ? fkw : fqw, c, s, y, d,
                                      eps);
                    });
}

template <typename T>
void launch_typed(const RotaryArgs& a, at::Tensor& q_out, at::Tensor& k_out,
                  const at::Tensor& q, const at::Tensor& k,
                  const at::Tensor& cos, const at::Tensor& sin) {
  rotary_typed<T>(a, q_out.data_ptr<T>(), k_out.data_ptr<T>(),
                  q.const_data_ptr<T>(), k.const_data_ptr<T>(),
                  cos.const_data_ptr<T>(), sin.const_data_ptr<T>());
}

template <typename T>
void launch_norm_typed(const RotaryArgs& a, float eps, at::Tensor& q_out,
                       at::Tensor& k_out, const at::Tensor& q,
                       const at::Tensor& k, const at::Tensor& qw,
                       const at::Tensor& kw, const at::Tensor& cos,
                       const at::Tensor& sin) {
  qk_norm_rotary_typed<T>(a, eps, q_out.data_ptr<T>(), k_out.data_ptr<T>(),
                          q.const_data_ptr<T>(), k.const_data_ptr<T>(),
                          qw.const_data_ptr<T>(), kw.const_data_ptr<T>(),
                          cos.const_data_ptr<T>(), sin.const_data_ptr<T>());
}

}  // namespace

KB_ROT_HIDDEN void launch_rotary(const RotaryArgs& args, at::Tensor& q_out,
                                 at::Tensor& k_out, const at::Tensor& q,
                                 const at::Tensor& k, const at::Tensor& cos,
                                 const at::Tensor& sin) {
  switch (q.scalar_type()) {
    case at::kFloat:
      launch_typed<float>(args, q_out, k_out, q, k, cos, sin);
      break;
    case at::kHalf:
      launch_typed<c10::Half>(args, q_out, k_out, q, k, cos, sin);
      break;
    case at::kBFloat16:
      launch_typed<c10::BFloat16>(args, q_out, k_out, q, k, cos, sin);
      break;
    default:
      TORCH_CHECK(false, "rotary: unsupported dtype ", q.scalar_type());
  }
}

KB_ROT_HIDDEN void launch_qk_norm_rotary(
    const RotaryArgs& args, float eps, at::Tensor& q_out, at::Tensor& k_out,
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& q_weight,
    const at::Tensor& k_weight, const at::Tensor& cos, const at::Tensor& sin) {
  switch (q.scalar_type()) {
    case at::kFloat:
      launch_norm_typed<float>(args, eps, q_out, k_out, q, k, q_weight,
                               k_weight, cos, sin);
      break;
    case at::kHalf:
      launch_norm_typed<c10::Half>(args, eps, q_out, k_out, q, k, q_weight,
                                   k_weight, cos, sin);
      break;
    case at::kBFloat16:
      launch_norm_typed<c10::BFloat16>(args, eps, q_out, k_out, q, k,
                                       q_weight, k_weight, cos, sin);
      break;
    default:
      TORCH_CHECK(false, "qk_norm_rotary: unsupported dtype ",
                  q.scalar_type());
  }
}

}  // namespace kb_rotary
