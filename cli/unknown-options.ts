import { Command } from 'commander';

/**
 * Commander reports a missing required option before an unknown one, so the typo `--outptu` is
 * reported as "required option --output not specified". This finds the first unknown option of
 * the sub-command on the command line first, with the nearest known flag as a hint.
 */
export function unknownOptionMessage(register: (program: Command) => void, argv: readonly string[]): string | null {
  const program = new Command().exitOverride();
  register(program);
  const [name, ...rest] = argv;
  const sub = program.commands.find((c) => c.name() === name || c.aliases().includes(name ?? ''));
  if (!sub) return null;
  sub.configureOutput({ writeErr: () => {}, writeOut: () => {} });
  let unknown: string[];
  try {
    ({ unknown } = sub.parseOptions([...rest]));
  } catch {
    return null; // a malformed value: the real parse reports it
  }
  const flag = unknown.find((a) => a.startsWith('-') && a !== '-');
  if (flag === undefined || flag === '--help' || flag === '-h') return null;
  const bare = flag.split('=')[0];
  const known = sub.options.map((o) => o.long).filter((l): l is string => typeof l === 'string');
  const hint = nearest(bare, [...known, '--help']);
  return `${name}: unknown option '${bare}'${hint ? ` (did you mean ${hint}?)` : ''}`;
}

function nearest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDistance) { best = c; bestDistance = d; }
  }
  return best;
}

/** Levenshtein distance with adjacent transpositions counted as one edit. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j += 1) d[0][j] = j;
  for (let i = 1; i <= a.length; i += 1) {
    for (let j = 1; j <= b.length; j += 1) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}
