const fs = require("fs"), os = require("os"), path = require("path");
const tf = require("@tensorflow/tfjs-core");
const wasmOut = path.join(path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm")), "..", "wasm-out");
const T = +process.argv[2];
(async () => {
  const wasm = require("@tensorflow/tfjs-backend-wasm");
  if (T > 0) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tfwasm-"));
  const mainFile = path.join(dir, "main.cjs");
  const factory = require(path.join(wasmOut, "tfjs-backend-wasm-threaded-simd.js"));
  fs.writeFileSync(mainFile, "var WasmBackendModuleThreadedSimd = " + factory.toString() + ";\n");
  let worker = require(path.join(wasmOut, "tfjs-backend-wasm-threaded-simd.worker.js")).wasmWorkerContents;
  const a = 'if(typeof e.data.urlOrBlob=="string"){importScripts(e.data.urlOrBlob)}else{var objectUrl=URL.createObjectURL(e.data.urlOrBlob);importScripts(objectUrl);URL.revokeObjectURL(objectUrl)}';
  worker = worker.replace(a, "importScripts(" + JSON.stringify(mainFile) + ");").replace(/\n/g, "\\n");
  const workerFile = path.join(dir, "worker.cjs");
  fs.writeFileSync(workerFile, worker);
  URL.createObjectURL = (b) => workerFile;
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true);
  wasm.setThreadsCount(T);
  }
  await tf.setBackend("wasm"); await tf.ready();
  await new Promise(r => setTimeout(r, 500));
  console.log("threads", wasm.getThreadsCount());
  const A = tf.randomNormal([1024,1024]); tf.matMul(A,A).dataSync(); 
  const c0=process.cpuUsage(), t0=performance.now(); for(let i=0;i<3;i++) tf.matMul(A,A).dataSync(); 
  console.log("wall", (performance.now()-t0).toFixed(0), "cpu", (process.cpuUsage(c0).user/1000).toFixed(0));
  process.exit(0);
})().catch(e => { console.error("ERR", e); process.exit(1); });
