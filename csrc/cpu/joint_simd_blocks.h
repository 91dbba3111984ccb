// Building blocks of the vectorised joint kernels (joint_simd.h): vector types, row tiles, the forward and
// backward register blocks, the box-filter running sums. No include guard: included once per instruction set
// by joint_simd_isa.h, inside that set's target region and namespace IIC_NS.
#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace iic_fast {
namespace cpu {
namespace IIC_NS {

template <class T> struct Vec;
template <> struct Vec<float> { typedef float type __attribute__((vector_size(IIC_VBYTES))); };
template <> struct Vec<double> { typedef double type __attribute__((vector_size(IIC_VBYTES))); };
template <class T> constexpr int lanes() { return IIC_VBYTES / sizeof(T); }

template <class T> inline typename Vec<T>::type loadu(const T* p) {
  typename Vec<T>::type v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
constexpr int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// Zero-initialised 64-byte aligned scratch.
template <class T> struct Buf {
  T* p;
  explicit Buf(int64_t n) {
    const size_t bytes = static_cast<size_t>(round_up(std::max<int64_t>(n, 1) * sizeof(T), 64));
    p = static_cast<T*>(std::aligned_alloc(64, bytes));
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, bytes);
  }
  ~Buf() { std::free(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
};

// dst[c*ld + i] = src[c*cs + x0 + i] for i < ld, zero where x0 + i is outside [0, W): a window of a row.
template <class in_t, class T>
void load_row(const in_t* src, int64_t cs, int64_t k, int64_t W, int64_t x0, T* dst, int64_t ld) {
  const int64_t lo = std::clamp<int64_t>(-x0, 0, ld), hi = std::clamp<int64_t>(W - x0, lo, ld);
  for (int64_t c = 0; c < k; ++c) {
    T* q = dst + c * ld;
    const in_t* s = src + c * cs + x0;
    std::fill(q, q + lo, T(0));
    for (int64_t i = lo; i < hi; ++i) q[i] = static_cast<T>(s[i]);
    std::fill(q + hi, q + ld, T(0));
  }
}

// Lane sums of N accumulators by a shuffle tree (3 ops per accumulator instead of log2(L) extracts each):
// each level halves the lane group of every vector and packs two vectors into one, so after log2(L) levels
// vector m, lane l holds the sum of acc[m*L + l].
template <class T, int g, int shift, int... I>
inline typename Vec<T>::type fold_half(typename Vec<T>::type a, typename Vec<T>::type b,
                                       std::integer_sequence<int, I...>) {
  constexpr int L = lanes<T>(), h = g / 2, groups = L / g;
  return __builtin_shufflevector(a, b, ((I / h) < groups ? (I / h) * g + I % h + shift
                                                         : L + ((I / h) - groups) * g + I % h + shift)...);
}
template <class T, int g, int N>
inline void fold_level(typename Vec<T>::type* v) {
  if constexpr (g >= 2) {
    constexpr auto seq = std::make_integer_sequence<int, lanes<T>()>();
    for (int m = 0; m < (N + 1) / 2; ++m) {
      const typename Vec<T>::type b = 2 * m + 1 < N ? v[2 * m + 1] : typename Vec<T>::type{};
      v[m] = fold_half<T, g, 0>(v[2 * m], b, seq) + fold_half<T, g, g / 2>(v[2 * m], b, seq);
    }
    fold_level<T, g / 2, (N + 1) / 2>(v);
  }
}

// Forward register block (MR rows i of x1 x NR rows j of x2): out[m*ldo + j] += sum_r sum_{x < nx}
// a_r[aoff + m*lda + x] * b_r[boff + j*ldb + x] over the nrows row pairs (a_r already shifted by dy and dx).
template <class T, int MR, int NR>
void fwd_block(const T* const* ar, const T* const* br, int64_t nrows, int64_t aoff, int64_t boff, int64_t lda,
               int64_t ldb, int64_t nx, T* out, int64_t ldo) {
  using V = typename Vec<T>::type;
  constexpr int L = lanes<T>();
  V acc[MR * NR] = {};
  for (int64_t r = 0; r < nrows; ++r) {
    const T* a = ar[r] + aoff;
    const T* b = br[r] + boff;
    for (int64_t x = 0; x < nx; x += L) {
      V bv[NR];
      for (int j = 0; j < NR; ++j) bv[j] = loadu(b + j * ldb + x);
      for (int m = 0; m < MR; ++m) {
        const V av = loadu(a + m * lda + x);
        for (int j = 0; j < NR; ++j) acc[m * NR + j] += av * bv[j];
      }
    }
  }
  fold_level<T, L, MR * NR>(acc);
  T sums[round_up(MR * NR, L)];
  std::memcpy(sums, acc, sizeof(sums));
  for (int m = 0; m < MR; ++m)
    for (int j = 0; j < NR; ++j) out[m * ldo + j] += sums[m * NR + j];
}

// Backward register block (NR output channels x MU vectors of pixels):
//   out[j*ldo + p*L + l] = sum_{dyi, dxi < T} sum_{c < k} rows[dyi][c*lda + dxi + p*L + l] * cf[((dyi*T + dxi)*k + c)*NRP + j]
// with the coefficients packed by pack_grad() (NRP = IIC_BWD_NR wide, so one line of G serves several steps).
template <class T, int NR, int MU>
void bwd_block(const T* const* rows, int64_t Tn, int64_t k, int64_t lda, const T* cf, T* out, int64_t ldo) {
  using V = typename Vec<T>::type;
  constexpr int L = lanes<T>(), NRP = IIC_BWD_NR;
  V acc[NR][MU] = {};
  for (int64_t dyi = 0; dyi < Tn; ++dyi) {
    const T* row = rows[dyi];
    if (!row) continue;  // row outside the image
    const T* g = cf + dyi * Tn * k * NRP;
    for (int64_t dxi = 0; dxi < Tn; ++dxi) {
      const T* a = row + dxi;
      for (int64_t c = 0; c < k; ++c, g += NRP, a += lda) {
        V av[MU];
        for (int p = 0; p < MU; ++p) av[p] = loadu(a + p * L);
        for (int j = 0; j < NR; ++j) {
          const T gj = g[j];
          for (int p = 0; p < MU; ++p) acc[j][p] += av[p] * gj;
        }
      }
    }
  }
  for (int j = 0; j < NR; ++j)
    for (int p = 0; p < MU; ++p) std::memcpy(out + j * ldo + p * L, &acc[j][p], sizeof(V));
}

// Tables of the register-block instantiations, indexed by the tail sizes (mr-1)*NR + (nr-1).
template <class T> using FwdFn = void (*)(const T* const*, const T* const*, int64_t, int64_t, int64_t, int64_t,
                                          int64_t, int64_t, T*, int64_t);
template <class T> using BwdFn = void (*)(const T* const*, int64_t, int64_t, int64_t, const T*, T*, int64_t);
template <class T, size_t... I> std::array<FwdFn<T>, sizeof...(I)> fwd_fns(std::index_sequence<I...>) {
  return {{&fwd_block<T, int(I / IIC_FWD_NR) + 1, int(I % IIC_FWD_NR) + 1>...}};
}
template <class T, size_t... I> std::array<BwdFn<T>, sizeof...(I)> bwd_fns(std::index_sequence<I...>) {
  return {{&bwd_block<T, int(I / IIC_BWD_MU) + 1, int(I % IIC_BWD_MU) + 1>...}};
}

// Inclusive prefix sum within one vector (log2(L) shift-and-add steps) and the broadcast of its last lane.
template <int s, class V, int... I> inline V shift_up(V v, std::integer_sequence<int, I...>) {
  return __builtin_shufflevector(V{}, v, (I < s ? 0 : int(sizeof...(I)) + I - s)...);
}
template <class V, int s = 1> inline V scan(V v) {
  constexpr int L = sizeof(V) / sizeof(v[0]);
  if constexpr (s < L) return scan<V, 2 * s>(v + shift_up<s>(v, std::make_integer_sequence<int, L>()));
  else return v;
}
template <class V, int... I> inline V last_lane(V v, std::integer_sequence<int, I...>) {
  return __builtin_shufflevector(v, v, (I * 0 + int(sizeof...(I)) - 1)...);
}
template <class V> inline V last_lane(V v) {
  return last_lane(v, std::make_integer_sequence<int, sizeof(V) / sizeof(v[0])>());
}

// Running vertical (2d+1)-row sums of one map in double (exact enough that adding and removing rows does not
// drift), for the collapsed box filter; box_row() adds the horizontal (2d+1) sum by prefix sums.
template <class in_t> struct VSum {
  const in_t* x;
  int64_t k, H, W, d, n = -1, y = -1;
  std::vector<double> v, pre;
  VSum(const in_t* x_, int64_t k_, int64_t H_, int64_t W_, int64_t d_)
      : x(x_), k(k_), H(H_), W(W_), d(d_), v(k_ * W_), pre(W_ + 2 * d_ + 2) {}
  void add(int64_t yy, double sign) {
    if (yy < 0 || yy >= H) return;
    for (int64_t c = 0; c < k; ++c) {
      const in_t* s = x + ((n * k + c) * H + yy) * W;
      double* q = v.data() + c * W;
      for (int64_t i = 0; i < W; ++i) q[i] += sign * static_cast<double>(s[i]);
    }
  }
  void to(int64_t n_, int64_t y_) {  // make v the sum of rows [y_-d, y_+d] of image n_
    if (n_ == n && y_ == y + 1) {
      y = y_;
      add(y_ + d, 1.0);
      add(y_ - d - 1, -1.0);
      return;
    }
    n = n_;
    y = y_;
    std::fill(v.begin(), v.end(), 0.0);
    for (int64_t yy = y_ - d; yy <= y_ + d; ++yy) add(yy, 1.0);
  }
  // dst[c*ld + x] = sum_{|t| <= d} v[c][x + t] (zero outside), zero for x in [W, ld). Prefix sums by an
  // in-register scan (a scalar running sum would wait on the add latency at every pixel).
  template <class T> void box_row(T* dst, int64_t ld) {
    using VD = typename Vec<double>::type;
    constexpr int L = lanes<double>();
    double* pp = pre.data();  // pp[j] = sum of v[c][0 .. j-d-1] (clamped), so box[x] = pp[x+2d+1] - pp[x]
    for (int64_t c = 0; c < k; ++c) {
      const double* q = v.data() + c * W;
      std::fill(pp, pp + d + 1, 0.0);
      VD carry = {};
      const int64_t wv = W / L * L;
      for (int64_t i = 0; i < wv; i += L) {
        const VD s = scan(loadu(q + i)) + carry;
        std::memcpy(pp + d + 1 + i, &s, sizeof(s));
        carry = last_lane(s);
      }
      for (int64_t i = wv; i < W; ++i) pp[d + 1 + i] = pp[d + i] + q[i];
      std::fill(pp + d + 1 + W, pp + W + 2 * d + 2, pp[d + W]);
      T* o = dst + c * ld;
      for (int64_t x = 0; x < W; ++x) o[x] = static_cast<T>(pp[x + 2 * d + 1] - pp[x]);
      std::fill(o + W, o + ld, T(0));
    }
  }
};

}  // namespace IIC_NS
}  // namespace cpu
}  // namespace iic_fast
