/*
 * cellfm's one native piece: a batched single-precision GEMM (CBLAS `cblas_sgemm`) that works
 * directly on the memory of the TensorFlow.js wasm backend (a `WebAssembly.Memory` buffer), so the
 * MatMul kernels of `src/blas.ts` call the machine's BLAS (OpenBLAS on Linux, Accelerate on macOS)
 * without copying tensors in or out of the wasm heap.
 *
 * Exports (Node-API, so it loads in worker threads too):
 *   sgemm(buffer, transA, transB, m, n, k, batch, aOff, aStride, bOff, bStride, cOff, cStride,
 *         biasOff, biasLen, act)
 *     For i < batch: C_i = act(op(A_i) · op(B_i) + bias), row-major, C_i [m, n], op(A_i) [m, k],
 *     op(B_i) [k, n]; A_i starts at float index aOff + i·aStride of `buffer` (an ArrayBuffer), and
 *     likewise B_i and C_i (a stride of 0 broadcasts one matrix over the batch). A_i is stored
 *     [k, m] when transA, B_i [n, k] when transB. bias: biasLen floats at biasOff (biasLen n: one
 *     per column; 1: one for all; 0: none), added after the product, as tfjs' fused matmul does.
 *     act: 0 linear, 1 relu (max(x, 0)), 2 relu6 (min(max(x, 0), 6)). Every region is checked
 *     against the buffer's length first (a TypeError/RangeError is thrown, nothing is written).
 *   softmax(buffer, xOff, outOff, rows, cols, biasOff, biasRows, rowsPerBias)
 *     Row-wise softmax over the last axis, out_r = softmax(x_r + bias_{(r / rowsPerBias) % biasRows})
 *     (biasRows 0: no bias). With x the attention scores [batch, heads, L, L] and bias the additive
 *     mask [batch, 1, 1, L] (rowsPerBias heads·L, biasRows batch) this is BERT's masked softmax in one
 *     pass, without the broadcast add tfjs would run first. exp is Cephes' single-precision
 *     polynomial (cephes/single/expf.c, ~1 ulp), vectorised; exp(t) = 0 below t = -87.3.
 *   layernorm(buffer, xOff, resOff, gOff, bOff, yOff, xhatOff, rstdOff, rows, cols, eps)
 *     LayerNorm over the last axis of v = x + res (resOff < 0: no residual): mean and biased
 *     variance per row (two passes, as torch.nn.LayerNorm), rstd = 1/sqrt(var + eps),
 *     xhat = (v - mean)·rstd, y = xhat·g + b; xhat [rows, cols] and rstd [rows] are written only
 *     where their offsets are >= 0 (the backward pass needs them).
 *   attention(buffer, qkvOff, ld, biasOff, dropOff, pOff, ctxOff, batch, heads, L, D, scale)
 *     BERT self-attention after the projections, per (cell b, head h), reading the heads in place:
 *     q, k, v of token t are the floats [h·D, (h+1)·D) of rows t of a row-major [batch·L, ld]
 *     matrix at qkvOff, qkvOff + heads·D and qkvOff + 2·heads·D (the fused q|k|v projection, ld =
 *     3·heads·D), so no head split or merge is copied. P_bh = softmax(scale · Q Kᵀ + bias_b) is
 *     written at pOff [batch·heads, L, L] (bias: [batch, L] additive mask, biasOff < 0: none);
 *     ctx_bh = (P_bh ∘ drop_bh) V_bh (drop: [batch·heads, L, L] dropout multipliers, dropOff < 0:
 *     none) is written into ctx [batch·L, heads·D] at columns h·D.
 *   attention_backward(buffer, qkvOff, ld, pOff, dropOff, dctxOff, dqkvOff, batch, heads, L, D, scale)
 *     Its gradient: from dctx [batch·L, heads·D] and the saved P, writes dq|dk|dv into dqkv (same
 *     layout as qkv): dV = (P∘drop)ᵀ dctx, dP = (dctx Vᵀ)∘drop, dS = P∘(dP − rowsum(dP∘P)),
 *     dQ = scale · dS K, dK = scale · dSᵀ Q.
 *   threads(n)  sets the BLAS thread count when n > 0 (OpenBLAS only); returns the count in force
 *               (0 where the library does not say).
 *   config      the library's own description (OpenBLAS: `openblas_get_config()` + core name).
 */
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __APPLE__
#include <Accelerate/Accelerate.h>
#define CELLFM_PROVIDER "Accelerate"
#else
/* Declared here rather than from <cblas.h>: its path differs between BLAS packages. */
enum { CellfmRowMajor = 101, CellfmNoTrans = 111, CellfmTrans = 112 };
void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha, const float* a,
                 int lda, const float* b, int ldb, float beta, float* c, int ldc);
void openblas_set_num_threads(int n);
int openblas_get_num_threads(void);
char* openblas_get_config(void);
char* openblas_get_corename(void);
#define CblasRowMajor CellfmRowMajor
#define CblasNoTrans CellfmNoTrans
#define CblasTrans CellfmTrans
#endif

#define CHECK(call)                                                    \
  do {                                                                 \
    if ((call) != napi_ok) {                                           \
      napi_throw_error(env, NULL, "cellfm_blas: Node-API call failed"); \
      return NULL;                                                     \
    }                                                                  \
  } while (0)

static int64_t arg_int(napi_env env, napi_value v, int* ok) {
  int64_t x = 0;
  if (napi_get_value_int64(env, v, &x) != napi_ok) *ok = 0;
  return x;
}

/* True when floats [off, off + (batch-1)·stride + size) lie inside a buffer of `len` floats. */
static int fits(int64_t off, int64_t stride, int64_t batch, int64_t size, int64_t len) {
  if (off < 0 || stride < 0 || size < 0) return 0;
  return off + (batch - 1) * stride + size <= len;
}

static napi_value sgemm(napi_env env, napi_callback_info info) {
  size_t argc = 16;
  napi_value argv[16];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 16) {
    napi_throw_type_error(env, NULL, "cellfm_blas.sgemm: expected 16 arguments");
    return NULL;
  }
  void* data = NULL;
  size_t bytes = 0;
  bool isAb = false;
  CHECK(napi_is_arraybuffer(env, argv[0], &isAb));
  if (!isAb) {
    napi_throw_type_error(env, NULL, "cellfm_blas.sgemm: argument 1 must be an ArrayBuffer");
    return NULL;
  }
  CHECK(napi_get_arraybuffer_info(env, argv[0], &data, &bytes));
  bool ta = false, tb = false;
  CHECK(napi_get_value_bool(env, argv[1], &ta));
  CHECK(napi_get_value_bool(env, argv[2], &tb));
  int ok = 1;
  const int64_t m = arg_int(env, argv[3], &ok), n = arg_int(env, argv[4], &ok), k = arg_int(env, argv[5], &ok);
  const int64_t batch = arg_int(env, argv[6], &ok);
  const int64_t aOff = arg_int(env, argv[7], &ok), aStride = arg_int(env, argv[8], &ok);
  const int64_t bOff = arg_int(env, argv[9], &ok), bStride = arg_int(env, argv[10], &ok);
  const int64_t cOff = arg_int(env, argv[11], &ok), cStride = arg_int(env, argv[12], &ok);
  const int64_t biasOff = arg_int(env, argv[13], &ok), biasLen = arg_int(env, argv[14], &ok);
  const int64_t act = arg_int(env, argv[15], &ok);
  if (!ok) {
    napi_throw_type_error(env, NULL, "cellfm_blas.sgemm: arguments 4-16 must be integers");
    return NULL;
  }
  const int64_t len = (int64_t)(bytes / sizeof(float));
  const int64_t lim = INT32_MAX;
  if (m < 0 || n < 0 || k < 0 || batch < 0 || m > lim || n > lim || k > lim || act < 0 || act > 2 ||
      (biasLen != 0 && biasLen != 1 && biasLen != n)) {
    napi_throw_range_error(env, NULL, "cellfm_blas.sgemm: bad dimensions, bias length or activation");
    return NULL;
  }
  if (batch == 0 || m == 0 || n == 0) return NULL;
  if (!fits(aOff, aStride, batch, m * k, len) || !fits(bOff, bStride, batch, k * n, len) ||
      !fits(cOff, cStride, batch, m * n, len) || (biasLen > 0 && !fits(biasOff, 0, 1, biasLen, len))) {
    napi_throw_range_error(env, NULL, "cellfm_blas.sgemm: a matrix lies outside the buffer");
    return NULL;
  }
  float* heap = (float*)data;
  const int lda = (int)(ta ? m : k), ldb = (int)(tb ? k : n), ldc = (int)n;
  for (int64_t i = 0; i < batch; i++) {
    float* c = heap + cOff + i * cStride;
    if (k == 0) {
      memset(c, 0, (size_t)(m * n) * sizeof(float));
    } else {
      cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                  (int)k, 1.0f, heap + aOff + i * aStride, lda, heap + bOff + i * bStride, ldb, 0.0f, c, ldc);
    }
    if (biasLen == 0 && act == 0) continue;
    const float* bias = biasLen > 0 ? heap + biasOff : NULL;
    for (int64_t r = 0; r < m; r++) {
      float* row = c + r * n;
      for (int64_t j = 0; j < n; j++) {
        float x = row[j];
        if (bias) x += bias[biasLen == 1 ? 0 : j];
        if (act >= 1 && x < 0.0f) x = 0.0f;
        if (act == 2 && x > 6.0f) x = 6.0f;
        row[j] = x;
      }
    }
  }
  return NULL;
}

/* Vectorised loops: one clone per x86-64 level where GCC builds them (picked at load time by the CPU). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__APPLE__)
#define CELLFM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CELLFM_CLONES
#endif

/* e^x for x <= 0 in place over n floats (Cephes expf: range reduction by ln 2, degree-5 polynomial). */
CELLFM_CLONES static void exp_inplace(float* v, int64_t n) {
  /* written so that GCC vectorises it (-fno-trapping-math): selects, floor, no calls */
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    const float x0 = v[i];
    float x = x0 > -87.3f ? x0 : -87.3f;
    const float fx = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
    const int32_t k = (int32_t)fx;
    x = x - fx * 0.693359375f;
    x = x + fx * 2.12194440e-4f;
    const float z = x * x;
    float y = 1.9875691500e-4f;
    y = y * x + 1.3981999507e-3f;
    y = y * x + 8.3334519073e-3f;
    y = y * x + 4.1665795894e-2f;
    y = y * x + 1.6666665459e-1f;
    y = y * x + 5.0000001201e-1f;
    y = y * z + x + 1.0f;
    float scale; /* 2^k */
    const int32_t bits = (k + 127) << 23;
    __builtin_memcpy(&scale, &bits, sizeof scale);
    v[i] = x0 > -87.3f ? y * scale : 0.0f; /* e^x underflows to 0 below -87.3 */
  }
}

CELLFM_CLONES static void softmax_rows(const float* x, float* out, int64_t rows, int64_t cols, const float* bias,
                                       int64_t biasRows, int64_t rowsPerBias) {
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x + r * cols;
    float* o = out + r * cols;
    const float* b = biasRows > 0 ? bias + ((r / rowsPerBias) % biasRows) * cols : NULL;
    float mx = -__builtin_inff();
    if (b) {
#pragma omp simd reduction(max : mx)
      for (int64_t j = 0; j < cols; j++) {
        const float t = xr[j] + b[j];
        o[j] = t;
        mx = t > mx ? t : mx;
      }
    } else {
#pragma omp simd reduction(max : mx)
      for (int64_t j = 0; j < cols; j++) {
        o[j] = xr[j];
        mx = xr[j] > mx ? xr[j] : mx;
      }
    }
#pragma omp simd
    for (int64_t j = 0; j < cols; j++) o[j] -= mx;
    exp_inplace(o, cols);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < cols; j++) sum += o[j];
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int64_t j = 0; j < cols; j++) o[j] *= inv;
  }
}

CELLFM_CLONES static void layernorm_rows(const float* x, const float* res, const float* g, const float* b, float* y,
                                         float* xhat, float* rstd, int64_t rows, int64_t cols, float eps) {
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x + r * cols;
    const float* rr = res ? res + r * cols : NULL;
    float* yr = y + r * cols;
    float s = 0.0f;
    if (rr) {
#pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < cols; j++) {
        const float v = xr[j] + rr[j];
        yr[j] = v;
        s += v;
      }
    } else {
#pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < cols; j++) {
        yr[j] = xr[j];
        s += xr[j];
      }
    }
    const float mean = s / (float)cols;
    float q = 0.0f;
#pragma omp simd reduction(+ : q)
    for (int64_t j = 0; j < cols; j++) {
      const float d = yr[j] - mean;
      q += d * d;
    }
    const float rs = 1.0f / __builtin_sqrtf(q / (float)cols + eps);
    if (rstd) rstd[r] = rs;
    float* xh = xhat ? xhat + r * cols : NULL;
    if (xh) {
#pragma omp simd
      for (int64_t j = 0; j < cols; j++) {
        const float h = (yr[j] - mean) * rs;
        xh[j] = h;
        yr[j] = h * g[j] + b[j];
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < cols; j++) yr[j] = (yr[j] - mean) * rs * g[j] + b[j];
    }
  }
}

/* In place over rows of dp [rows, cols]: dp ∘= drop (when given), then dS = P∘(dP − rowsum(dP∘P)). */
CELLFM_CLONES static void softmax_backward_rows(float* dp, const float* p, const float* drop, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; r++) {
    float* d = dp + r * cols;
    const float* pr = p + r * cols;
    if (drop) {
      const float* mr = drop + r * cols;
#pragma omp simd
      for (int64_t j = 0; j < cols; j++) d[j] *= mr[j];
    }
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < cols; j++) s += d[j] * pr[j];
#pragma omp simd
    for (int64_t j = 0; j < cols; j++) d[j] = pr[j] * (d[j] - s);
  }
}

/* The ArrayBuffer argument and `count` integer arguments after it (argv[1..count]). */
static float* heap_args(napi_env env, napi_callback_info info, size_t want, int64_t* ints, int64_t* len, double* real,
                        const char* name) {
  size_t argc = 16;
  napi_value argv[16];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != want) {
    char msg[96];
    snprintf(msg, sizeof msg, "cellfm_blas.%s: expected %d arguments", name, (int)want);
    napi_throw_type_error(env, NULL, msg);
    return NULL;
  }
  bool isAb = false;
  void* data = NULL;
  size_t bytes = 0;
  if (napi_is_arraybuffer(env, argv[0], &isAb) != napi_ok || !isAb ||
      napi_get_arraybuffer_info(env, argv[0], &data, &bytes) != napi_ok) {
    napi_throw_type_error(env, NULL, "cellfm_blas: argument 1 must be an ArrayBuffer");
    return NULL;
  }
  int ok = 1;
  const size_t nInts = real ? want - 2 : want - 1;
  for (size_t i = 0; i < nInts; i++) ints[i] = arg_int(env, argv[i + 1], &ok);
  if (real && napi_get_value_double(env, argv[want - 1], real) != napi_ok) ok = 0;
  if (!ok) {
    napi_throw_type_error(env, NULL, "cellfm_blas: expected numbers after the buffer");
    return NULL;
  }
  *len = (int64_t)(bytes / sizeof(float));
  return (float*)data;
}

static napi_value softmax(napi_env env, napi_callback_info info) {
  int64_t a[7], len = 0;
  float* heap = heap_args(env, info, 8, a, &len, NULL, "softmax");
  if (!heap) return NULL;
  const int64_t xOff = a[0], outOff = a[1], rows = a[2], cols = a[3], biasOff = a[4], biasRows = a[5], per = a[6];
  if (rows < 0 || cols < 1 || biasRows < 0 || (biasRows > 0 && per < 1) || !fits(xOff, 0, 1, rows * cols, len) ||
      !fits(outOff, 0, 1, rows * cols, len) || (biasRows > 0 && !fits(biasOff, 0, 1, biasRows * cols, len))) {
    napi_throw_range_error(env, NULL, "cellfm_blas.softmax: bad dimensions or a matrix outside the buffer");
    return NULL;
  }
  softmax_rows(heap + xOff, heap + outOff, rows, cols, biasRows > 0 ? heap + biasOff : NULL, biasRows, per);
  return NULL;
}

static napi_value layernorm(napi_env env, napi_callback_info info) {
  int64_t a[9], len = 0;
  double eps = 0;
  float* heap = heap_args(env, info, 11, a, &len, &eps, "layernorm");
  if (!heap) return NULL;
  const int64_t xOff = a[0], resOff = a[1], gOff = a[2], bOff = a[3], yOff = a[4], xhOff = a[5], rsOff = a[6];
  const int64_t rows = a[7], cols = a[8], size = rows * cols;
  if (rows < 0 || cols < 1 || !fits(xOff, 0, 1, size, len) || (resOff >= 0 && !fits(resOff, 0, 1, size, len)) ||
      !fits(gOff, 0, 1, cols, len) || !fits(bOff, 0, 1, cols, len) || !fits(yOff, 0, 1, size, len) ||
      (xhOff >= 0 && !fits(xhOff, 0, 1, size, len)) || (rsOff >= 0 && !fits(rsOff, 0, 1, rows, len))) {
    napi_throw_range_error(env, NULL, "cellfm_blas.layernorm: bad dimensions or a matrix outside the buffer");
    return NULL;
  }
  layernorm_rows(heap + xOff, resOff >= 0 ? heap + resOff : NULL, heap + gOff, heap + bOff, heap + yOff,
                 xhOff >= 0 ? heap + xhOff : NULL, rsOff >= 0 ? heap + rsOff : NULL, rows, cols, (float)eps);
  return NULL;
}

static napi_value attention(napi_env env, napi_callback_info info) {
  int64_t a[11], len = 0;
  double scale = 1;
  float* heap = heap_args(env, info, 12, a, &len, &scale, "attention");
  if (!heap) return NULL;
  const int64_t qkvOff = a[0], ld = a[1], biasOff = a[2], dropOff = a[3], pOff = a[4], ctxOff = a[5];
  const int64_t B = a[6], NH = a[7], L = a[8], D = a[9], H = NH * D, R = B * L;
  (void)a[10];
  if (B < 1 || NH < 1 || L < 1 || D < 1 || ld < 3 * H || L > INT32_MAX / L || !fits(qkvOff, 0, 1, (R - 1) * ld + 3 * H, len) ||
      (biasOff >= 0 && !fits(biasOff, 0, 1, B * L, len)) || (dropOff >= 0 && !fits(dropOff, 0, 1, B * NH * L * L, len)) ||
      !fits(pOff, 0, 1, B * NH * L * L, len) || !fits(ctxOff, 0, 1, R * H, len)) {
    napi_throw_range_error(env, NULL, "cellfm_blas.attention: bad dimensions or a matrix outside the buffer");
    return NULL;
  }
  float* tmp = dropOff >= 0 ? (float*)malloc((size_t)(L * L) * sizeof(float)) : NULL;
  if (dropOff >= 0 && !tmp) {
    napi_throw_error(env, NULL, "cellfm_blas.attention: out of memory");
    return NULL;
  }
  for (int64_t b = 0; b < B; b++) {
    for (int64_t h = 0; h < NH; h++) {
      const float* q = heap + qkvOff + b * L * ld + h * D;
      const float* k = q + H;
      const float* v = q + 2 * H;
      float* p = heap + pOff + (b * NH + h) * L * L;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)L, (int)L, (int)D, (float)scale, q, (int)ld, k, (int)ld, 0.0f, p,
                  (int)L);
      softmax_rows(p, p, L, L, biasOff >= 0 ? heap + biasOff + b * L : NULL, biasOff >= 0 ? 1 : 0, L);
      const float* pd = p;
      if (tmp) {
        const float* m = heap + dropOff + (b * NH + h) * L * L;
        for (int64_t i = 0; i < L * L; i++) tmp[i] = p[i] * m[i];
        pd = tmp;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)L, (int)D, (int)L, 1.0f, pd, (int)L, v, (int)ld, 0.0f,
                  heap + ctxOff + b * L * H + h * D, (int)H);
    }
  }
  free(tmp);
  return NULL;
}

static napi_value attention_backward(napi_env env, napi_callback_info info) {
  int64_t a[11], len = 0;
  double scale = 1;
  float* heap = heap_args(env, info, 12, a, &len, &scale, "attention_backward");
  if (!heap) return NULL;
  const int64_t qkvOff = a[0], ld = a[1], pOff = a[2], dropOff = a[3], dctxOff = a[4], dqkvOff = a[5];
  const int64_t B = a[6], NH = a[7], L = a[8], D = a[9], H = NH * D, R = B * L;
  (void)a[10];
  if (B < 1 || NH < 1 || L < 1 || D < 1 || ld < 3 * H || L > INT32_MAX / L || !fits(qkvOff, 0, 1, (R - 1) * ld + 3 * H, len) ||
      !fits(pOff, 0, 1, B * NH * L * L, len) || (dropOff >= 0 && !fits(dropOff, 0, 1, B * NH * L * L, len)) ||
      !fits(dctxOff, 0, 1, R * H, len) || !fits(dqkvOff, 0, 1, (R - 1) * ld + 3 * H, len)) {
    napi_throw_range_error(env, NULL, "cellfm_blas.attention_backward: bad dimensions or a matrix outside the buffer");
    return NULL;
  }
  float* dp = (float*)malloc((size_t)(L * L) * sizeof(float));
  float* pd = dropOff >= 0 ? (float*)malloc((size_t)(L * L) * sizeof(float)) : NULL;
  if (!dp || (dropOff >= 0 && !pd)) {
    free(dp);
    free(pd);
    napi_throw_error(env, NULL, "cellfm_blas.attention_backward: out of memory");
    return NULL;
  }
  for (int64_t b = 0; b < B; b++) {
    for (int64_t h = 0; h < NH; h++) {
      const float* q = heap + qkvOff + b * L * ld + h * D;
      const float* k = q + H;
      const float* v = q + 2 * H;
      float* dq = heap + dqkvOff + b * L * ld + h * D;
      float* dk = dq + H;
      float* dv = dq + 2 * H;
      const float* p = heap + pOff + (b * NH + h) * L * L;
      const float* m = dropOff >= 0 ? heap + dropOff + (b * NH + h) * L * L : NULL;
      const float* dc = heap + dctxOff + b * L * H + h * D;
      const float* pp = p;
      if (m) {
        for (int64_t i = 0; i < L * L; i++) pd[i] = p[i] * m[i];
        pp = pd;
      }
      /* dV = (P∘drop)ᵀ dctx */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)L, (int)D, (int)L, 1.0f, pp, (int)L, dc, (int)H, 0.0f, dv, (int)ld);
      /* dP = (dctx Vᵀ)∘drop, then dS = P∘(dP − rowsum(dP∘P)) in place */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)L, (int)L, (int)D, 1.0f, dc, (int)H, v, (int)ld, 0.0f, dp, (int)L);
      softmax_backward_rows(dp, p, m, L, L);
      /* dQ = scale · dS K, dK = scale · dSᵀ Q */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)L, (int)D, (int)L, (float)scale, dp, (int)L, k, (int)ld, 0.0f, dq,
                  (int)ld);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)L, (int)D, (int)L, (float)scale, dp, (int)L, q, (int)ld, 0.0f, dk,
                  (int)ld);
    }
  }
  free(dp);
  free(pd);
  return NULL;
}

static napi_value threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t want = 0;
  if (argc >= 1) {
    int ok = 1;
    want = arg_int(env, argv[0], &ok);
  }
  int now = 0;
#ifndef __APPLE__
  if (want > 0) openblas_set_num_threads((int)want);
  now = openblas_get_num_threads();
#endif
  napi_value out;
  CHECK(napi_create_int32(env, now, &out));
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn, cfg;
  char text[512];
#ifdef __APPLE__
  snprintf(text, sizeof text, "%s", CELLFM_PROVIDER);
#else
  snprintf(text, sizeof text, "%s (core %s)", openblas_get_config(), openblas_get_corename());
#endif
  if (napi_create_function(env, "sgemm", NAPI_AUTO_LENGTH, sgemm, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "sgemm", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "softmax", NAPI_AUTO_LENGTH, softmax, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "softmax", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "layernorm", NAPI_AUTO_LENGTH, layernorm, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "layernorm", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "attention", NAPI_AUTO_LENGTH, attention, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "attention", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "attention_backward", NAPI_AUTO_LENGTH, attention_backward, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "attention_backward", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "threads", NAPI_AUTO_LENGTH, threads, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "threads", fn) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &cfg) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "config", cfg) != napi_ok) return NULL;
  return exports;
}
