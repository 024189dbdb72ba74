// kb_twin runtime: the vector unit. One walker implements the repeat / block
// stride / mask addressing that every vector instruction shares:
//   - one repeat covers 256 bytes of the widest operand (N = 256 / widest
//     element lanes), split in 8 blocks of 32 bytes;
//   - lane e of repeat r of an operand with element size s lives at
//     base + (r * repStride + (e / (32/s)) * blkStride) * 32 + (e % (32/s)) * s;
//   - normal mask mode: lane e runs if bit e of the 128-bit mask (hi:lo) is
//     set, for `repeat` repeats; counter mode (set_mask_count): the low mask
//     word is an element count, repeats = ceil(count / N), `repeat` ignored.
// Every operand base must be 32-byte aligned in UB, every lane inside UB.
#include <cmath>
#include <cstring>

#include "fp.h"
#include "state.h"

namespace kb_twin {
namespace {

struct Operand {
  const uint8_t* base;
  int esize;
  uint64_t blk, rep;
  uint8_t* at(uint64_t r, uint64_t e) const {
    const uint64_t per_blk = 32 / esize;
    return const_cast<uint8_t*>(base) + (r * rep + (e / per_blk) * blk) * 32 + (e % per_blk) * esize;
  }
};

struct Walk {
  uint64_t lanes;    // N
  uint64_t repeats;
  uint64_t count;    // counter mode: total elements; else unused
};

Walk plan(uint64_t repeat_arg, int widest) {
  const CoreState& c = core();
  Walk w{static_cast<uint64_t>(256 / widest), repeat_arg, 0};
  if (c.counter_mode) {
    w.count = c.mask_lo;
    w.repeats = (w.count + w.lanes - 1) / w.lanes;
  }
  return w;
}

bool lane_on(const Walk& w, uint64_t r, uint64_t e) {
  const CoreState& c = core();
  if (c.counter_mode) return r * w.lanes + e < w.count;
  return e < 64 ? ((c.mask_lo >> e) & 1) : ((c.mask_hi >> (e - 64)) & 1);
}

void check_lane(const char* name, const uint8_t* p, int esize) { check_ub_range(name, p, esize); }

double apply(VOp op, double a, double b, double s) {
  switch (op) {
    case VOp::ADD: return a + b;
    case VOp::SUB: return a - b;
    case VOp::MUL: return a * b;
    case VOp::DIV: return a / b;
    case VOp::MAX: return std::fmax(a, b);
    case VOp::MIN: return std::fmin(a, b);
    case VOp::AND: return static_cast<double>(static_cast<int64_t>(a) & static_cast<int64_t>(b));
    case VOp::OR: return static_cast<double>(static_cast<int64_t>(a) | static_cast<int64_t>(b));
    case VOp::ADDS: return a + s;
    case VOp::MULS: return a * s;
    case VOp::MAXS: return std::fmax(a, s);
    case VOp::MINS: return std::fmin(a, s);
    case VOp::SQRT: return std::sqrt(a);
    case VOp::EXP: return std::exp(a);
    case VOp::LN: return std::log(a);
    case VOp::ABS: return std::fabs(a);
    case VOp::REC: return 1.0 / a;
    case VOp::RELU: return a > 0 ? a : 0.0;
    case VOp::RSQRT: return 1.0 / std::sqrt(a);
    case VOp::NOT: return static_cast<double>(~static_cast<int64_t>(a));
    case VOp::DUP: return s;
  }
  return NAN;
}

bool is_binary(VOp op) { return op <= VOp::OR; }
bool is_float(DType t) { return t == DType::F16 || t == DType::BF16 || t == DType::F32; }

}  // namespace

// Binary ops take 7 trailing args (repeat, 3 block strides, 3 repeat
// strides); unary, scalar and dup take 5 (repeat, 2 block, 2 repeat strides).
// Results are computed in double and rounded once to the element type, which
// equals the IEEE single/half result for + - * / sqrt.
void vec_elementwise(const VecCall& c) {
  const bool bin = is_binary(c.op);
  const int want = bin ? 7 : 5;
  if (c.nargs != want) unimplemented(c.name);  // e.g. the packed-config form
  if (c.dt_dst == DType::OTHER || c.dt_src == DType::OTHER || c.dt_dst != c.dt_src) {
    refuse(c.name, "unsupported element types dst=%s src=%s", dtype_name(c.dt_dst),
           dtype_name(c.dt_src));
  }
  const bool bitwise = c.op == VOp::AND || c.op == VOp::OR || c.op == VOp::NOT;
  if (bitwise == is_float(c.dt_dst)) refuse(c.name, "%s on %s", c.name, dtype_name(c.dt_dst));
  const int es = elem_bytes(c.dt_dst);
  const uint64_t* a = c.args;
  const Operand d{static_cast<const uint8_t*>(c.dst), es, a[1], bin ? a[4] : a[3]};
  const Operand s0{static_cast<const uint8_t*>(c.src0), es, a[2], bin ? a[5] : a[4]};
  const Operand s1{static_cast<const uint8_t*>(c.src1), es, bin ? a[3] : 0, bin ? a[6] : 0};
  check_ub_aligned(c.name, d.base);
  if (c.op != VOp::DUP) check_ub_aligned(c.name, s0.base);
  if (bin) check_ub_aligned(c.name, s1.base);
  const Walk w = plan(a[0], es);
  for (uint64_t r = 0; r < w.repeats; ++r) {
    for (uint64_t e = 0; e < w.lanes; ++e) {
      if (!lane_on(w, r, e)) continue;
      double x = 0, y = 0;
      if (c.op != VOp::DUP) { check_lane(c.name, s0.at(r, e), es); x = load(c.dt_src, s0.at(r, e)); }
      if (bin) { check_lane(c.name, s1.at(r, e), es); y = load(c.dt_src, s1.at(r, e)); }
      check_lane(c.name, d.at(r, e), es);
      store(c.dt_dst, d.at(r, e), apply(c.op, x, y, c.scalar));
    }
  }
}

// vconv_*: (repeat, dstBlk, srcBlk, dstRep, srcRep); lanes per repeat follow
// the wider type (f16 -> f32: 64 lanes, 4 source blocks, 8 destination blocks).
void vec_convert(const char* name, DType dt_dst, DType dt_src, Round rnd, void* dst,
                 const void* src, const uint64_t* a, int nargs) {
  if (nargs != 5) unimplemented(name);
  if (dt_dst == DType::OTHER) refuse(name, "operand types do not match the instruction");
  const int ed = elem_bytes(dt_dst), es = elem_bytes(dt_src);
  const Operand d{static_cast<const uint8_t*>(dst), ed, a[1], a[3]};
  const Operand s{static_cast<const uint8_t*>(src), es, a[2], a[4]};
  check_ub_aligned(name, d.base);
  check_ub_aligned(name, s.base);
  const Walk w = plan(a[0], ed > es ? ed : es);
  for (uint64_t r = 0; r < w.repeats; ++r) {
    for (uint64_t e = 0; e < w.lanes; ++e) {
      if (!lane_on(w, r, e)) continue;
      check_lane(name, s.at(r, e), es);
      check_lane(name, d.at(r, e), ed);
      store(dt_dst, d.at(r, e), load(dt_src, s.at(r, e)), rnd);
    }
  }
}

}  // namespace kb_twin
