/**
 * AdamW with decoupled weight decay, the learning-rate schedules, global-norm gradient clipping
 * and gradient accumulation, as Geneformer trained with them (HuggingFace `Trainer` with
 * `adamw_torch`).
 *
 * Sources: `torch.optim.AdamW` (single-tensor path, `torch/optim/adamw.py`); HF
 * `transformers/optimization.py: get_linear_schedule_with_warmup, get_cosine_schedule_with_warmup`;
 * HF `Trainer.get_decay_parameter_names` (no decay on biases and LayerNorm weights);
 * `torch.nn.utils.clip_grad_norm_` (total 2-norm, coefficient `max_norm / (norm + 1e-6)`).
 * tfjs has no AdamW (design.md), so it is written here with plain tensor ops, which run on every
 * backend.
 */
import * as tf from "@tensorflow/tfjs-core";

/** Learning-rate schedule options. */
export interface ScheduleOptions {
  /** Peak learning rate. */
  lr: number;
  /** Linear warm-up steps from 0 to `lr`. */
  warmupSteps: number;
  /** Total optimizer steps (decay reaches 0 here). */
  totalSteps: number;
  /** Decay after warm-up: linear to 0, or half-cosine to 0. */
  schedule: "linear" | "cosine";
}

/**
 * Learning rate used by optimizer step number `step` (0-based: the first update uses `step = 0`),
 * exactly as HF's `LambdaLR` schedules: during warm-up `lr * step / warmup` (so the very first update
 * has lr 0 when warm-up > 0, as in HF), then linear `lr * (total − step) / (total − warmup)` or
 * cosine `lr * 0.5 * (1 + cos(π * progress))`, clamped at 0.
 */
export function lrAt(step: number, o: ScheduleOptions): number {
  if (step < o.warmupSteps) return (o.lr * step) / Math.max(1, o.warmupSteps);
  if (o.schedule === "linear") {
    return o.lr * Math.max(0, (o.totalSteps - step) / Math.max(1, o.totalSteps - o.warmupSteps));
  }
  const progress = (step - o.warmupSteps) / Math.max(1, o.totalSteps - o.warmupSteps);
  return o.lr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}

/**
 * HF `Trainer` rule: parameters whose name contains "bias" or that belong to a LayerNorm
 * (`LayerNorm.weight`) get no weight decay. Embedding tables do get decay.
 */
export function isNoDecayParam(name: string): boolean {
  return name.includes("bias") || name.includes("LayerNorm") || name.includes("layer_norm");
}

/** AdamW hyperparameters (HF defaults: β1 0.9, β2 0.999, ε 1e-8). */
export interface AdamWOptions {
  beta1: number;
  beta2: number;
  epsilon: number;
  /** Decoupled weight decay λ: `param *= 1 − lr·λ` before the Adam update. */
  weightDecay: number;
  /** Which parameters are exempt from weight decay; default {@link isNoDecayParam}. */
  noDecay?: (name: string) => boolean;
}

/**
 * AdamW (torch.optim.AdamW semantics) over named `tf.Variable`s.
 *
 * Per parameter p with gradient g at step t (1-based after increment):
 * `p ← p·(1 − lr·λ)`; `m ← β1·m + (1−β1)·g`; `v ← β2·v + (1−β2)·g²`;
 * `p ← p − (lr / (1−β1^t)) · m / (√v / √(1−β2^t) + ε)`.
 *
 * State (`exp_avg`, `exp_avg_sq` per parameter, and `step`) is exported as named tensors for
 * `optimizer.safetensors`.
 */
export class AdamW {
  /** Number of updates applied so far. */
  step = 0;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();

  constructor(
    private readonly params: Map<string, tf.Variable>,
    private readonly opts: AdamWOptions,
  ) {
    for (const [name, p] of params) {
      this.m.set(name, tf.variable(tf.zerosLike(p), false));
      this.v.set(name, tf.variable(tf.zerosLike(p), false));
    }
  }

  /**
   * Apply one update with learning rate `lr`.
   * @param grads gradient per parameter name (same shapes); parameters without a gradient are skipped
   *   (their moments are not updated, as torch skips parameters whose `.grad` is None).
   */
  applyGradients(grads: Map<string, tf.Tensor>, lr: number): void {
    this.step++;
    const { beta1, beta2, epsilon, weightDecay } = this.opts;
    const noDecay = this.opts.noDecay ?? isNoDecayParam;
    const bc1 = 1 - Math.pow(beta1, this.step);
    const bc2 = 1 - Math.pow(beta2, this.step);
    const stepSize = lr / bc1;
    const sqrtBc2 = Math.sqrt(bc2);
    for (const [name, p] of this.params) {
      const g = grads.get(name);
      if (!g) continue;
      const m = this.m.get(name)!;
      const v = this.v.get(name)!;
      tf.tidy(() => {
        const decay = noDecay(name) ? 0 : weightDecay;
        const pDecayed = decay > 0 ? tf.mul(p, 1 - lr * decay) : p;
        const m1 = tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1));
        const v1 = tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2));
        const denom = tf.add(tf.div(tf.sqrt(v1), sqrtBc2), epsilon);
        const p1 = tf.sub(pDecayed, tf.mul(tf.div(m1, denom), stepSize));
        m.assign(m1);
        v.assign(v1);
        p.assign(p1);
      });
    }
  }

  /**
   * State as named tensors: `<param>.exp_avg`, `<param>.exp_avg_sq` (float32, parameter shape) and
   * `step` (float32 `[1]`, exact below 2^24). The tensors are copies owned by the caller.
   */
  exportState(): Record<string, tf.Tensor> {
    const out: Record<string, tf.Tensor> = {};
    for (const [name] of this.params) {
      out[`${name}.exp_avg`] = tf.clone(this.m.get(name)!);
      out[`${name}.exp_avg_sq`] = tf.clone(this.v.get(name)!);
    }
    out["step"] = tf.tensor1d([this.step], "float32");
    return out;
  }

  /**
   * Restore state written by {@link exportState}.
   * @throws Error naming the first missing tensor or shape mismatch.
   */
  loadState(state: Record<string, tf.Tensor>): void {
    for (const [name, p] of this.params) {
      for (const [suffix, target] of [
        ["exp_avg", this.m.get(name)!],
        ["exp_avg_sq", this.v.get(name)!],
      ] as const) {
        const t = state[`${name}.${suffix}`];
        if (!t) throw new Error(`optimizer state: missing tensor ${name}.${suffix}`);
        if (t.shape.join("x") !== p.shape.join("x")) {
          throw new Error(`optimizer state: ${name}.${suffix} has shape [${t.shape}], parameter has [${p.shape}]`);
        }
        target.assign(t.dtype === "float32" ? t : tf.cast(t, "float32"));
      }
    }
    const s = state["step"];
    if (!s) throw new Error("optimizer state: missing tensor step");
    this.step = Math.round(s.dataSync()[0]);
  }

  /** Free the moment buffers. */
  dispose(): void {
    for (const t of this.m.values()) t.dispose();
    for (const t of this.v.values()) t.dispose();
    this.m.clear();
    this.v.clear();
  }
}

/** Global 2-norm of a set of gradients (one number, synchronously read). */
export function globalNorm(grads: Map<string, tf.Tensor>): number {
  const s = squaredNormTensor(grads);
  const n = Math.sqrt(s.dataSync()[0]);
  s.dispose();
  return n;
}

/**
 * Σ g² over all gradients as a scalar tensor on the device (the square of {@link globalNorm}, whose
 * root is taken on the host), for callers that read asynchronously (webgpu).
 */
export function squaredNormTensor(grads: Map<string, tf.Tensor>): tf.Scalar {
  if (grads.size === 0) return tf.scalar(0);
  // left-to-right adds, the order of wasm's/cpu's AddN (same bits); not one AddN: tfjs-backend-webgpu
  // 4.22 binds every input of AddN as a storage buffer and fails above the device's per-stage limit (8)
  return tf.tidy(() => [...grads.values()].map((g) => tf.sum(tf.square(g))).reduce((a, b) => tf.add(a, b)) as tf.Scalar);
}

/**
 * `torch.nn.utils.clip_grad_norm_`: scale all gradients by `maxNorm / (norm + 1e-6)` when that is
 * below 1. Returns the norm **before** clipping (what HF logs as `grad_norm`) and the gradients
 * (new tensors when scaled; the inputs are disposed in that case). `maxNorm <= 0` disables clipping.
 * `knownNorm`: the norm already read (the root of {@link squaredNormTensor}), so nothing is read here.
 */
export function clipByGlobalNorm(
  grads: Map<string, tf.Tensor>,
  maxNorm: number,
  knownNorm?: number,
): { grads: Map<string, tf.Tensor>; norm: number } {
  const norm = knownNorm ?? globalNorm(grads);
  if (!(maxNorm > 0)) return { grads, norm };
  const coef = maxNorm / (norm + 1e-6);
  if (coef >= 1) return { grads, norm };
  const out = new Map<string, tf.Tensor>();
  for (const [k, g] of grads) {
    out.set(k, tf.mul(g, coef));
    g.dispose();
  }
  return { grads: out, norm };
}

/**
 * Sums gradients over micro-batches (gradient accumulation). As HF's Trainer divides each
 * micro-batch loss by the number of accumulation steps, callers add `grad / accumulationSteps`
 * (pass `scale`), so the accumulated gradient is the mean over micro-batches.
 */
export class GradAccumulator {
  private sum = new Map<string, tf.Tensor>();
  /** Micro-batches added since the last {@link take}. */
  count = 0;

  /** Add `scale * grads` (the input tensors are disposed). */
  add(grads: Map<string, tf.Tensor>, scale = 1): void {
    for (const [k, g] of grads) {
      const prev = this.sum.get(k);
      const scaled = scale === 1 ? g : tf.tidy(() => tf.mul(g, scale));
      if (scaled !== g) g.dispose();
      if (prev) {
        this.sum.set(k, tf.add(prev, scaled));
        prev.dispose();
        scaled.dispose();
      } else {
        this.sum.set(k, scaled);
      }
    }
    this.count++;
  }

  /** The accumulated gradients (ownership passes to the caller); resets the accumulator. */
  take(): Map<string, tf.Tensor> {
    const s = this.sum;
    this.sum = new Map();
    this.count = 0;
    return s;
  }

  /** Dispose anything still held. */
  dispose(): void {
    for (const t of this.sum.values()) t.dispose();
    this.sum.clear();
    this.count = 0;
  }
}
