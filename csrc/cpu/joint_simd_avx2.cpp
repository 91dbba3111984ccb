// The joint kernels for AVX2 + FMA (256-bit vectors, 16 registers: 3x3 register blocks).
#include "cpu/joint_cpu.h"
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define IIC_NS avx2
#define IIC_VBYTES 32
#define IIC_FWD_MR 3
#define IIC_FWD_NR 3
#define IIC_BWD_NR 3
#define IIC_BWD_MU 3
#define IIC_TARGET "avx2,fma"
#define IIC_GETTER kernels_avx2
#include "cpu/joint_simd_isa.h"
#endif
