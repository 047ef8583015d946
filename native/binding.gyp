{
  "targets": [
    {
      "target_name": "cellfm_blas",
      "sources": ["cellfm_blas.c"],
      "cflags": ["-O2"],
      "conditions": [
        ["OS=='mac'", { "libraries": ["-framework Accelerate"] }],
        ["OS!='mac'", { "libraries": ["-lopenblas"] }]
      ]
    }
  ]
}
