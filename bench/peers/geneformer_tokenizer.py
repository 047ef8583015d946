"""Time Geneformer's own tokenizer (upstream geneformer/tokenizer.py, TranscriptomeTokenizer.tokenize_anndata)
on an .h5ad: the peer of `cellfm tokenize` in `npm run bench -- --compare` (bench/compare.ts).

Usage: python3 geneformer_tokenizer.py GF_TOKENIZER_PY DICT_DIR INPUT.h5ad V1|V2 [reps=3]
  GF_TOKENIZER_PY  upstream geneformer/tokenizer.py, e.g. from a clone of a public Geneformer repository:
                   git -C Geneformer show HEAD:geneformer/tokenizer.py > gf_tokenizer.py
  DICT_DIR         cellfm's data/geneformer (the TSV dictionaries; pickled to a temp dir here, as upstream expects)
Needs anndata (Debian python3-anndata). Prints: RESULT {...} with cells, seconds of tokenize_anndata (best and
median of reps), cells/s and the peak RSS of this process. HF `datasets`, loompy, scanpy and tqdm are stubbed:
the dataset build + save_to_disk that upstream's tokenize_data does after tokenize_anndata is NOT counted, which
favours Geneformer. n_counts is added to obs (float64 row sum) first, as upstream requires, in a child process
(so neither its time nor its memory is counted)."""
import os, sys, time
T_PROC = time.perf_counter()
import importlib.util, json, pickle, statistics, tempfile, types
import resource, subprocess
import numpy as np
import anndata as ad

if sys.argv[1] == "--prepare":  # child: write a copy of the input with obs n_counts (upstream needs it)
    a = ad.read_h5ad(sys.argv[2])
    X = a.X
    a.obs["n_counts"] = np.asarray(X.sum(axis=1)).ravel().astype(np.float64)
    if hasattr(X, "indptr") and X.indices.dtype != X.indptr.dtype:  # scipy 1.10 row slicing needs one index dtype
        X.indices = X.indices.astype(X.indptr.dtype)
    if "ensembl_id" not in a.var:
        a.var["ensembl_id"] = a.var_names
    a.write_h5ad(sys.argv[3])
    sys.exit(0)

src, dict_dir, inp, version = sys.argv[1:5]
reps = int(sys.argv[5]) if len(sys.argv) > 5 else 3

# stubs for modules the tokenizer imports but tokenize_anndata does not need
sc = types.ModuleType("scanpy"); sc.read_h5ad = ad.read_h5ad; sc.AnnData = ad.AnnData; sc.concat = ad.concat
sys.modules["scanpy"] = sc
sys.modules["loompy"] = types.ModuleType("loompy")
ds = types.ModuleType("datasets"); ds.Dataset = object; sys.modules["datasets"] = ds
tq = types.ModuleType("tqdm"); tq.tqdm = lambda it, *a, **k: it; sys.modules["tqdm"] = tq

tag = "gc30M" if version == "V1" else "gc104M"
tmp = tempfile.mkdtemp()
def tsv(name):
    rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(dict_dir, name))][1:]
    return rows
tok = {r[1]: int(r[0]) for r in tsv(f"token_dictionary_{tag}.tsv")}
med = {r[0]: float(r[1]) for r in tsv(f"gene_median_{tag}.tsv")}
mapping = {r[0]: r[1] for r in tsv(f"ensembl_mapping_{tag}.tsv")}
paths = {}
for k, v in (("tok", tok), ("med", med), ("map", mapping)):
    paths[k] = os.path.join(tmp, k + ".pkl"); pickle.dump(v, open(paths[k], "wb"))

pkg = types.ModuleType("geneformer"); pkg.__path__ = []
for suffix in ("", "_30M"):  # V1 makes upstream import the *_30M names
    setattr(pkg, "ENSEMBL_MAPPING_FILE" + suffix, paths["map"]); setattr(pkg, "GENE_MEDIAN_FILE" + suffix, paths["med"])
    setattr(pkg, "TOKEN_DICTIONARY_FILE" + suffix, paths["tok"])
sys.modules["geneformer"] = pkg
spec = importlib.util.spec_from_file_location("geneformer.tokenizer", src)
mod = importlib.util.module_from_spec(spec); sys.modules["geneformer.tokenizer"] = mod; spec.loader.exec_module(mod)

prepared = os.path.join(tmp, "input.h5ad")
subprocess.run([sys.executable, os.path.abspath(__file__), "--prepare", inp, prepared], check=True)

kw = dict(nproc=1, model_version=version, gene_median_file=paths["med"], token_dictionary_file=paths["tok"],
          gene_mapping_file=paths["map"])
if version == "V1":
    kw.update(model_input_size=2048, special_token=False)
def peak_rss_kb():
    """Peak RSS of this process (KiB): Linux VmHWM, which starts afresh at exec; ru_maxrss also counts
    the forked parent (the bench) before exec, so it never reads below the parent's own size."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

times = []
T_FIRST = time.perf_counter()
for _ in range(reps):
    t0 = time.perf_counter()
    t = mod.TranscriptomeTokenizer(**kw)
    cells, _, _ = t.tokenize_anndata(prepared)
    times.append(time.perf_counter() - t0)
n = len(cells)
print("RESULT " + json.dumps({"impl": "geneformer", "version": version, "input": os.path.basename(inp), "cells": n,
      "tokenize_s_best": round(min(times), 3), "tokenize_s_median": round(statistics.median(times), 3),
      "cells_per_s_best": round(n / min(times)), "cells_per_s_median": round(n / statistics.median(times)),
      "peak_rss_mb": round(peak_rss_kb() / 1024, 1)}))
os.remove(prepared)
