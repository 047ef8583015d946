/**
 * Plain-JS float64 pieces of a post-LN BERT layer from HF-layout weights, for tests that check the
 * attention extraction against a direct computation from the model's weights.
 */

/** y = x Wᵀ + b; x `[rows, inp]`, w HF layout `[out, in]`, returns `[rows, out]`. */
export function dense(x: Float64Array, rows: number, w: Float32Array, b: Float32Array, inp: number, out: number): Float64Array {
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++) for (let o = 0; o < out; o++) {
    let s = b[o];
    for (let i = 0; i < inp; i++) s += x[r * inp + i] * w[o * inp + i];
    y[r * out + o] = s;
  }
  return y;
}

/** LayerNorm over the last axis of x `[rows, width]` with gain g, bias b and epsilon eps. */
export function layerNorm(x: Float64Array, rows: number, width: number, g: Float32Array, b: Float32Array, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let m = 0, v = 0;
    for (let i = 0; i < width; i++) m += x[r * width + i] / width;
    for (let i = 0; i < width; i++) v += (x[r * width + i] - m) ** 2 / width;
    for (let i = 0; i < width; i++) y[r * width + i] = ((x[r * width + i] - m) / Math.sqrt(v + eps)) * g[i] + b[i];
  }
  return y;
}
