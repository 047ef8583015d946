/**
 * `cellfm train --set training.max_steps=100 --set model.hidden_size=64`: dotted overrides of the
 * YAML configuration, as Hydra (`key.sub=value`) and scPRINT's LightningCLI (`--trainer.max_steps`)
 * take them. Each value is parsed as YAML (`100` a number, `true` a boolean, `[1, 2]` a list, `abc`
 * a string), set into the parsed file, and the result is validated by the same schema as the file,
 * so a misspelt key or a wrong type is the same one-line error, naming the key.
 */
import { parse as parseYaml } from "yaml";
import { parseTrainConfig, readYamlMapping, type TrainConfig } from "./config.js";

/** One `key.path=value` override. */
export interface ConfigOverride {
  path: string[];
  value: unknown;
  /** as given, for messages. */
  text: string;
}

/**
 * Parse `a.b.c=value`.
 * @throws Error naming the override when it has no `=`, an empty key or an empty path segment.
 */
export function parseOverride(text: string): ConfigOverride {
  const eq = text.indexOf("=");
  if (eq <= 0) throw new Error(`--set ${text}: expected key.path=value (e.g. --set training.max_steps=100)`);
  const key = text.slice(0, eq).trim();
  const path = key.split(".");
  if (path.some((p) => p === "")) throw new Error(`--set ${text}: "${key}" is not a dotted key path (e.g. training.max_steps)`);
  const raw = text.slice(eq + 1);
  let value: unknown;
  try {
    value = raw.trim() === "" ? "" : parseYaml(raw);
  } catch (e) {
    throw new Error(`--set ${text}: the value is not valid YAML (${(e as Error).message.split("\n")[0]})`);
  }
  return { path, value, text };
}

/**
 * Set each override into `obj` (a parsed config mapping), creating mappings on the way.
 * @throws Error naming the override when a path goes through a value that is not a mapping.
 */
export function applyOverrides(obj: Record<string, unknown>, overrides: ConfigOverride[]): Record<string, unknown> {
  for (const o of overrides) {
    let cur = obj;
    for (let i = 0; i < o.path.length - 1; i++) {
      const k = o.path[i];
      const next = cur[k];
      if (next === undefined || next === null) cur[k] = {};
      else if (typeof next !== "object" || Array.isArray(next)) {
        throw new Error(`--set ${o.text}: ${o.path.slice(0, i + 1).join(".")} is ${JSON.stringify(next)}, not a mapping`);
      }
      cur = cur[k] as Record<string, unknown>;
    }
    cur[o.path[o.path.length - 1]] = o.value;
  }
  return obj;
}

/** What `cellfm train` overrides in the file (`--tokens` and `--output` are `--set`s of one key). */
export interface TrainFlags {
  tokens?: string;
  output?: string;
  set?: string[];
}

/**
 * Read a YAML training config, apply `--tokens` (data.tokens), `--output` (output.dir) and `--set`
 * overrides (in that order; a later one wins), then validate. (`--max-steps` and `--workers` stay
 * run options of `train()`, as before.)
 * Messages name the file and, for an overridden key, the flags (`configs/demo.yaml + --set ...`).
 * @throws Error as {@link parseTrainConfig}, or naming a malformed `--set`.
 */
export function loadTrainConfigWith(file: string, flags: TrainFlags, cwd = process.cwd()): TrainConfig {
  const obj = readYamlMapping(file, "model, data, training, output");
  const overrides: ConfigOverride[] = [];
  if (flags.tokens !== undefined) overrides.push({ path: ["data", "tokens"], value: flags.tokens, text: `--tokens ${flags.tokens}` });
  if (flags.output !== undefined) overrides.push({ path: ["output", "dir"], value: flags.output, text: `--output ${flags.output}` });
  for (const s of flags.set ?? []) overrides.push(parseOverride(s));
  applyOverrides(obj, overrides);
  const source = overrides.length ? `${file} + ${overrides.map((o) => (o.text.startsWith("--") ? o.text : `--set ${o.text}`)).join(" ")}` : file;
  return parseTrainConfig(obj, source, cwd);
}
