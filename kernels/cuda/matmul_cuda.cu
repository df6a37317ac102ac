// matmul_cuda.cu: the CUDA backend's matmul through cuBLASLt, bias fused in the epilogue.
//
// pebble's tensors are row-major; cuBLASLt's are column-major. A row-major (R,C) matrix is
// the column-major (C,R) matrix with the same bytes, so every product below is written as
// its transpose:
//   forward  out (N,OC) = inp (N,IC) @ weight^T + bias  ->  out^T (OC,N) = W^T-op . inp^T
//   backward dinp (N,IC) += dout @ weight               ->  dinp^T (IC,N) += W^T . dout^T
//            dweight (OC,IC) += dout^T @ inp            ->  dweight^T (IC,OC) += inp^T . dout
//            dbias (OC) += column sums of dout          ->  own deterministic kernel
// Accumulation (+=) is beta = 1 with C == D. Full fp32 (CUBLAS_COMPUTE_32F) unless TF32 is
// switched on (pb_cuda_set_tf32), which parity tests leave off.
//
// The bf16 variants (mixed precision) take bf16 A and B, accumulate in fp32 on the tensor
// cores, and write bf16 activations (out, dinp; bias bf16 in the epilogue) or fp32 weight
// gradients (dweight, so accumulation over micro-batches loses nothing).
#include "kernels/cuda/cuda_common.cuh"

#include <string.h>

static cublasLtHandle_t g_lt;
static void *g_workspace;
static const size_t g_workspace_bytes = 32u << 20;  // cuBLASLt's recommended 32 MiB on Hopper
static int g_tf32;

void cuda_matmul_init(void) {
    if (g_lt) return;
    cublasCheck(cublasLtCreate(&g_lt));
    cudaCheck(cudaMalloc(&g_workspace, g_workspace_bytes));
}

void cuda_matmul_set_tf32(int on) { g_tf32 = on != 0; }

// The largest power of two (up to 256) dividing the address: cuBLASLt picks kernels by the
// alignment it is promised, so it must be told the truth.
static int alignment_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int al = 256;
    while (al > 4 && (a % (uintptr_t)al) != 0) al >>= 1;
    return al;
}

// One cached plan per distinct problem: descriptors and the algorithm the heuristic chose.
// Creating them costs tens of microseconds, as much as a small matmul.
typedef struct {
    int m, n, k, transa, transb, lda, ldb, ldd, bias, accumulate, tf32;
    int align_a, align_b, align_d, align_bias;
    int ab_type, d_type;  // cudaDataType_t of A and B; of C, D and the bias
    int epi;              // LT_EPI_*: a fused GELU (its aux matrix laid out as D)
    int batch;            // strided batch: count (0 or 1: one product) ...
    int64_t stride_a, stride_b, stride_d;  // ... and element offsets between the products
} lt_key;

enum { LT_EPI_NONE = 0, LT_EPI_GELU_AUX, LT_EPI_DGELU };

typedef struct {
    lt_key key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
    int ok;  // 0: cuBLASLt has no algorithm (only a fused epilogue may; the caller falls back)
} lt_plan;

// An open-addressing hash table: causal small-cache attention alone asks for a few hundred
// shapes per call (one per row block and product), too many for a linear search.
#define LT_CACHE 1024  // a power of two; start over at three quarters full
static lt_plan g_plans[LT_CACHE];
static unsigned char g_used[LT_CACHE];
static int g_nplans;

static uint32_t key_hash(const lt_key *key) {  // FNV-1a over the key's bytes
    const unsigned char *b = (const unsigned char *)key;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < sizeof *key; i++) h = (h ^ b[i]) * 16777619u;
    return h;
}

static lt_plan *get_plan(const lt_key *key) {
    uint32_t slot = key_hash(key) & (LT_CACHE - 1);
    for (; g_used[slot]; slot = (slot + 1) & (LT_CACHE - 1))
        if (memcmp(&g_plans[slot].key, key, sizeof *key) == 0) return &g_plans[slot];
    if (g_nplans == LT_CACHE * 3 / 4) {
        // Many distinct shapes (a long run of odd sizes): start over rather than grow.
        for (int i = 0; i < LT_CACHE; i++) {
            if (!g_used[i]) continue;
            cublasCheck(cublasLtMatmulDescDestroy(g_plans[i].desc));
            cublasCheck(cublasLtMatrixLayoutDestroy(g_plans[i].la));
            cublasCheck(cublasLtMatrixLayoutDestroy(g_plans[i].lb));
            cublasCheck(cublasLtMatrixLayoutDestroy(g_plans[i].ld));
            g_used[i] = 0;
        }
        g_nplans = 0;
        slot = key_hash(key) & (LT_CACHE - 1);
    }
    lt_plan *p = &g_plans[slot];
    memset(p, 0, sizeof *p);
    p->key = *key;
    g_used[slot] = 1;
    cublasComputeType_t ct = key->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    cudaDataType_t abt = (cudaDataType_t)key->ab_type, dt = (cudaDataType_t)key->d_type;
    cublasCheck(cublasLtMatmulDescCreate(&p->desc, ct, CUDA_R_32F));
    cublasOperation_t ta = key->transa ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t tb = key->transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtEpilogue_t epi = key->bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    if (key->epi == LT_EPI_GELU_AUX)
        epi = key->bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
    else if (key->epi == LT_EPI_DGELU)
        epi = CUBLASLT_EPILOGUE_DGELU;
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (key->epi != LT_EPI_NONE) {
        int64_t ld_aux = key->ldd;  // the aux matrix (pre-GELU values) has D's layout
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                   &ld_aux, sizeof ld_aux));
    }
    if (key->bias) {
        cudaDataType_t bt = dt;
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                   &bt, sizeof bt));
    }
    // Stored shapes: op(A) is (m,k), so A is (k,m) when transposed; likewise B.
    cublasCheck(cublasLtMatrixLayoutCreate(&p->la, abt, key->transa ? key->k : key->m,
                                           key->transa ? key->m : key->k, key->lda));
    cublasCheck(cublasLtMatrixLayoutCreate(&p->lb, abt, key->transb ? key->n : key->k,
                                           key->transb ? key->k : key->n, key->ldb));
    cublasCheck(cublasLtMatrixLayoutCreate(&p->ld, dt, key->m, key->n, key->ldd));
    if (key->batch > 1) {
        int32_t count = key->batch;
        cublasLtMatrixLayout_t lay[3] = {p->la, p->lb, p->ld};
        int64_t stride[3] = {key->stride_a, key->stride_b, key->stride_d};
        for (int i = 0; i < 3; i++) {
            cublasCheck(cublasLtMatrixLayoutSetAttribute(lay[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                         &count, sizeof count));
            cublasCheck(cublasLtMatrixLayoutSetAttribute(
                lay[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride[i], sizeof stride[i]));
        }
    }

    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &g_workspace_bytes, sizeof g_workspace_bytes));
    uint32_t al[4] = {(uint32_t)key->align_a, (uint32_t)key->align_b, (uint32_t)key->align_d,
                      (uint32_t)key->align_d};
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0], 4));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1], 4));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2], 4));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[3], 4));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasCheck(cublasLtMatmulAlgoGetHeuristic(g_lt, p->desc, p->la, p->lb, p->ld, p->ld, pref, 1,
                                               &res, &found));
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    p->ok = found > 0;
    if (found == 0 && key->epi != LT_EPI_NONE) {  // kept, so the heuristic is asked once
        g_nplans++;
        return p;
    }
    if (found == 0)
        pb_die(PB_EXIT_RUNTIME,
               "cuBLASLt has no algorithm for the matmul m=%d n=%d k=%d (transa %d, transb %d, "
               "bias %d, types %d/%d, batch %d)", key->m, key->n, key->k, key->transa,
               key->transb, key->bias, key->ab_type, key->d_type, key->batch);
    p->algo = res.algo;
    g_nplans++;
    return p;
}

// D (m,n) = op(A) (m,k) @ op(B) (k,n) [+ bias (m) on every column] [+ D], column-major;
// A and B of type abt, C, D and the bias of type dt; then the epilogue epi with its aux
// matrix. Returns 0 (nothing done) only for a fused epilogue cuBLASLt has no algorithm for.
static int lt_matmul_epi(void *d, const void *a, const void *b, const void *bias, int m, int n,
                         int k, int transa, int transb, int lda, int ldb, int ldd,
                         int accumulate, cudaDataType_t abt, cudaDataType_t dt, int epi,
                         const void *aux) {
    lt_key key;
    memset(&key, 0, sizeof key);  // padding bytes too: the key is compared with memcmp
    key.m = m, key.n = n, key.k = k, key.transa = transa, key.transb = transb;
    key.lda = lda, key.ldb = ldb, key.ldd = ldd, key.bias = bias != NULL;
    key.accumulate = accumulate, key.tf32 = abt == CUDA_R_32F && g_tf32;
    key.ab_type = (int)abt, key.d_type = (int)dt, key.epi = epi;
    key.align_a = alignment_of(a), key.align_b = alignment_of(b), key.align_d = alignment_of(d);
    key.align_bias = bias ? alignment_of(bias) : 0;
    lt_plan *p = get_plan(&key);
    if (!p->ok) return 0;
    if (bias)
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                   &bias, sizeof bias));
    if (epi != LT_EPI_NONE)
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                                   &aux, sizeof aux));
    float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    cublasCheck(cublasLtMatmul(g_lt, p->desc, &alpha, a, p->la, b, p->lb, &beta, d, p->ld, d,
                               p->ld, &p->algo, g_workspace, g_workspace_bytes, 0));
    return 1;
}

// batch column-major products D_i (m,n) = alpha op(A_i) op(B_i) + beta D_i, X_i = X + i *
// stride_x elements (cuda_common.cuh). A later product's alignment is that of its base
// pointer and of the stride together.
void cuda_matmul_strided(void *d, const void *a, const void *b, int m, int n, int k, int transa,
                         int transb, int lda, int ldb, int ldd, int64_t stride_a,
                         int64_t stride_b, int64_t stride_d, int batch, float alpha, float beta,
                         cudaDataType_t abt, cudaDataType_t dt) {
    PB_ASSERT(batch >= 1 && m >= 1 && n >= 1 && k >= 1);
    size_t eab = abt == CUDA_R_32F ? 4 : 2, ed = dt == CUDA_R_32F ? 4 : 2;
    lt_key key;
    memset(&key, 0, sizeof key);
    key.m = m, key.n = n, key.k = k, key.transa = transa, key.transb = transb;
    key.lda = lda, key.ldb = ldb, key.ldd = ldd, key.accumulate = beta != 0.0f;
    key.tf32 = abt == CUDA_R_32F && g_tf32;
    key.ab_type = (int)abt, key.d_type = (int)dt, key.epi = LT_EPI_NONE;
    key.batch = batch;
    key.stride_a = batch > 1 ? stride_a : 0, key.stride_b = batch > 1 ? stride_b : 0;
    key.stride_d = batch > 1 ? stride_d : 0;
    key.align_a = alignment_of(a), key.align_b = alignment_of(b), key.align_d = alignment_of(d);
    if (batch > 1) {
        int sa = alignment_of((const void *)(uintptr_t)(stride_a * eab));
        int sb = alignment_of((const void *)(uintptr_t)(stride_b * eab));
        int sd = alignment_of((const void *)(uintptr_t)(stride_d * ed));
        key.align_a = key.align_a < sa ? key.align_a : sa;
        key.align_b = key.align_b < sb ? key.align_b : sb;
        key.align_d = key.align_d < sd ? key.align_d : sd;
    }
    lt_plan *p = get_plan(&key);
    cublasCheck(cublasLtMatmul(g_lt, p->desc, &alpha, a, p->la, b, p->lb, &beta, d, p->ld, d,
                               p->ld, &p->algo, g_workspace, g_workspace_bytes, 0));
}

static void lt_matmul_typed(void *d, const void *a, const void *b, const void *bias, int m,
                            int n, int k, int transa, int transb, int lda, int ldb, int ldd,
                            int accumulate, cudaDataType_t abt, cudaDataType_t dt) {
    lt_matmul_epi(d, a, b, bias, m, n, k, transa, transb, lda, ldb, ldd, accumulate, abt, dt,
                  LT_EPI_NONE, NULL);
}

static void lt_matmul(float *d, const float *a, const float *b, const float *bias, int m, int n,
                      int k, int transa, int transb, int lda, int ldb, int ldd, int accumulate) {
    lt_matmul_typed(d, a, b, bias, m, n, k, transa, transb, lda, ldb, ldd, accumulate,
                    CUDA_R_32F, CUDA_R_32F);
}

void cuda_matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                         int N, int IC, int OC) {
    // out^T (OC,N) = op(W) (OC,IC) . inp^T (IC,N); W row-major (OC,IC) is column-major
    // (IC,OC), hence transa.
    lt_matmul(out, weight, inp, bias, OC, N, IC, 1, 0, IC, IC, OC, 0);
}

void cuda_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *weight, int N, int IC, int OC) {
    // dinp^T (IC,N) += W (IC,OC) . dout^T (OC,N)
    if (dinp) lt_matmul(dinp, weight, dout, NULL, IC, N, OC, 0, 0, IC, OC, IC, 1);
    // dweight^T (IC,OC) += inp^T (IC,N) . op(dout^T) (N,OC)
    if (dweight) lt_matmul(dweight, inp, dout, NULL, IC, OC, N, 0, 1, IC, OC, IC, 1);
    if (dbias) cuda_colsum_accumulate(dbias, dout, N, OC);
}

// --- bf16 (mixed precision): the same products; pointers hold bf16 except dweight, dbias.
void cuda_matmul_forward_bf16(float *out, const float *inp, const float *weight,
                              const float *bias, int N, int IC, int OC) {
    lt_matmul_typed(out, weight, inp, bias, OC, N, IC, 1, 0, IC, IC, OC, 0, CUDA_R_16BF,
                    CUDA_R_16BF);
}

void cuda_matmul_backward_bf16(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, int N, int IC, int OC) {
    if (dinp)
        lt_matmul_typed(dinp, weight, dout, NULL, IC, N, OC, 0, 0, IC, OC, IC, 1, CUDA_R_16BF,
                        CUDA_R_16BF);
    if (dweight)
        lt_matmul_typed(dweight, inp, dout, NULL, IC, OC, N, 0, 1, IC, OC, IC, 1, CUDA_R_16BF,
                        CUDA_R_32F);
    if (dbias) cuda_colsum_accumulate(dbias, (const bf16 *)dout, N, OC);
}

// --- GELU fused into the products (bf16; ops_cuda.cu falls back to separate kernels when
// these return 0). cuBLASLt's GELU is the tanh approximation, as pebble's.
// out (N,OC) = gelu(pre), pre (N,OC) = inp @ weight^T + bias, both written by one product.
int cuda_matmul_gelu_forward_bf16(float *out, float *pre, const float *inp, const float *weight,
                                  const float *bias, int N, int IC, int OC) {
    return lt_matmul_epi(out, weight, inp, bias, OC, N, IC, 1, 0, IC, IC, OC, 0, CUDA_R_16BF,
                         CUDA_R_16BF, LT_EPI_GELU_AUX, pre);
}

// dpre (N,IC) = (dout (N,OC) @ weight (OC,IC)) * gelu'(pre): overwrites dpre.
int cuda_matmul_dgelu_bf16(float *dpre, const float *dout, const float *weight, const float *pre,
                           int N, int IC, int OC) {
    return lt_matmul_epi(dpre, weight, dout, NULL, IC, N, OC, 0, 0, IC, OC, IC, 0, CUDA_R_16BF,
                         CUDA_R_16BF, LT_EPI_DGELU, pre);
}
