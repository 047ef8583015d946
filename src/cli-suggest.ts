/**
 * Usage errors as one line a user can act on: an unknown flag gets "did you mean --x?" (the closest
 * option of that command by edit distance), and every usage error ends by naming the command's help
 * instead of printing the whole help before it.
 */

/** Levenshtein edit distance between two short strings. */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length];
}

/** The known option closest to `name` (within a third of its length, at least 2 edits), or undefined. */
export function closestOption(name: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = k.startsWith(name) || name.startsWith(k) ? Math.min(1, editDistance(name, k)) : editDistance(name, k);
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  return bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

/**
 * Rewrite a yargs usage message: `Unknown argument: layr` → `unknown option --layr (did you mean
 * --layer?)`, then `; cellfm <command> --help lists the options`.
 * @param known the command's option names (without dashes).
 * @param command the subcommand the user ran, if any.
 */
export function explainUsageError(msg: string, known: string[], command?: string): string {
  const help = command ? `cellfm ${command} --help` : "cellfm --help";
  const cmd = /^Did you mean (.+)\?$/.exec(msg.trim());
  if (cmd) return `unknown command; did you mean ${cmd[1]}? cellfm --help lists the commands`;
  const m = /^Unknown arguments?: (.+)$/.exec(msg.trim());
  if (m) {
    const names = m[1].split(", ");
    // yargs also reports the camelCase twin of a kebab-case name (--n-hvgg and --nHvgg): keep one
    const kebab = new Set(names.filter((n) => n.includes("-")).map((n) => n.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())));
    const parts = names.filter((n) => !kebab.has(n)).map((n) => {
      const flag = n.length === 1 ? `-${n}` : `--${n}`;
      const near = closestOption(n, known);
      return near ? `${flag} (did you mean --${near}?)` : flag;
    });
    return `unknown option${parts.length > 1 ? "s" : ""} ${parts.join(", ")}; ${help} lists the options`;
  }
  return `${msg}; ${help} lists the options`;
}
