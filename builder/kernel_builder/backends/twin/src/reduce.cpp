// kb_twin runtime: vcadd, the whole-repeat sum.
//
// Order and precision (our choice, documented; the ISA headers do not spell
// it out): within one repeat the N lanes are summed as a balanced binary tree
// (lane pairs (0,1),(2,3),... then pairs of pairs), masked-off lanes count as
// +0, and every partial sum is rounded to the element type, as a tree of
// element-precision adders would. With the accumulate flag (last argument 1,
// used by ReduceSum's count form) the per-repeat sums are then added in
// repeat order into the accumulator that get_acc_val() returns, again rounded
// to the element type after each add; without it, the sum of repeat r is
// written to dst[r * dstRepStride] (stride in elements).
#include <cstring>
#include <vector>

#include "fp.h"
#include "state.h"

namespace kb_twin {
namespace {

double round_to(DType t, double v) {
  uint8_t buf[8];
  store(t, buf, v);
  return load(t, buf);
}

double tree_sum(DType t, std::vector<double>& v) {
  for (size_t width = v.size(); width > 1; width /= 2) {
    for (size_t i = 0; i < width / 2; ++i) v[i] = round_to(t, v[2 * i] + v[2 * i + 1]);
  }
  return v[0];
}

}  // namespace

// Arguments: (repeat, dstRepStride, srcBlkStride, srcRepStride[, accumulate]).
// c220 passes all five; m200 (dav_m200) has no accumulate operand and always
// writes per-repeat sums, so its four-argument form means accumulate = 0.
void vec_cadd(const char* name, DType dt, void* dst, const void* src, const uint64_t* a,
              int nargs) {
  if (nargs != 5 && nargs != 4) unimplemented(name);
  if (dt != DType::F32 && dt != DType::F16) refuse(name, "unsupported element type %s", dtype_name(dt));
  CoreState& c = core();
  const int es = elem_bytes(dt);
  const uint64_t lanes = 256 / es, per_blk = 32 / es;
  const bool accumulate = nargs == 5 && a[4] != 0;
  const uint64_t count = c.mask_lo;
  const uint64_t repeats = c.counter_mode ? (count + lanes - 1) / lanes : a[0];
  const uint8_t* s = static_cast<const uint8_t*>(src);
  check_ub_aligned(name, s);
  check_ub_aligned(name, dst);
  std::vector<double> v(lanes);
  double acc = 0;
  for (uint64_t r = 0; r < repeats; ++r) {
    for (uint64_t e = 0; e < lanes; ++e) {
      const bool on = c.counter_mode ? r * lanes + e < count
                                     : ((e < 64 ? c.mask_lo >> e : c.mask_hi >> (e - 64)) & 1);
      const uint8_t* p = s + (r * a[3] + (e / per_blk) * a[2]) * 32 + (e % per_blk) * es;
      if (on) check_ub_range(name, p, es);
      v[e] = on ? load(dt, p) : 0.0;
    }
    const double sum = tree_sum(dt, v);
    if (accumulate) {
      acc = r == 0 ? sum : round_to(dt, acc + sum);
    } else {
      uint8_t* d = static_cast<uint8_t*>(dst) + r * a[1] * es;
      check_ub_range(name, d, es);
      store(dt, d, sum);
    }
  }
  if (accumulate) {
    c.acc = 0;
    store(dt, &c.acc, acc);  // the element's bits in the low bytes
  }
}

}  // namespace kb_twin
