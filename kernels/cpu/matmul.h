// matmul.h: the CPU matmul (kernels/cpu/matmul.c), the hot path of CPU training.
// Shapes and contract are those of pb_ops.matmul_forward / matmul_backward in kernels/ops.h.
#ifndef PEBBLE_CPU_MATMUL_H
#define PEBBLE_CPU_MATMUL_H

// out (N,OC) = inp (N,IC) @ weight^T + bias; weight (OC,IC); bias (OC) or NULL.
void cpu_matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                        int N, int IC, int OC);

// dinp (N,IC) += dout @ weight;  dweight (OC,IC) += dout^T @ inp;  dbias (OC) += sum_n dout
// (skipped when dbias is NULL). dout (N,OC).
void cpu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, int N, int IC, int OC);

#endif
