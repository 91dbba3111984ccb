// Interface between the CPU joint driver (joint_kernel.cpp: checks, scheduling, reduction) and its vectorised
// kernels (joint_simd.h), which are compiled once per instruction set (joint_simd_{avx512,avx2,base}.cpp) and
// picked at run time.
#pragma once
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>

namespace iic_fast {
namespace cpu {

// One joint problem: x1, x2 contiguous (n, k, H, W), radius d (index conventions in docs/kernel_contract.md).
template <class in_t>
struct Problem {
  const in_t* x1;
  const in_t* x2;
  int64_t n, k, H, W, d;
};

// acc_t: float for float/half/bfloat16 inputs, double for double (the joint's dtype).
template <class in_t, class acc_t>
struct Kernels {
  // Adds the contribution of rows [r0, r1) of the flattened n*H rows (rows of x2, the un-shifted map) to the
  // shifts [s0, s1) of J (S, k, k) (collapsed: the one (k, k) joint; s0, s1 ignored).
  void (*forward)(const Problem<in_t>&, bool collapsed, int64_t r0, int64_t r1, int64_t s0, int64_t s1, acc_t* J);
  // Writes rows [r0, r1) of dx1, dx2 (contiguous like x1) given G = dL/dJ packed by pack_grad(G, backward_nr).
  void (*backward)(const Problem<in_t>&, bool collapsed, const acc_t* Gp, int64_t r0, int64_t r1, in_t* dx1,
                   in_t* dx2);
  int backward_nr;  // output channels per backward register block
};

// The backward's coefficients, Gp[pass][jb][s][c][nr] (zero where jb*nr + j >= k): pass 0 (dx2) reads
// G[s][c][j], pass 1 (dx1) G[S-1-s][j][c]; one (S, k, k) or (k, k) G, contiguous. Returns 2 * S * k * ceil(k/nr) * nr
// values; nr output channels of one step lie side by side.
template <class T>
void pack_grad(const T* G, int64_t S, int64_t k, int64_t nr, T* Gp) {
  const int64_t njb = (k + nr - 1) / nr;
  for (int64_t pass = 0; pass < 2; ++pass)
    for (int64_t jb = 0; jb < njb; ++jb)
      for (int64_t s = 0; s < S; ++s)
        for (int64_t c = 0; c < k; ++c)
          for (int64_t j = 0; j < nr; ++j) {
            const int64_t o = jb * nr + j;
            *Gp++ = o >= k ? T(0) : pass == 0 ? G[(s * k + c) * k + o] : G[((S - 1 - s) * k + o) * k + c];
          }
}

struct KernelTable {
  const char* isa;
  Kernels<float, float> f32;
  Kernels<double, double> f64;
  Kernels<c10::Half, float> f16;
  Kernels<c10::BFloat16, float> bf16;
};

KernelTable kernels_avx512();  // call only where the CPU has avx512f/vl/dq/bw
KernelTable kernels_avx2();    // call only where the CPU has avx2 and fma
KernelTable kernels_base();    // x86-64 baseline (SSE2) or the compiler's default elsewhere

// The instruction set the joint kernels run with here ("avx512", "avx2" or "base"; for build_info()).
const char* selected_isa();

}  // namespace cpu
}  // namespace iic_fast
