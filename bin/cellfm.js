#!/usr/bin/env node
// Thin launcher: the CLI is compiled from src/cli.ts into dist/ by `npm ci` / `npm run build`.
import { main } from "../dist/cli.js";
main(process.argv.slice(2)).catch((err) => {
  console.error(`cellfm: ${err?.message ?? err}`);
  process.exit(1);
});
