/**
 * Public API of the assessment stage (`cellfm assess`). See docs/assess.md.
 *
 * - {@link runAssessment}: the whole study + metrics + figures + report, written atomically.
 * - {@link knnAccuracy}: leave-one-out or held-out (`trainMask`) kNN cell-type accuracy of X `[n, d]`.
 * - {@link withinBetweenMedians}: median distance within each type and between each pair of types
 *   (`{ within: Map<type, median>, between: Map<"a|b", median> }`, a < b alphabetically).
 * - metrics: {@link silhouetteScore}, {@link batchAsw}, {@link graphConnectivity}, {@link nmi}, {@link ari},
 *   {@link kmeansClusters}; building blocks: {@link exactKnn}, {@link runUmap}, {@link pca},
 *   {@link seuratHvg}, {@link rankStandardize}, {@link selectCells}.
 */
export { runAssessment, type AssessOptions } from "./run.js";
export { knnAccuracy, exactKnn, type KnnGraph } from "./knn.js";
export { withinBetweenMedians, scanPairs, euclideanMeasure, spearmanMeasure, measureFromSpec, pairKey, type PairMeasure, type MeasureSpec, type PairSummary, type TypeBlock } from "./pairs.js";
export { silhouetteScore, silhouetteSamples, batchAsw, graphConnectivity, nmi, ari, kmeansClusters } from "./metrics.js";
export { runUmap, umapFromKnn } from "./umap.js";
export { AssessPool, defaultThreads } from "./parallel.js";
export { pca, PreparedRows, matmul } from "./linalg.js";
export { seuratHvg, GeneMoments, TARGET_SUM } from "./hvg.js";
export { rankStandardize, spearmanDirect } from "./spearman.js";
export { selectCells, type Selection } from "./select.js";
export { median, aucLess, averageRanks } from "./stats.js";
export type { AssessmentResult, MeasureSummary, RepresentationMetrics } from "./report.js";
