/**
 * Options that mean the same in every command, described once: where the counts are in an AnnData
 * file (`--layer NAME`, `--use-raw`: scanpy's names). The reader's message for log-normalised X
 * (src/data/h5ad.ts `validateCounts`) points at these two flags in every command.
 */
/** Describe `--layer` / `--use-raw` the same way in every command that reads counts. */
export const LAYER_DESCRIBE = ".h5ad input: read the raw counts from layers/<name> (e.g. counts, as scanpy keeps them) instead of X";
export const USE_RAW_DESCRIBE = ".h5ad input: read the raw counts from raw/X instead of X";
