// The joint kernels for the compiler's baseline instruction set (SSE2 on x86-64, NEON on aarch64): 128-bit vectors.
#include "cpu/joint_cpu.h"
#define IIC_NS base
#define IIC_VBYTES 16
#define IIC_FWD_MR 3
#define IIC_FWD_NR 3
#define IIC_BWD_NR 3
#define IIC_BWD_MU 3
#define IIC_GETTER kernels_base
#include "cpu/joint_simd_isa.h"
