/**
 * BERT configuration with HuggingFace `BertConfig` field names, so a cellfm `config.json` is a valid
 * `transformers` config and Geneformer's published `config.json` files load here.
 *
 * Source: HuggingFace `transformers/models/bert/configuration_bert.py`; Geneformer presets from the
 * published `config.json` files (reference-spec §1b, GF `Geneformer-V1-10M/config.json@05fcbeb`).
 */
import { z } from "zod";

/** One object that drives the whole model (HF `BertConfig` field names). */
export interface BertConfig {
  /** Number of token ids (gene tokens + special tokens), rows of the word-embedding table. */
  vocab_size: number;
  /** Hidden size (width of every token state). */
  hidden_size: number;
  /** Number of transformer layers. */
  num_hidden_layers: number;
  /** Attention heads per layer; `hidden_size` must be divisible by it. */
  num_attention_heads: number;
  /** Width of the feed-forward (intermediate) layer. */
  intermediate_size: number;
  /** Activation of the FFN and of the MLM head transform (HF reuses `hidden_act` there). */
  hidden_act: "relu" | "gelu";
  /** Longest sequence (tokens per cell) the learned position table covers. */
  max_position_embeddings: number;
  /** Dropout probability on embeddings, attention output and FFN output. */
  hidden_dropout_prob: number;
  /** Dropout probability on attention probabilities. */
  attention_probs_dropout_prob: number;
  /** LayerNorm epsilon. */
  layer_norm_eps: number;
  /** Token id used for padding (Geneformer: 0 = `<pad>`). */
  pad_token_id: number;
  /** Rows of the token-type table (Geneformer: 2, only row 0 used). */
  type_vocab_size: number;
  /** Standard deviation of the normal initialiser of weight matrices and embeddings. */
  initializer_range: number;
}

const posInt = (name: string) =>
  z
    .number({ error: `${name} must be a number` })
    .int({ error: `${name} must be an integer` })
    .positive({ error: `${name} must be > 0` });
const prob = (name: string) =>
  z
    .number({ error: `${name} must be a number` })
    .min(0, { error: `${name} must be in [0, 1)` })
    .lt(1, { error: `${name} must be in [0, 1)` });

/** zod schema of {@link BertConfig}; unknown keys (HF extras such as `model_type`) are dropped. */
export const BertConfigSchema = z
  .object({
    vocab_size: posInt("vocab_size"),
    hidden_size: posInt("hidden_size"),
    num_hidden_layers: posInt("num_hidden_layers"),
    num_attention_heads: posInt("num_attention_heads"),
    intermediate_size: posInt("intermediate_size"),
    hidden_act: z.enum(["relu", "gelu"], { error: 'hidden_act must be "relu" or "gelu"' }),
    max_position_embeddings: posInt("max_position_embeddings"),
    hidden_dropout_prob: prob("hidden_dropout_prob").default(0.1),
    attention_probs_dropout_prob: prob("attention_probs_dropout_prob").default(0.1),
    layer_norm_eps: z.number().positive({ error: "layer_norm_eps must be > 0" }).default(1e-12),
    pad_token_id: z.number().int().min(0, { error: "pad_token_id must be >= 0" }).default(0),
    type_vocab_size: posInt("type_vocab_size").default(2),
    initializer_range: z.number().positive({ error: "initializer_range must be > 0" }).default(0.02),
  })
  .superRefine((c, ctx) => {
    if (c.hidden_size % c.num_attention_heads !== 0) {
      ctx.addIssue({
        code: "custom",
        path: ["hidden_size"],
        message: `hidden_size (${c.hidden_size}) must be divisible by num_attention_heads (${c.num_attention_heads})`,
      });
    }
    if (c.pad_token_id >= c.vocab_size) {
      ctx.addIssue({
        code: "custom",
        path: ["pad_token_id"],
        message: `pad_token_id (${c.pad_token_id}) must be < vocab_size (${c.vocab_size})`,
      });
    }
  });

/**
 * Validate a parsed JSON/YAML object as a {@link BertConfig}. Missing optional fields get HF defaults
 * (dropout 0.1, eps 1e-12, pad 0, type_vocab_size 2, initializer_range 0.02).
 * @throws Error listing every problem, each naming its field, e.g.
 *   "hidden_size (256) must be divisible by num_attention_heads (3)".
 */
export function validateBertConfig(obj: unknown): BertConfig {
  const r = BertConfigSchema.safeParse(obj);
  if (!r.success) {
    const msgs = r.error.issues.map((i) => {
      const key = i.path.join(".");
      if (i.code === "invalid_type" && (obj as Record<string, unknown> | null)?.[key] === undefined && key) {
        return `${key} is required`;
      }
      return i.message.startsWith(key) || !key ? i.message : `${key}: ${i.message}`;
    });
    throw new Error(`invalid model config: ${msgs.join("; ")}`);
  }
  return r.data as BertConfig;
}

/** Geneformer V1 6-layer model (gf-6L-30M-i2048, "Geneformer-V1-10M"; ≈10.3 M parameters). */
export const GENEFORMER_V1_6L: Readonly<BertConfig> = Object.freeze({
  vocab_size: 25426,
  hidden_size: 256,
  num_hidden_layers: 6,
  num_attention_heads: 4,
  intermediate_size: 512,
  hidden_act: "relu",
  max_position_embeddings: 2048,
  hidden_dropout_prob: 0.02,
  attention_probs_dropout_prob: 0.02,
  layer_norm_eps: 1e-12,
  pad_token_id: 0,
  type_vocab_size: 2,
  initializer_range: 0.02,
});

/** Geneformer V1 12-layer model (gf-12L-30M-i2048). */
export const GENEFORMER_V1_12L: Readonly<BertConfig> = Object.freeze({
  ...GENEFORMER_V1_6L,
  num_hidden_layers: 12,
  hidden_size: 512,
  num_attention_heads: 8,
  intermediate_size: 1024,
});

/** Number of trainable parameters of a model with this config (decoder tied, so not counted twice). */
export function countParameters(c: BertConfig): number {
  const H = c.hidden_size;
  const emb = (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * H + 2 * H;
  const layer = 4 * (H * H + H) + 2 * H + (H * c.intermediate_size + c.intermediate_size) + (c.intermediate_size * H + H) + 2 * H;
  const head = H * H + H + 2 * H + c.vocab_size;
  return emb + c.num_hidden_layers * layer + head;
}
