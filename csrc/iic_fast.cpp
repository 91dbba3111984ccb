// The extension module iic_fast._C: the one schema block of the iic_fast ops and the build information.
// Kernels register themselves per device in cpu/*_kernel.cpp and cuda/*_kernel.cu.
#include <pybind11/pybind11.h>
#include <torch/library.h>

#include "cpu/joint_cpu.h"

#ifdef WITH_CUDA
#include <cuda_runtime_api.h>
#endif

// Index conventions (DESIGN.md section 1): x1, x2 are (n, k, H, W); T = 2d+1; shift s = (dy+d)*T + (dx+d);
// J[s, i, j] = sum_n sum_u x1[n, i, u + (dy, dx)] * x2[n, j, u], zero outside the image.
TORCH_LIBRARY(iic_fast, m) {
  // (T*T, k, k), or (k, k) summed over shifts when collapsed; float32 (float64 for float64 inputs).
  m.def("joint(Tensor x1, Tensor x2, int d, bool collapsed) -> Tensor");
  // dL/dx1, dL/dx2 given grad = dL/dJ (the joint's shape); dtype and shape of x1, x2.
  m.def("joint_backward(Tensor grad, Tensor x1, Tensor x2, int d, bool collapsed) -> (Tensor, Tensor)");
  // Fused epilogue on J (S, k, k) or (k, k): returns (loss, loss_no_lamb, dloss/dJ). Uncollapsed: each J[s]
  // normalised by its own (differentiable) sum, loss = mean over s. Collapsed: one joint, detached normaliser.
  m.def("mi(Tensor joint, float lamb, bool collapsed) -> (Tensor, Tensor, Tensor)");
}

namespace {

pybind11::dict build_info() {
  pybind11::dict info;
#ifdef WITH_CUDA
  info["cuda"] = true;
  info["cuda_version"] = std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10);
#else
  info["cuda"] = false;
  info["cuda_version"] = pybind11::none();
#endif
  info["openmp"] = static_cast<bool>(IIC_FAST_OPENMP);
  info["cpu_isa"] = iic_fast::cpu::selected_isa();  // chosen at run time (IIC_FAST_CPU_ISA caps it)
  return info;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "iic_fast compiled kernels (ops are registered under torch.ops.iic_fast)";
  m.def("build_info", &build_info, "What this build of iic_fast._C was compiled with.");
}
