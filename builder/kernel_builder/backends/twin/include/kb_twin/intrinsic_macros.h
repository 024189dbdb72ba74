// kb_twin: how stand-in intrinsics are declared.
//
// Every intrinsic the Ascend C headers may call is a variadic function template
// in the global namespace, so that one declaration covers every overload the
// closed `stub_fun.h` would have (the headers call them with many argument
// types). Three kinds:
//   KB_TWIN_NOOP(name)         - no effect on the CPU (pipe syncs, flags):
//                                blocks run one after another, so ordering
//                                between pipes is already total.
//   KB_TWIN_UNIMPL(name)       - declared only; aborts with the name when run.
//   KB_TWIN_UNIMPL_RET(T, name) - same, for intrinsics that return a value.
// Implemented intrinsics are written out by hand in intrinsics_*.h.
#pragma once

#include <cstdint>

namespace kb_twin {
// Prints "kb_twin: intrinsic NAME is not implemented" and aborts. Never a
// silent zero: a kernel that reaches an unmodelled instruction must fail.
[[noreturn]] void unimplemented(const char* name);
// Prints the message and aborts; used by the UB / alignment checks.
[[noreturn]] void refuse(const char* call, const char* fmt, ...);
}  // namespace kb_twin

#define KB_TWIN_NOOP(name)                 \
  template <typename... KbA>               \
  inline void name(KbA...) {}

#define KB_TWIN_UNIMPL(name)               \
  template <typename... KbA>               \
  inline void name(KbA...) {               \
    ::kb_twin::unimplemented(#name);       \
  }

#define KB_TWIN_UNIMPL_RET(ret, name)      \
  template <typename... KbA>               \
  inline ret name(KbA...) {                \
    ::kb_twin::unimplemented(#name);       \
  }
