/**
 * The `cellfm` command line: thin wrappers that parse arguments, validate them and call one stage.
 * Each subcommand lives in `src/cli/<name>.ts`; the stages themselves never import the CLI.
 *
 * Start-up stays fast (`cellfm --help` and every command under 0.25 s before its work starts) only if
 * a command module imports nothing heavy at the top: yargs types, `../backend.js` (which loads
 * TensorFlow.js lazily) and small helpers such as `../shard.js`. The stage is imported inside the
 * handler: `const { runX } = await import("../x/run.js");`.
 */
import yargs from "yargs";
import { tokenizeCommand, mediansCommand } from "./cli/tokenize.js";
import { trainCommand } from "./cli/train.js";
import { embedCommand } from "./cli/embed.js";
import { assessCommand } from "./cli/assess.js";
import { mergeCommand } from "./cli/merge.js";
import { grnCommand } from "./cli/grn.js";
import { compareCommand } from "./cli/compare.js";
import { denoiseCommand } from "./cli/denoise.js";
import { FS_ERRORS } from "./io.js";
import { releaseOutputLocks } from "./lock.js";
import { explainUsageError } from "./cli-suggest.js";

/** The subcommands, for messages. */
const COMMANDS = ["tokenize", "medians", "train", "embed", "denoise", "assess", "merge", "grn", "compare"];

/**
 * A Node file-system error (`EACCES: permission denied, mkdir '/x/y'`) as one line naming the path
 * and the problem; other errors unchanged.
 */
export function explainFsError(e: unknown): unknown {
  const err = e as NodeJS.ErrnoException;
  if (!(err instanceof Error) || typeof err.code !== "string" || !(err.code in FS_ERRORS) || !err.path) return e;
  const out = new Error(`${err.path}: ${FS_ERRORS[err.code]}`);
  (out as NodeJS.ErrnoException).code = err.code;
  return out;
}

/** Run the CLI on `argv` (without `node` and the script path). Rejects on a usage or run error. */
export async function main(argv: string[]): Promise<void> {
  try {
    await parse(argv);
  } catch (e) {
    throw explainFsError(e);
  } finally {
    releaseOutputLocks(); // the command's output locks (src/lock.ts)
  }
}

/** The part of yargs' internal API that {@link skipHelpCache} touches. */
interface YargsUsageInternals {
  getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: () => void } };
}

/**
 * yargs formats the subcommand's whole help text right after it starts the handler, in case the
 * handler fails later and the help is to be shown; cellfm's `.fail()` never shows help for a
 * handler's error, and formatting it is ~5 % of a small `cellfm tokenize` (cliui, string widths).
 * `--help` and usage errors still format the help when they need it. Best effort: a yargs without
 * this internal method is left alone.
 */
function skipHelpCache<T>(y: T): T {
  const usage = (y as YargsUsageInternals).getInternalMethods?.().getUsageInstance?.();
  if (usage && typeof usage.cacheHelpMessage === "function") usage.cacheHelpMessage = () => undefined;
  return y;
}

/**
 * `cellfm --version`: the package version and what runs the matmuls on the wasm backend (the native
 * BLAS of `src/blas.ts` with its library and threads, or plain wasm and why).
 */
async function versionText(): Promise<string> {
  const { createRequire } = await import("node:module");
  const pkg = createRequire(import.meta.url)("../package.json") as { version: string };
  const { nativeBlas, nativeBlasProblem, nativeBlasProvider } = await import("./blas.js");
  const m = nativeBlas();
  return `${pkg.version}\nmatmul kernels (wasm backend): ${m ? nativeBlasProvider(m) : `wasm (XNNPACK); no native BLAS: ${nativeBlasProblem()}`}`;
}

async function parse(argv: string[]): Promise<void> {
  const y = skipHelpCache(yargs(argv));
  if (argv.includes("--version")) y.version(await versionText());
  await y
    .scriptName("cellfm")
    .usage("$0 <command> [options]\n\nTrain and run single-cell transformer foundation models.")
    .command(tokenizeCommand)
    .command(mediansCommand)
    .command(trainCommand)
    .command(embedCommand)
    .command(assessCommand)
    .command(mergeCommand)
    .command(grnCommand)
    .command(compareCommand)
    .command(denoiseCommand)
    .demandCommand(1, "name a command: tokenize, medians, train, embed, denoise, assess, merge, grn or compare")
    .option("verbose", { type: "boolean", global: true, describe: "show library diagnostics (e.g. HDF5's traces of a corrupt file)" })
    .middleware((a) => {
      if (a.verbose) process.env.CELLFM_VERBOSE = "1";
    })
    .strict()
    .recommendCommands()
    .help()
    .fail((msg, err, y) => {
      if (err) throw err;
      // one line, the error first: "did you mean" for a misspelt option, then where the help is
      const known = Object.keys((y as unknown as { getDescriptions?: () => Record<string, unknown> }).getDescriptions?.() ?? {});
      throw new Error(explainUsageError(msg, known, COMMANDS.find((c) => argv.includes(c))));
    })
    .parseAsync();
}
