{
  "targets": [
    {
      "target_name": "cellfm_blas",
      "sources": ["cellfm_blas.c"],
      "cflags": ["-O3", "-fopenmp-simd", "-fno-trapping-math"],
      "conditions": [
        ["OS=='mac'", { "libraries": ["-framework Accelerate"] }],
        ["OS!='mac'", { "libraries": ["-lopenblas"] }]
      ]
    }
  ]
}
