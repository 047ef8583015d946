import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-wasm";
const t00 = performance.now();
await tf.setBackend("wasm"); await tf.ready();
console.log("init ms", (performance.now()-t00).toFixed(0));
for (const [m,k,n] of [[256,256,256],[2048,256,256]]) {
const a = tf.randomNormal([m,k]), b = tf.randomNormal([k,n]);
tf.matMul(a,b).dataSync();
for (let r=0;r<3;r++){
let t0 = performance.now();
for (let i=0;i<3;i++) tf.tidy(() => tf.matMul(a,b).dataSync());
let s = (performance.now() - t0) / 1000 / 3;
console.log(`${m}x${k}x${n}: random ${(2*m*k*n/s/1e9).toFixed(2)} GFLOP/s`);
}}
