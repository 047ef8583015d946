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
 *   threads(n)  sets the BLAS thread count when n > 0 (OpenBLAS only); returns the count in force
 *               (0 where the library does not say).
 *   config      the library's own description (OpenBLAS: `openblas_get_config()` + core name).
 */
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
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
  if (napi_create_function(env, "threads", NAPI_AUTO_LENGTH, threads, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "threads", fn) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &cfg) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "config", cfg) != napi_ok) return NULL;
  return exports;
}
