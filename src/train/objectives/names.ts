/**
 * `training.objective` choices, the one list zod enums and messages are built from (a leaf module,
 * so the config schema does not load the objectives). Each has one implementation in `./index.ts`.
 */
export const OBJECTIVE_NAMES = ["mlm", "denoise"] as const;
export type ObjectiveName = (typeof OBJECTIVE_NAMES)[number];
