// Constants and rules shared by the CPU and CUDA kernels (host and device code), defined once.
#pragma once
#include <c10/core/ScalarType.h>

#include <cstdint>

namespace iic_fast {

// The epilogue's clamp floor: Python's sys.float_info.epsilon, the original's EPS, for every dtype.
constexpr double kEps = 2.220446049250313e-16;

// Accumulation type: double for double inputs, float for float/half/bfloat16 (DESIGN.md section 3).
template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };
template <typename T> using acc_t = typename Acc<T>::type;

// The same rule for a dtype known at run time: the dtype of the joint and of its gradient.
inline c10::ScalarType acc_dtype(c10::ScalarType t) { return t == c10::kDouble ? c10::kDouble : c10::kFloat; }

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace iic_fast
