// CPU implementation of iic_fast::mi, the fused IIC epilogue: per k x k slice normalise, symmetrise, clamp, the
// loss with and without lamb, and d loss / d joint, exactly as docs/kernel_contract.md (in double whatever the
// joint's dtype; slices in parallel, their losses summed in slice order so the result is deterministic).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/scalar_tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

#include "checks.h"

namespace iic_fast {
namespace cpu {
namespace {

// One slice J (k x k, row-major) -> (loss, loss_no_lamb); writes d loss_slice / d J into g (k x k).
template <class scalar_t>
std::pair<double, double> mi_slice(const scalar_t* J, int64_t k, double lamb, bool detached, scalar_t* g,
                                   double scale, std::vector<double>& w) {
  const int64_t kk = k * k;
  w.resize(3 * kk + 4 * k);
  double *P0 = w.data(), *P = P0 + kk, *gP = P + kk, *r = gP + kk, *c = r + k, *lr = c + k, *lc = lr + k;
  double Z = 0;
  for (int64_t i = 0; i < kk; ++i) Z += static_cast<double>(J[i]);
  for (int64_t i = 0; i < kk; ++i) P0[i] = static_cast<double>(J[i]) / Z;
  std::fill(r, r + 2 * k, 0.0);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) {
      const double p = (P0[i * k + j] + P0[j * k + i]) / 2;
      P[i * k + j] = p;
      r[i] += p;  // marginals before clamping
      c[j] += p;
    }
  for (int64_t i = 0; i < k; ++i) {
    lr[i] = std::log(std::max(r[i], kEps));
    lc[i] = std::log(std::max(c[i], kEps));
  }
  double loss = 0, loss_nl = 0;
  std::vector<double> gr(k, 0.0), gc(k, 0.0);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) {
      const double pc = std::max(P[i * k + j], kEps), lp = std::log(pc);
      loss -= pc * (lp - lamb * lr[i] - lamb * lc[j]);
      loss_nl -= pc * (lp - lr[i] - lc[j]);
      gP[i * k + j] = P[i * k + j] >= kEps ? -(lp + 1 - lamb * lr[i] - lamb * lc[j]) : 0.0;
      gr[i] += pc;
      gc[j] += pc;
    }
  for (int64_t i = 0; i < k; ++i) {  // d loss / d r_i = lamb sum_j Pc_ij / rc_i, zero where r_i was clamped
    gr[i] = r[i] >= kEps ? lamb * gr[i] / std::max(r[i], kEps) : 0.0;
    gc[i] = c[i] >= kEps ? lamb * gc[i] / std::max(c[i], kEps) : 0.0;
  }
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) gP[i * k + j] += gr[i] + gc[j];
  double dot = 0;  // sum_ab gP0_ab P0_ab, the tensor normaliser's term
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) dot += (gP[i * k + j] + gP[j * k + i]) / 2 * P0[i * k + j];
  if (detached) dot = 0;
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j)
      g[i * k + j] = static_cast<scalar_t>(((gP[i * k + j] + gP[j * k + i]) / 2 - dot) / Z * scale);
  return {loss, loss_nl};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> mi_cpu(const at::Tensor& joint_, double lamb, bool collapsed) {
  check_mi_input(joint_, c10::DeviceType::CPU);
  const at::Tensor joint = joint_.contiguous();
  const int64_t k = joint.size(-1), S = joint.dim() == 3 ? joint.size(0) : 1;
  at::Tensor grad = at::empty(joint.sizes(), joint.options());
  std::vector<double> loss(S, 0.0), loss_nl(S, 0.0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, joint.scalar_type(), "iic_fast_mi_cpu", [&] {
    const scalar_t* J = joint.const_data_ptr<scalar_t>();
    scalar_t* g = grad.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, S, std::max<int64_t>(1, 4096 / (k * k)), [&](int64_t b, int64_t e) {
      std::vector<double> work;
      for (int64_t s = b; s < e; ++s)
        std::tie(loss[s], loss_nl[s]) = mi_slice(J + s * k * k, k, lamb, collapsed, g + s * k * k, 1.0 / S, work);
    });
  });
  double total = 0, total_nl = 0;
  for (int64_t s = 0; s < S; ++s) {
    total += loss[s];
    total_nl += loss_nl[s];
  }
  const auto opts = joint.options();
  return {at::scalar_tensor(total / S, opts), at::scalar_tensor(total_nl / S, opts), grad};
}

}  // namespace
}  // namespace cpu
}  // namespace iic_fast

TORCH_LIBRARY_IMPL(iic_fast, CPU, m) { m.impl("mi", &iic_fast::cpu::mi_cpu); }
