// Vectorised CPU kernels of the joint op (the tasks the driver joint_kernel.cpp schedules). No include guard:
// joint_simd_<isa>.cpp defines IIC_NS, IIC_VBYTES (vector width in bytes) and the register blocks IIC_FWD_MR/NR,
// IIC_BWD_NR/MU, then includes joint_simd_isa.h, which includes joint_simd_blocks.h and this file under a target pragma.
//
// Pixels (x, contiguous in (n, k, H, W)) are the vector lanes, so any k runs at full vector width and nothing is
// transposed. Rows are copied into small per-task tiles converted to acc_t (load_row: channel c of a row at
// tile + c * ld, a window of pixels with zeros outside [0, W), the zero padding of the definition). Tiles hold a
// few rows (forward: a strip of x2 rows plus the x1 rows of its dy range; backward: a column block of the 2d+1 rows
// around the output row), never anything of the input's size.
#include "cpu/joint_simd_blocks.h"

namespace iic_fast {
namespace cpu {
namespace IIC_NS {

#ifndef IIC_FWD_PIX
#define IIC_FWD_PIX 1024  // pixels per forward block call (per row pair, L1 budget)
#endif
constexpr int64_t kStrip = 8;  // forward: rows of x2 per tile (with their halo of x1 rows it stays in L2)

template <class in_t, class T>
void forward_uncollapsed(const Problem<in_t>& P, int64_t r0, int64_t r1, int64_t s0, int64_t s1, T* J) {
  constexpr int L = lanes<T>(), MR = IIC_FWD_MR, NR = IIC_FWD_NR;
  static const auto fns = fwd_fns<T>(std::make_index_sequence<MR * NR>());
  const int64_t k = P.k, H = P.H, W = P.W, HW = H * W, d = P.d, Tn = 2 * d + 1;
  const int64_t Wv = round_up(W, L), lda = round_up(Wv + 2 * d, L), ldb = Wv;
  const int64_t rb_rows = std::clamp<int64_t>(IIC_FWD_PIX / Wv, 1, kStrip);  // rows per block call: keeps the
  // (MR + NR) rows it reads in L1 while the dx loop revisits them
  const int64_t dylo = s0 / Tn - d, dyhi = (s1 - 1) / Tn - d;  // dy range of this task's shifts
  const int64_t ring = std::min<int64_t>(kStrip + dyhi - dylo, H);  // x1 rows: slot = row % ring
  Buf<T> A(ring * k * lda), B(kStrip * k * ldb);
  std::vector<int64_t> tag(ring, -1);
  const T* ap[kStrip];
  const T* bp[kStrip];
  for (int64_t r = r0; r < r1;) {
    const int64_t n = r / H, y0 = r % H, nr = std::min({kStrip, H - y0, r1 - r});
    const in_t* x1n = P.x1 + n * k * HW;
    for (int64_t q = 0; q < nr; ++q)
      load_row(P.x2 + n * k * HW + (y0 + q) * W, HW, k, W, int64_t(0), B.p + q * k * ldb, ldb);
    for (int64_t ya = std::max<int64_t>(0, y0 + dylo); ya < std::min(H, y0 + nr + dyhi); ++ya) {
      const int64_t slot = ya % ring;
      if (tag[slot] != n * H + ya) load_row(x1n + ya * W, HW, k, W, -d, A.p + slot * k * lda, lda);
      tag[slot] = n * H + ya;
    }
    for (int64_t rb = 0; rb < nr; rb += rb_rows) {
      const int64_t nb = std::min(rb_rows, nr - rb);
      for (int64_t dy = dylo; dy <= dyhi; ++dy) {
        const int64_t ylo = std::max(y0 + rb, -dy), yhi = std::min(y0 + rb + nb, H - dy);
        if (ylo >= yhi) continue;
        for (int64_t y = ylo; y < yhi; ++y) {
          ap[y - ylo] = A.p + ((y + dy) % ring) * k * lda + d;  // pixel x of row y+dy at [x]
          bp[y - ylo] = B.p + (y - y0) * k * ldb;
        }
        const int64_t sb = std::max(s0, (dy + d) * Tn), se = std::min(s1, (dy + d) * Tn + Tn);
        for (int64_t i0 = 0; i0 < k; i0 += MR) {
          const int64_t mr = std::min<int64_t>(MR, k - i0);
          for (int64_t j0 = 0; j0 < k; j0 += NR) {
            const auto fn = fns[(mr - 1) * NR + std::min<int64_t>(NR, k - j0) - 1];
            for (int64_t s = sb; s < se; ++s) {
              const int64_t dx = s - (dy + d) * Tn - d;
              fn(ap, bp, yhi - ylo, i0 * lda + dx, j0 * ldb, lda, ldb, Wv, J + (s * k + i0) * k + j0, k);
            }
          }
        }
      }
    }
    r += nr;
  }
}

template <class in_t, class T>
void forward_collapsed(const Problem<in_t>& P, int64_t r0, int64_t r1, T* J) {
  constexpr int L = lanes<T>(), MR = IIC_FWD_MR, NR = IIC_FWD_NR;
  static const auto fns = fwd_fns<T>(std::make_index_sequence<MR * NR>());
  const int64_t k = P.k, H = P.H, W = P.W, HW = H * W, Wv = round_up(W, L);
  const int64_t rb_rows = std::clamp<int64_t>(IIC_FWD_PIX / Wv, 1, kStrip);
  Buf<T> A(kStrip * k * Wv), B(kStrip * k * Wv);  // box_d(x1) rows, x2 rows
  VSum<in_t> box(P.x1, k, H, W, P.d);
  const T* ap[kStrip];
  const T* bp[kStrip];
  for (int64_t r = r0; r < r1;) {
    const int64_t n = r / H, y0 = r % H, nr = std::min({kStrip, H - y0, r1 - r});
    for (int64_t q = 0; q < nr; ++q) {
      box.to(n, y0 + q);
      box.box_row(A.p + q * k * Wv, Wv);
      load_row(P.x2 + n * k * HW + (y0 + q) * W, HW, k, W, int64_t(0), B.p + q * k * Wv, Wv);
      ap[q] = A.p + q * k * Wv;
      bp[q] = B.p + q * k * Wv;
    }
    for (int64_t rb = 0; rb < nr; rb += rb_rows)
      for (int64_t i0 = 0; i0 < k; i0 += MR)
        for (int64_t j0 = 0; j0 < k; j0 += NR)
          fns[(std::min<int64_t>(MR, k - i0) - 1) * NR + std::min<int64_t>(NR, k - j0) - 1](
              ap + rb, bp + rb, std::min(rb_rows, nr - rb), i0 * Wv, j0 * Wv, Wv, Wv, Wv, J + i0 * k + j0, k);
    r += nr;
  }
}

template <class in_t, class T>
void forward(const Problem<in_t>& P, bool collapsed, int64_t r0, int64_t r1, int64_t s0, int64_t s1, T* J) {
  if (collapsed) forward_collapsed(P, r0, r1, J);
  else forward_uncollapsed(P, r0, r1, s0, s1, J);
}

#ifndef IIC_BWD_ROWS
#define IIC_BWD_ROWS 4  // backward: output rows per pass over G, so G's packed slices are reused from L2
#endif

// Runs the register blocks over output rows y .. y+nrows-1 of image n, pixels [u0, u0 + mu*L), all channels:
// pass 0 writes dx2 from rows p0 (x1), pass 1 dx1 from rows p1 (x2); row q's 2d+1 pointers at p[q*Tn].
template <class in_t, class T>
void bwd_rows(const T* const* p0, const T* const* p1, int64_t nrows, int64_t Tn, int64_t lda, const T* Gp,
              const Problem<in_t>& P, int64_t n, int64_t y, int64_t u0, int64_t mu, in_t* dx1, in_t* dx2, T* blk) {
  constexpr int L = lanes<T>(), NR = IIC_BWD_NR, MU = IIC_BWD_MU;
  static const auto fns = bwd_fns<T>(std::make_index_sequence<NR * MU>());
  const int64_t k = P.k, W = P.W, HW = P.H * W, njb = (k + NR - 1) / NR, nu = std::min(mu * L, W - u0);
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t jb = 0; jb < njb; ++jb) {
      const int64_t nr = std::min<int64_t>(NR, k - jb * NR);
      const auto fn = fns[(nr - 1) * MU + mu - 1];
      const T* cf = Gp + (pass * njb + jb) * Tn * Tn * k * NR;
      for (int64_t q = 0; q < nrows; ++q) {
        const T* const* rows = (pass == 0 ? p0 : p1) + q * Tn;
        in_t* out = (pass == 0 ? dx2 : dx1) + ((n * k + jb * NR) * P.H + y + q) * W + u0;
        if (std::is_same_v<in_t, T> && nu == mu * L) {  // all lanes inside the row: store in place
          fn(rows, Tn, k, lda, cf, reinterpret_cast<T*>(out), HW);
        } else {
          fn(rows, Tn, k, lda, cf, blk, mu * L);
          for (int64_t j = 0; j < nr; ++j)
            for (int64_t u = 0; u < nu; ++u) out[j * HW + u] = static_cast<in_t>(blk[j * mu * L + u]);
        }
      }
    }
  }
}

// Both outputs by one kernel: dx2[j][u] = sum_{s,i} G[s,i,j] x1[i][u + t_s] and, substituting s -> S-1-s (t -> -t),
// dx1[i][v] = sum_{s,j} G[S-1-s,i,j] x2[j][v + t_s]; Gp holds both coefficient sets (pack_grad in the driver).
// Uncollapsed: column blocks of the rows outside (the ring of rows then holds only the block and its halo), blocks
// of IIC_BWD_ROWS rows inside. Collapsed: the same with T = 1 on rows of box_d(x1), box_d(x2).
template <class in_t, class T>
void backward(const Problem<in_t>& P, bool collapsed, const T* Gp, int64_t r0, int64_t r1, in_t* dx1, in_t* dx2) {
  constexpr int L = lanes<T>(), MU = IIC_BWD_MU;
  const int64_t k = P.k, H = P.H, W = P.W, HW = H * W, Wv = round_up(W, L);
  const int64_t nv = Wv / L, nb = (nv + MU - 1) / MU;  // near-equal column blocks: 13 -> 4,3,3,3 (not 4,4,4,1)
  Buf<T> blk(IIC_BWD_NR * MU * L);
  if (collapsed) {
    Buf<T> B1(k * Wv), B2(k * Wv);
    VSum<in_t> box1(P.x1, k, H, W, P.d), box2(P.x2, k, H, W, P.d);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / H, y = r % H;
      box1.to(n, y);
      box1.box_row(B1.p, Wv);
      box2.to(n, y);
      box2.box_row(B2.p, Wv);
      for (int64_t b = 0, u0 = 0, mu; b < nb; ++b, u0 += mu * L) {
        mu = nv / nb + (b < nv % nb);
        const T* q1[1] = {B1.p + u0};
        const T* q2[1] = {B2.p + u0};
        bwd_rows(q1, q2, 1, 1, Wv, Gp, P, n, y, u0, mu, dx1, dx2, blk.p);
      }
    }
    return;
  }
  const int64_t d = P.d, Tn = 2 * d + 1, ldr = round_up(MU * L + 2 * d, 8), R = IIC_BWD_ROWS;
  const int64_t ring = std::min(Tn + R - 1, H);  // rows y-d .. y+R-1+d of x1 and of x2: slot = row % ring
  Buf<T> R1(ring * k * ldr), R2(ring * k * ldr);
  std::vector<int64_t> tag(ring);
  std::vector<const T*> p1(R * Tn), p2(R * Tn);
  for (int64_t b = 0, u0 = 0, mu; b < nb; ++b, u0 += mu * L) {
    mu = nv / nb + (b < nv % nb);
    std::fill(tag.begin(), tag.end(), -1);
    for (int64_t r = r0, nr; r < r1; r += nr) {
      const int64_t n = r / H, y = r % H;
      nr = std::min({R, r1 - r, H - y});
      for (int64_t ya = std::max<int64_t>(0, y - d); ya < std::min(H, y + nr + d); ++ya) {
        const int64_t slot = ya % ring;
        if (tag[slot] == n * H + ya) continue;
        // pixels u0 - d .. of the row, so element [dxi + u - u0] is pixel u + dxi - d
        load_row(P.x1 + (n * k * H + ya) * W, HW, k, W, u0 - d, R1.p + slot * k * ldr, ldr);
        load_row(P.x2 + (n * k * H + ya) * W, HW, k, W, u0 - d, R2.p + slot * k * ldr, ldr);
        tag[slot] = n * H + ya;
      }
      for (int64_t q = 0; q < nr; ++q)
        for (int64_t dyi = 0; dyi < Tn; ++dyi) {
          const int64_t ya = y + q + dyi - d;
          const bool in = ya >= 0 && ya < H;
          p1[q * Tn + dyi] = in ? R1.p + (ya % ring) * k * ldr : nullptr;
          p2[q * Tn + dyi] = in ? R2.p + (ya % ring) * k * ldr : nullptr;
        }
      bwd_rows(p1.data(), p2.data(), nr, Tn, ldr, Gp, P, n, y, u0, mu, dx1, dx2, blk.p);
    }
  }
}

}  // namespace IIC_NS
}  // namespace cpu
}  // namespace iic_fast
