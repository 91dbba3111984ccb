// The joint kernels for AVX-512 (512-bit vectors, 32 registers: 4x6 / 6x4 register blocks).
#include "cpu/joint_cpu.h"
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define IIC_NS avx512
#define IIC_VBYTES 64
#define IIC_FWD_MR 4
#define IIC_FWD_NR 6
#define IIC_BWD_NR 6
#define IIC_BWD_MU 4
#define IIC_TARGET "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma"
#define IIC_GETTER kernels_avx512
#include "cpu/joint_simd_isa.h"
#endif
