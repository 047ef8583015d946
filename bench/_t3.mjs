const h = await import('../dist/data/open.js');
const g = await import('../dist/tokenize/geneformer.js');
for (let rep=0; rep<3; rep++){
const t0=performance.now();
const src = await h.openCounts(process.argv[2]);
const t1=performance.now();
const tk = new g.GeneformerTokenizer(src, {modelVersion: 'V1', carry:['cell_type']});
const t2=performance.now();
let tr=0, tt=0, nnz=0; let a=performance.now();
for (const c of src.chunks(512)) { const b=performance.now(); tr+=b-a; tk.tokenizeChunkFlat(c); nnz+=c.data.length; a=performance.now(); tt+=a-b; }
console.log({open:t1-t0, ctor:t2-t1, read:tr, tok:tt, nnz});
src.close();
}
