// CPU implementations of iic_fast::joint and iic_fast::joint_backward: argument checks, scheduling over threads
// and the fixed-order reduction; the vectorised work is in joint_simd.h (one build per instruction set, chosen at
// run time; IIC_FAST_CPU_ISA=avx512|avx2|base caps the choice, for tests and benchmarks).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>
#include <tuple>
#include <vector>

#include "checks.h"
#include "cpu/joint_cpu.h"

namespace iic_fast {
namespace cpu {
namespace {

const KernelTable& kernel_table() {
  static const KernelTable table = [] {
    const char* env = std::getenv("IIC_FAST_CPU_ISA");
    const std::string want = env ? env : "";
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (avx512 && (want.empty() || want == "avx512")) return kernels_avx512();
    if (avx2 && want != "base") return kernels_avx2();
#endif
    return kernels_base();
  }();
  return table;
}

template <class in_t, class acc_t> const Kernels<in_t, acc_t>& kernels_for();
template <> const Kernels<float, float>& kernels_for() { return kernel_table().f32; }
template <> const Kernels<double, double>& kernels_for() { return kernel_table().f64; }
template <> const Kernels<c10::Half, float>& kernels_for() { return kernel_table().f16; }
template <> const Kernels<c10::BFloat16, float>& kernels_for() { return kernel_table().bf16; }

// Runs fn(t) for t in [0, ntasks) on the intra-op threads, handing tasks out one at a time, so a thread slowed
// down by other load on the machine does not hold the others up. A task's result never depends on the thread.
template <class F>
void run_tasks(int64_t ntasks, const F& fn) {
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(ntasks, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    for (int64_t t = next++; t < ntasks; t = next++) fn(t);
  });
}

// Work split of the forward. Rows are cut into G groups fixed by the shape alone, each with its own partial
// joint, summed in group order afterwards: the result is bitwise the same for any thread count. Shifts are cut
// into C chunks for parallelism; a shift is accumulated by one task only, so C does not change the result.
template <class in_t, class acc_t>
void joint_forward(const Problem<in_t>& P, bool collapsed, acc_t* out) {
  const int64_t rows = P.n * P.H, S = num_shifts(P.d, collapsed), kk = P.k * P.k, T = 2 * P.d + 1;
  const int64_t G = std::clamp<int64_t>(256 / S, 1, std::max<int64_t>(1, rows / std::max<int64_t>(8, 2 * T)));
  const int64_t C = std::min<int64_t>(S, ceil_div(4 * at::get_num_threads(), G));
  std::vector<acc_t> partial(G > 1 ? G * S * kk : 0, acc_t(0));
  acc_t* base = G > 1 ? partial.data() : out;
  const auto& K = kernels_for<in_t, acc_t>();
  run_tasks(G * C, [&](int64_t t) {
    const int64_t g = t / C, c = t % C;
    K.forward(P, collapsed, g * rows / G, (g + 1) * rows / G, c * S / C, (c + 1) * S / C, base + g * S * kk);
  });
  if (G > 1) {
    for (int64_t i = 0; i < S * kk; ++i) {
      acc_t v = partial[i];
      for (int64_t g = 1; g < G; ++g) v += partial[g * S * kk + i];
      out[i] = v;
    }
  }
}

template <class in_t>
Problem<in_t> problem(const at::Tensor& x1, const at::Tensor& x2, int64_t d) {
  return {x1.const_data_ptr<in_t>(), x2.const_data_ptr<in_t>(), x1.size(0), x1.size(1), x1.size(2), x1.size(3), d};
}

at::Tensor joint_cpu(const at::Tensor& x1_, const at::Tensor& x2_, int64_t d, bool collapsed) {
  check_joint_inputs(x1_, x2_, d, c10::DeviceType::CPU);
  const at::Tensor x1 = x1_.contiguous(), x2 = x2_.contiguous();  // also covers channels_last
  const int64_t k = x1.size(1), S = num_shifts(d, collapsed);
  const auto opts = x1.options().dtype(acc_dtype(x1.scalar_type()));
  at::Tensor out = collapsed ? at::zeros({k, k}, opts) : at::zeros({S, k, k}, opts);
  if (x1.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x1.scalar_type(), "iic_fast_joint_cpu", [&] {
    using acc_t = iic_fast::acc_t<scalar_t>;
    joint_forward<scalar_t, acc_t>(problem<scalar_t>(x1, x2, d), collapsed, out.mutable_data_ptr<acc_t>());
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> joint_backward_cpu(const at::Tensor& grad, const at::Tensor& x1_,
                                                      const at::Tensor& x2_, int64_t d, bool collapsed) {
  check_joint_inputs(x1_, x2_, d, c10::DeviceType::CPU);
  check_joint_grad(grad, x1_, d, collapsed);
  const at::Tensor x1 = x1_.contiguous(), x2 = x2_.contiguous();
  at::Tensor dx1 = at::empty(x1.sizes(), x1.options()), dx2 = at::empty(x2.sizes(), x2.options());
  if (x1.numel() == 0) return {dx1, dx2};
  // G in the accumulation dtype, contiguous, then packed for the kernels (2 S k^2 values: small next to the inputs
  // at the shapes this is for, e.g. 6.5% of them at n=4, k=24, 200x200, d=10).
  const at::Tensor G = grad.to(acc_dtype(x1.scalar_type())).contiguous();
  const int64_t k = x1.size(1), S = num_shifts(d, collapsed);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x1.scalar_type(), "iic_fast_joint_backward_cpu", [&] {
    using acc_t = iic_fast::acc_t<scalar_t>;
    const Problem<scalar_t> P = problem<scalar_t>(x1, x2, d);
    const auto& K = kernels_for<scalar_t, acc_t>();
    const int64_t nr = K.backward_nr;
    std::vector<acc_t> packed(2 * S * k * ((k + nr - 1) / nr) * nr);
    pack_grad(G.const_data_ptr<acc_t>(), S, k, nr, packed.data());
    const acc_t* g = packed.data();
    scalar_t* o1 = dx1.mutable_data_ptr<scalar_t>();
    scalar_t* o2 = dx2.mutable_data_ptr<scalar_t>();
    // Each output row is written by one task: no reduction, deterministic for any thread count. Tasks of at
    // least 2d+1 rows, as each reloads its 2d halo rows.
    const int64_t rows = P.n * P.H, nt = std::clamp<int64_t>(rows / (2 * d + 1), 1, 4 * at::get_num_threads());
    run_tasks(nt, [&](int64_t t) { K.backward(P, collapsed, g, t * rows / nt, (t + 1) * rows / nt, o1, o2); });
  });
  return {dx1, dx2};
}

}  // namespace

const char* selected_isa() { return kernel_table().isa; }

}  // namespace cpu
}  // namespace iic_fast

TORCH_LIBRARY_IMPL(iic_fast, CPU, m) {
  m.impl("joint", &iic_fast::cpu::joint_cpu);
  m.impl("joint_backward", &iic_fast::cpu::joint_backward_cpu);
}
