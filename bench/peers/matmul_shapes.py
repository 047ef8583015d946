"""PyTorch FP32 matmul GFLOP/s at the shapes of bench/matmul.ts (Geneformer V1 6L at 512 x 4 tokens),
with the given threads. Prints one JSON line. Run: python3 matmul_shapes.py --threads 2 [--seconds 2]"""
import argparse, json, time
import torch

from blas_threads import set_blas_threads

SHAPES = {
    "attn_proj_2048x256x256": (2048, 256, 256),
    "ffn_2048x256x512": (2048, 256, 512),
    "ffn_out_2048x512x256": (2048, 512, 256),
    "square_2048": (2048, 2048, 2048),
    "qkv_2048x256x768": (2048, 256, 768),
}
# attention products per (cell, head), batched: [batch, m, k] @ [batch, k, n]
BATCHED = {
    "attn_scores_16x512x64x512": (16, 512, 64, 512),
    "attn_context_16x512x512x64": (16, 512, 512, 64),
}

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=1)
p.add_argument("--seconds", type=float, default=2.0)
a = p.parse_args()
torch.set_num_threads(a.threads)
out = {"torch": torch.__version__, "threads": a.threads, "blas_threads": set_blas_threads(a.threads)}
for name, (m, k, n) in SHAPES.items():
    x, y = torch.rand(m, k), torch.rand(k, n)
    x @ y  # warm-up
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < a.seconds or reps < 3:
        x @ y
        reps += 1
    out[name] = 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9
for name, (b, m, k, n) in BATCHED.items():
    x, y = torch.rand(b, m, k), torch.rand(b, k, n)
    torch.bmm(x, y)  # warm-up
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < a.seconds or reps < 3:
        torch.bmm(x, y)
        reps += 1
    out[name] = 2 * b * m * k * n * reps / (time.perf_counter() - t0) / 1e9
print("RESULT " + json.dumps(out))  # the line bench/compare.ts reads
