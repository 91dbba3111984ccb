"""Build iic_fast._C: the C++/OpenMP kernels, plus the CUDA kernels when torch has CUDA and nvcc exists.

Install with `pip install --no-build-isolation -e .` (torch must already be installed).
Environment: IIC_FAST_CUDA=0 skips CUDA; TORCH_CUDA_ARCH_LIST picks GPU architectures (default
"8.0;9.0" when no GPU is visible); DEBUG=1 builds with -O0 -g; MAX_JOBS limits parallel compiles.
"""
import glob
import os
import shutil
import sys
import sysconfig

from setuptools import setup

try:
    import torch
except ImportError:  # torch is deliberately not a build requirement (it is huge and ABI-bound)
    sys.exit("iic_fast: install torch first, then `pip install --no-build-isolation -e .`")


def find_cuda_home():
    """The toolkit root whose bin/ holds the real nvcc (a wrapper script on PATH may hide it)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for root in filter(None, candidates):
        if os.path.isfile(os.path.join(root, "bin", "nvcc")) and os.path.isfile(
            os.path.join(root, "include", "cuda_runtime.h")
        ):
            return root
    return None


cuda_home = find_cuda_home()
with_cuda = os.environ.get("IIC_FAST_CUDA", "auto") != "0" and torch.version.cuda is not None and cuda_home
if with_cuda:
    os.environ["CUDA_HOME"] = cuda_home  # read by torch.utils.cpp_extension at import
    if not torch.cuda.is_available():
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")

from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

debug = os.environ.get("DEBUG", "0") == "1"
cxx_flags = ["-O0", "-g"] if debug else ["-O3", "-g0"]
cxx_flags += ["-fdiagnostics-color=always"]  # the C++ standard is the one torch asks for
openmp = "OpenMP" in torch.__config__.parallel_info() and sys.platform != "darwin"
if openmp:  # at::parallel_for is serial unless the unit is compiled with OpenMP
    cxx_flags += ["-fopenmp", "-DAT_PARALLEL_OPENMP=1"]
sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
macros = [("IIC_FAST_OPENMP", "1" if openmp else "0")]
include_dirs = [os.path.abspath("csrc")]

if with_cuda:
    sources += sorted(glob.glob("csrc/cuda/*.cu"))
    macros.append(("WITH_CUDA", None))
    # torch's CUDA headers include cuSPARSE/cuBLAS headers that pip ships under nvidia/*/include, next to torch
    sites = {os.path.dirname(os.path.dirname(torch.__file__)), sysconfig.get_paths()["purelib"]}
    include_dirs += sorted(p for site in sites for p in glob.glob(os.path.join(site, "nvidia", "*", "include")))
    nvcc_flags = ["-O0", "-g", "-G"] if debug else ["-O3", "-lineinfo"]
    nvcc_flags += ["--expt-relaxed-constexpr"]
    extension = CUDAExtension(
        "iic_fast._C", sources, define_macros=macros, include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
    )
else:
    extension = CppExtension(
        "iic_fast._C", sources, define_macros=macros, include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx_flags},
    )

print(f"iic_fast build: cuda={bool(with_cuda)} (CUDA_HOME={cuda_home}, torch CUDA {torch.version.cuda}, "
      f"arch={os.environ.get('TORCH_CUDA_ARCH_LIST', 'auto')}), openmp={openmp}, debug={debug}")

setup(
    ext_modules=[extension],
    cmdclass={"build_ext": BuildExtension.with_options(no_python_abi_suffix=True)},
)
