// kb_twin runtime: element load/store with explicit rounding.
#pragma once

#include <cstdint>

#include "kb_twin/runtime.h"

namespace kb_twin {

// Bits of `x` in a binary float format with `ebits` exponent and `mbits`
// fraction bits (IEEE layout, subnormals, inf/NaN), rounded by `r`.
uint32_t encode_float(double x, int ebits, int mbits, Round r);
float half_bits_to_float(uint16_t h);
float bf16_bits_to_float(uint16_t b);

// Reads element `t` at p as a double (exact for every supported type).
double load(DType t, const void* p);
// Writes v to p as element `t`; floats rounded by r (RINT for arithmetic),
// integers truncated toward zero and wrapped like a register write.
void store(DType t, void* p, double v, Round r = Round::RINT);

}  // namespace kb_twin
