// Compiles joint_simd.h for one instruction set (IIC_TARGET; none = the compiler's default) and defines the
// getter IIC_GETTER of its kernel table. Included once by each joint_simd_<isa>.cpp; no include guard on purpose.
// Standard headers come first so that only this file's own functions get the target attribute.
#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#define IIC_PRAGMA(x) _Pragma(#x)
#define IIC_TARGET_PUSH(t) IIC_PRAGMA(GCC target(t))  // #pragma does not expand macros, _Pragma does
#ifdef IIC_TARGET
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target(IIC_TARGET))), apply_to = function)
#else
#pragma GCC push_options
IIC_TARGET_PUSH(IIC_TARGET)
#endif
#endif

#include "cpu/joint_simd.h"

#ifdef IIC_TARGET
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

#define IIC_STR2(x) #x
#define IIC_STR(x) IIC_STR2(x)

namespace iic_fast {
namespace cpu {

// Defined outside the target region: it only takes addresses, so it is safe to call before checking the CPU.
KernelTable IIC_GETTER() {
  KernelTable t;
  t.isa = IIC_STR(IIC_NS);
  t.f32 = {&IIC_NS::forward<float, float>, &IIC_NS::backward<float, float>, IIC_BWD_NR};
  t.f64 = {&IIC_NS::forward<double, double>, &IIC_NS::backward<double, double>, IIC_BWD_NR};
  t.f16 = {&IIC_NS::forward<c10::Half, float>, &IIC_NS::backward<c10::Half, float>, IIC_BWD_NR};
  t.bf16 = {&IIC_NS::forward<c10::BFloat16, float>, &IIC_NS::backward<c10::BFloat16, float>, IIC_BWD_NR};
  return t;
}

}  // namespace cpu
}  // namespace iic_fast
