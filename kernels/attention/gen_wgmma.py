# Emits the wgmma wrappers pasted into kernels/attention/wgmma.cuh (one per shape and form):
# python3 gen.py > body
out = []
for N in (32, 64, 128):
    R = N // 2
    regs = ", ".join("%%%d" % i for i in range(R))
    cons = ",\n          ".join(", ".join('"+f"(d[%d])' % (i + j) for j in range(8)) for i in range(0, R, 8))
    out.append(f"""// D (64x{N}) {{=, +=}} A (64x16, shared memory, K-major) B (16x{N}, shared memory, K-major)
__device__ __forceinline__ void wgmma_ss(float (&d)[{R}], uint64_t a, uint64_t b, int acc) {{
    asm volatile(
        "{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{R+2}, 0;\\n"
        "wgmma.mma_async.sync.aligned.m64n{N}k16.f32.bf16.bf16 "
        "{{{regs}}}, %{R}, %{R+1}, p, 1, 1, 0, 0;\\n}}\\n"
        : {cons}
        : "l"(a), "l"(b), "r"(acc));
}}
// D (64x{N}) {{=, +=}} A (64x16, registers) B (16x{N}, shared memory; TB = 1: N-major)
template <int TB>
__device__ __forceinline__ void wgmma_rs(float (&d)[{R}], const uint32_t (&a)[4], uint64_t b, int acc) {{
    asm volatile(
        "{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{R+5}, 0;\\n"
        "wgmma.mma_async.sync.aligned.m64n{N}k16.f32.bf16.bf16 "
        "{{{regs}}}, {{%{R}, %{R+1}, %{R+2}, %{R+3}}}, %{R+4}, p, 1, 1, %{R+6};\\n}}\\n"
        : {cons}
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc), "n"(TB));
}}
""")
print("\n".join(out))
