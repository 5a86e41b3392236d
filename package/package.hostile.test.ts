import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { chmod, copyFile, cp, link, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { onnx as OnnxProto } from '../common/onnx/index.js';
import { CLI_MAIN, debrisIn, oneLineError, runCli, runCliAndKill, snapshotTree, treeChanges, type CliRun } from '../fixtures/hostile-support.js';
import { tinyModelDir } from '../fixtures/test-support.js';

/**
 * Hostile inputs and interruptions for `package`, `verify-package` and `publish --dry-run`, run
 * as a user runs them (the built CLI in a child process). Each refusal is checked for its exact
 * one-line message and exit code, for leaving no temp file (the child's TMPDIR included), and
 * for leaving every file that was there byte-identical.
 */

const BIG = new Set(['decoder_weights.data', 'embed_tokens.bin']);
const NAME = 'qwen3-asr-tiny-fp32';

let work: string;
let model: string;
let childTmp: string;
/** A package output folder holding one good package (tiny fp32). */
let oldDist: string;
/** The good archive of oldDist, unpacked (repack's starting point). */
let goodUnpacked: string;
/** The same folder after a completed `package --size-label other` (the "add" run). */
let newAddDist: string;
/** The same folder after a completed `package --level 1` (the "replace" run: same name, other bytes). */
let newReplaceDist: string;

const env = (): NodeJS.ProcessEnv => ({ TMPDIR: childTmp });
const cli = (args: string[]): Promise<CliRun> => runCli(args, { env: env() });
const packageArgs = (modelDir: string, out: string, ...more: string[]): string[] =>
  ['package', '--model-dir', modelDir, '--output', out, '--size-label', 'tiny', ...more];
const addArgs = (out: string): string[] => ['package', '--model-dir', model, '--output', out, '--size-label', 'other'];
const replaceArgs = (out: string): string[] => ['package', '--model-dir', model, '--output', out, '--size-label', 'tiny', '--level', '1'];

/** A model directory for one case: the small files copied, the two big ones linked to the cache. */
async function modelCopy(name: string, edit?: (dir: string) => Promise<void>): Promise<string> {
  const dir = join(work, 'models', name);
  await mkdir(dir, { recursive: true });
  for (const f of await readdir(model)) {
    if (BIG.has(f)) await symlink(join(model, f), join(dir, f));
    else await copyFile(join(model, f), join(dir, f));
  }
  if (edit) await edit(dir);
  return dir;
}

async function editJson(path: string, edit: (j: Record<string, any>) => void): Promise<void> {
  const j = JSON.parse(await readFile(path, 'utf8')) as Record<string, any>;
  edit(j);
  await writeFile(path, `${JSON.stringify(j, null, 2)}\n`);
}

/** The message JSON.parse gives for `text` on this Node (the CLI quotes it). */
function jsonError(text: string): string {
  try { JSON.parse(text); } catch (err) { return (err as Error).message; }
  throw new Error('expected invalid JSON');
}

async function truncateFile(path: string, bytes: number): Promise<string> {
  const text = (await readFile(path, 'utf8')).slice(0, bytes);
  await rm(path);
  await writeFile(path, text);
  return text;
}

/**
 * Runs the CLI expecting a refusal: exit 1, exactly `message` as the one error line, no temp
 * files in the child's TMPDIR or in any watched folder (beyond those a case planted), and every
 * watched folder unchanged.
 */
async function expectRefused(args: string[], message: string | RegExp, watched: string[]): Promise<void> {
  const before = watched.map((d) => snapshotTree(d));
  const debrisBefore = watched.map((d) => debrisIn(d));
  const run = await cli(args);
  expect(run.code, run.stderr).toBe(1);
  if (typeof message === 'string') expect(oneLineError(run)).toBe(message);
  else expect(oneLineError(run)).toMatch(message);
  watched.forEach((d, i) => {
    expect(treeChanges(before[i], snapshotTree(d))).toEqual([]);
    expect(debrisIn(d)).toEqual(debrisBefore[i]);
  });
  expect(readdirSync(childTmp)).toEqual([]);
}

async function expectOk(args: string[]): Promise<CliRun> {
  const run = await cli(args);
  expect(run.code, run.stderr).toBe(0);
  return run;
}

function sha256Hex(b: Uint8Array | string): string {
  return createHash('sha256').update(b).digest('hex');
}

/**
 * Unpacks a good archive, applies `edit` to its folder, rewrites the manifest inside to match
 * (as someone hand-editing an archive would), and packs it again with GNU tar's PAX format into
 * `outDir`; with `beside`, also writes a matching manifest and SHA256SUMS beside it.
 */
async function repack(
  outDir: string, edit: (top: string) => Promise<void>,
  opts: { beside?: boolean; keepManifestInside?: boolean; fixManifest?: boolean } = {},
): Promise<string> {
  const ex = await mkdtemp(join(work, 'ex-'));
  const top = join(ex, NAME);
  await mkdir(top);
  // The good archive's files, unpacked once: weights hard-linked (never edited), the rest copied.
  for (const f of await readdir(join(goodUnpacked, NAME))) {
    if (f.endsWith('.data') || f === 'embed_tokens.bin') await link(join(goodUnpacked, NAME, f), join(top, f));
    else await copyFile(join(goodUnpacked, NAME, f), join(top, f));
  }
  await edit(top);
  const innerPath = join(top, 'manifest.json');
  const inner = JSON.parse(await readFile(innerPath, 'utf8')) as { files: { path: string; size: number; sha256: string }[] } & Record<string, unknown>;
  if (opts.fixManifest !== false) {
    for (const f of inner.files) {
      const bytes = await readFile(join(top, f.path));
      f.size = bytes.length;
      f.sha256 = sha256Hex(bytes);
    }
    await writeFile(innerPath, `${JSON.stringify(inner, null, 2)}\n`);
  }
  if (opts.keepManifestInside === false) await rm(innerPath);
  await mkdir(outDir, { recursive: true });
  const archive = join(outDir, `${NAME}.tar.gz`);
  execFileSync('tar', ['--format=pax', '--sort=name', '--owner=0', '--group=0', '-I', 'gzip -1', '-cf', archive, '-C', ex, NAME]);
  await rm(ex, { recursive: true, force: true });
  if (opts.beside) {
    const bytes = await readFile(archive);
    const outer = {
      format: 'qwen3-onnx-package/1', archive: { path: `${NAME}.tar.gz`, size: bytes.length, sha256: sha256Hex(bytes) },
      variant: inner.variant, size_label: inner.size_label, tool: inner.tool, recipe: inner.recipe, source: inner.source, files: inner.files,
    };
    const outerText = `${JSON.stringify(outer, null, 2)}\n`;
    await writeFile(join(outDir, `${NAME}.manifest.json`), outerText);
    await writeFile(join(outDir, 'SHA256SUMS'), `${outer.archive.sha256}  ${NAME}.tar.gz\n${sha256Hex(outerText)}  ${NAME}.manifest.json\n`);
  }
  return archive;
}

/** Byte offset of a member's data inside an uncompressed ustar stream (our writer's layout). */
function memberOffset(tar: Uint8Array, name: string): number {
  let at = 0;
  const text = new TextDecoder();
  while (at + 512 <= tar.length) {
    const h = tar.subarray(at, at + 512);
    if (h.every((b) => b === 0)) break;
    const field = (o: number, n: number): string => text.decode(h.subarray(o, o + n)).replace(/\0.*$/s, '');
    const full = [field(345, 155), field(0, 100)].filter(Boolean).join('/');
    const size = parseInt(field(124, 12).trim() || '0', 8);
    if (full === name) return at + 512;
    at += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error(`${name} not in the archive`);
}

/**
 * Gives encoder.onnx an operator onnxruntime does not know: the graph still parses (every cheap
 * check passes) but onnxruntime refuses it, so a case that fails with another message proves its
 * check ran before onnxruntime.
 */
async function breakForOrt(dir: string): Promise<void> {
  const path = join(dir, 'encoder.onnx');
  const m = OnnxProto.ModelProto.decode(await readFile(path));
  m.graph!.node![0].opType = 'NoSuchOperator';
  await rm(path);
  await writeFile(path, OnnxProto.ModelProto.encode(m).finish());
}

/** A process id that is not running any more (for a lock or staging folder of a dead run). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '']);
  return r.pid!;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'qwen3-onnx-package-hostile-'));
  childTmp = join(work, 'child-tmp');
  await mkdir(childTmp);
  // A private copy: the shared fixture cache drops exports of older graph-builder sources while
  // other test processes run, and every case here reads the model for minutes.
  model = join(work, 'model');
  await cp(await tinyModelDir(), model, { recursive: true });
  oldDist = join(work, 'old-dist');
  await expectOk(packageArgs(model, oldDist));
  goodUnpacked = join(work, 'good-unpacked');
  await mkdir(goodUnpacked);
  execFileSync('tar', ['-xzf', join(oldDist, `${NAME}.tar.gz`), '-C', goodUnpacked]);
  newAddDist = join(work, 'new-add-dist');
  await cp(oldDist, newAddDist, { recursive: true });
  await expectOk(addArgs(newAddDist));
  newReplaceDist = join(work, 'new-replace-dist');
  await cp(oldDist, newReplaceDist, { recursive: true });
  await expectOk(replaceArgs(newReplaceDist));
}, 300_000);

afterAll(async () => {
  if (work) {
    await chmod(join(work, 'ro'), 0o755).catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
});

describe('package refuses a bad model in one line, before onnxruntime, touching nothing', () => {
  const refusedModel = async (name: string, edit: (dir: string) => Promise<string | void>, message: (dir: string, note: string | void) => string): Promise<void> => {
    let note: string | void = undefined;
    const dir = await modelCopy(name, async (d) => { note = await edit(d); await breakForOrt(d); });
    await expectRefused(packageArgs(dir, oldDist), message(dir, note), [dir, oldDist]);
  };

  it('config.json whose vocab_size disagrees with the embedding table', async () => {
    await refusedModel('vocab7', (d) => editJson(join(d, 'config.json'), (j) => { j.decoder.vocab_size = 7; }),
      (d) => `${d}/config.json: decoder.vocab_size 7 disagrees with embed_tokens_shape [151936, 96]`);
  });

  it('config.json whose vocab_size and embed_tokens_shape both say 7 (special ids then lie outside)', async () => {
    await refusedModel('vocab7-shape7', (d) => editJson(join(d, 'config.json'), (j) => { j.decoder.vocab_size = 7; j.embed_tokens_shape = [7, 96]; }),
      (d) => `${d}/config.json: special_tokens.pad_token_id 151643 is outside the vocabulary (decoder.vocab_size 7)`);
  });

  it('embed_tokens.bin of the wrong size', async () => {
    await refusedModel('short-embed', async (d) => {
      await rm(join(d, 'embed_tokens.bin'));
      await writeFile(join(d, 'embed_tokens.bin'), new Uint8Array(100));
    }, (d) => `${d}/embed_tokens.bin: 100 bytes, but config.json embed_tokens_shape [151936, 96] of float16 needs 29171712`);
  });

  it('a config (and table) one row wider than the graphs', async () => {
    await refusedModel('wider-than-graphs', async (d) => {
      await editJson(join(d, 'config.json'), (j) => { j.decoder.vocab_size = 151937; j.embed_tokens_shape = [151937, 96]; });
      const table = await readFile(join(model, 'embed_tokens.bin'));
      await rm(join(d, 'embed_tokens.bin'));
      await writeFile(join(d, 'embed_tokens.bin'), Buffer.concat([table, new Uint8Array(96 * 2)]));
    }, (d) => `${d}/decoder_init.onnx: output logits is 151936 wide, but config.json decoder.vocab_size is 151937`);
  });

  it('a truncated vocab.json', async () => {
    await refusedModel('short-vocab', (d) => truncateFile(join(d, 'vocab.json'), 100_000),
      (d, text) => `${d}/vocab.json: not valid JSON (${jsonError(text as string)})`);
  });

  it('a broken merges.txt', async () => {
    await refusedModel('bad-merges', async (d) => { await writeFile(join(d, 'merges.txt'), '#version: 0.2\nĠ t\nthree part line\n'); },
      (d) => `${d}/merges.txt: malformed merge line "three part line"`);
  });

  it('a truncated tokenizer_config.json', async () => {
    await refusedModel('short-tokenizer-config', (d) => truncateFile(join(d, 'tokenizer_config.json'), 3000),
      (d, text) => `${d}/tokenizer_config.json: not valid JSON (${jsonError(text as string)})`);
  });

  it('a config naming the wrong id for a special token', async () => {
    await refusedModel('audio-pad-id', (d) => editJson(join(d, 'config.json'), (j) => { j.special_tokens.audio_pad_token_id = 151675; }),
      (d) => `${d}/tokenizer_config.json: id 151675 (config.json special_tokens.audio_pad_token_id) is "<|reserved_special_token_32|>", expected "<|audio_pad|>"`);
  });

  it('a tokenizer with an id past the embedding table', async () => {
    await refusedModel('token-past-table', (d) => editJson(join(d, 'tokenizer_config.json'), (j) => {
      j.added_tokens_decoder['160000'] = { content: '<|far|>', lstrip: false, normalized: false, rstrip: false, single_word: false, special: true };
    }), (d) => `${d}/tokenizer_config.json: token id 160000 ("<|far|>") is outside the model's vocabulary (vocab_size 151936)`);
  });
});

describe('package checks the output path before onnxruntime', () => {
  /** A model that passes every cheap check but that onnxruntime refuses (an unknown op). */
  let ortBroken: string;
  let outs: string;
  beforeAll(async () => {
    outs = join(work, 'outs');
    await mkdir(outs);
    ortBroken = await modelCopy('ort-broken', breakForOrt);
  });

  it('the broken model really is refused by onnxruntime (so the cases below can fail)', async () => {
    // The output folder it creates for the run is removed again: `outs` stays as it was.
    const out = join(outs, 'ort-broken-out');
    await expectRefused(packageArgs(ortBroken, out), new RegExp(`^${ortBroken.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/encoder\\.onnx: onnxruntime cannot load it \\(.+\\)$`), [ortBroken, outs]);
  });

  it('an output that is an existing file', async () => {
    const file = join(outs, 'a-file');
    await writeFile(file, 'not a folder');
    await expectRefused(packageArgs(ortBroken, file), `--output ${file}: ${file} exists and is not a directory`, [ortBroken, outs]);
  });

  it('an output below a file', async () => {
    const file = join(outs, 'another-file');
    await writeFile(file, 'x');
    await expectRefused(packageArgs(ortBroken, join(file, 'dist')), `--output ${join(file, 'dist')}: ${file} exists and is not a directory`, [ortBroken, outs]);
  });

  it('an output that is the model directory', async () => {
    await expectRefused(packageArgs(ortBroken, ortBroken), `--output ${ortBroken}: is the input --model-dir ${ortBroken}; choose another output`, [ortBroken]);
  });

  it('a read-only output folder (as an unprivileged user: root writes anywhere)', async () => {
    const ro = join(work, 'ro');
    await mkdir(ro);
    await chmod(work, 0o755);
    await chmod(childTmp, 0o777);
    for (const d of [join(work, 'models'), ortBroken]) await chmod(d, 0o755);
    await chmod(ro, 0o555);
    const before = snapshotTree(ro);
    const args = packageArgs(ortBroken, join(ro, 'dist'));
    const asRoot = process.getuid?.() === 0;
    const r = asRoot
      ? spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI_MAIN, ...args], { encoding: 'utf8', env: { ...process.env, CI: '1', ...env() } })
      : spawnSync(process.execPath, [CLI_MAIN, ...args], { encoding: 'utf8', env: { ...process.env, CI: '1', ...env() } });
    const run: CliRun = { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
    expect(run.code, run.stderr).toBe(1);
    expect(oneLineError(run)).toBe(`--output ${join(ro, 'dist')}: ${ro} is not writable (permission denied or read-only file system)`);
    expect(treeChanges(before, snapshotTree(ro))).toEqual([]);
  });
});

describe('package output folder: lock, dead runs, and interruptions', () => {
  it('refuses while another live run holds the output folder, takes over a dead run\'s lock', async () => {
    const dist = join(work, 'locked');
    await cp(oldDist, dist, { recursive: true });
    await writeFile(join(dist, '.qwen3-onnx.lock'), `${process.pid}\n`);
    await expectRefused(addArgs(dist), `${dist}: another qwen3-onnx run (pid ${process.pid}) is writing this model directory; wait for it to finish`, [dist, model]);
    await writeFile(join(dist, '.qwen3-onnx.lock'), `${deadPid()}\n`);
    await expectOk(addArgs(dist));
    expect(treeChanges(snapshotTree(newAddDist), snapshotTree(dist))).toEqual([]);
  });

  it('a switch cut short after its commit mark: readers refuse the half-switched archive, the next run finishes it', async () => {
    const dist = join(work, 'half-switched');
    await cp(oldDist, dist, { recursive: true });
    const staging = join(dist, `.qwen3-asr-other-fp32.tmp-${deadPid()}-abc123`);
    await mkdir(staging);
    for (const f of ['SHA256SUMS', 'qwen3-asr-other-fp32.manifest.json', 'qwen3-asr-other-fp32.tar.gz']) await copyFile(join(newAddDist, f), join(staging, f));
    await writeFile(join(staging, '.commit'), '');
    await rename(join(staging, 'SHA256SUMS'), join(dist, 'SHA256SUMS')); // killed after the first rename
    const pending = `an interrupted package run left qwen3-asr-other-fp32.manifest.json, qwen3-asr-other-fp32.tar.gz half switched in (${basename(staging)}); run qwen3-onnx package again with the same output to finish it`;
    const other = join(dist, 'qwen3-asr-other-fp32.tar.gz');
    await expectRefused(['verify-package', other], `${other}: ${pending}`, [dist]);
    await expectRefused(['publish', '--dist', dist, '--repo', 'someone/x', '--dry-run'], `${dist}: ${pending}`, [dist]);
    await expectOk(['verify-package', join(dist, `${NAME}.tar.gz`)]); // the archive it does not name is fine
    await expectOk(addArgs(dist));
    expect(treeChanges(snapshotTree(newAddDist), snapshotTree(dist))).toEqual([]);
  });

  /** Where in a package run to send the signal, judged from what the output folder holds. */
  const POINTS = {
    // the staging folder exists: cheap checks done, onnxruntime opening the graphs
    staged: () => true,
    // the archive is being written (its temp file holds some MB)
    writing: (files: string[], staging: string) => files.some((f) => /\.tar\.gz\.tmp-/.test(f) && statSync(join(staging, f)).size > 4 << 20),
    // the archive is complete in staging and being re-read for the checksum check
    verifying: (files: string[]) => files.includes(`${NAME}.tar.gz`) || files.includes('qwen3-asr-other-fp32.tar.gz'),
  } as const;

  const reached = (dist: string, point: keyof typeof POINTS) => (): boolean => {
    try {
      const s = readdirSync(dist).find((n) => /^\.qwen3-asr-.*\.tmp-\d+-[0-9a-f]+$/.test(n));
      if (!s) return false;
      const staging = join(dist, s);
      return POINTS[point](readdirSync(staging), staging);
    } catch {
      return false;
    }
  };

  /** The snapshot without what debrisIn reports and without anything below it. */
  const withoutDebris = (dir: string): Map<string, string> => {
    const snap = snapshotTree(dir);
    const debris = debrisIn(dir);
    return new Map([...snap].filter(([k]) => !debris.some((d) => k === d || k.startsWith(`${d}/`))));
  };

  const CASES: { scenario: 'add' | 'replace'; signal: NodeJS.Signals; point: keyof typeof POINTS }[] = [
    { scenario: 'replace', signal: 'SIGKILL', point: 'staged' },
    { scenario: 'replace', signal: 'SIGKILL', point: 'writing' },
    { scenario: 'replace', signal: 'SIGKILL', point: 'verifying' },
    { scenario: 'replace', signal: 'SIGTERM', point: 'writing' },
    { scenario: 'replace', signal: 'SIGTERM', point: 'verifying' },
    { scenario: 'add', signal: 'SIGKILL', point: 'writing' },
    { scenario: 'add', signal: 'SIGINT', point: 'writing' },
  ];

  for (const c of CASES) {
    it(`${c.signal} while ${c.point} (${c.scenario}): the folder is the old state or the new one, never a mix`, async () => {
      const dist = join(work, `kill-${c.scenario}-${c.signal}-${c.point}`);
      await cp(oldDist, dist, { recursive: true });
      const args = c.scenario === 'add' ? addArgs(dist) : replaceArgs(dist);
      const oldState = snapshotTree(oldDist);
      const newState = snapshotTree(c.scenario === 'add' ? newAddDist : newReplaceDist);
      const run = await runCliAndKill(args, { signal: c.signal, when: reached(dist, c.point) }, { env: env() });
      expect(run.killed).toBe(true);
      const matches = (s: Map<string, string>): boolean => treeChanges(oldState, s).length === 0 || treeChanges(newState, s).length === 0;

      if (c.signal === 'SIGKILL') {
        expect(run.signal).toBe('SIGKILL');
        // Killed before its commit mark, so the final-named files are the old ones; debris is left.
        expect(matches(withoutDebris(dist)), treeChanges(oldState, withoutDebris(dist)).join(', ')).toBe(true);
        for (const a of readdirSync(dist).filter((f) => f.endsWith('.tar.gz'))) await expectOk(['verify-package', join(dist, a)]);
        // The next run sweeps the dead run's staging folder and lock, and finishes the job.
        await expectOk(args);
      } else {
        const code = { SIGTERM: 143, SIGINT: 130 }[c.signal as 'SIGTERM' | 'SIGINT'];
        expect(run.code, run.stderr).toBe(code);
        expect(oneLineError(run)).toBe(`interrupted (${c.signal}); partial output removed`);
        expect(debrisIn(dist)).toEqual([]);
        expect(matches(snapshotTree(dist)), treeChanges(oldState, snapshotTree(dist)).join(', ')).toBe(true);
        await expectOk(args);
      }
      expect(treeChanges(newState, snapshotTree(dist))).toEqual([]);
      expect(readdirSync(childTmp)).toEqual([]);
      await rm(dist, { recursive: true, force: true });
    }, 120_000);
  }
});

describe('verify-package on a lone archive', () => {
  it('catches a flipped byte in a member with no manifest beside it', async () => {
    const dir = join(work, 'lone-flipped');
    await mkdir(dir);
    const tar = gunzipSync(await readFile(join(oldDist, `${NAME}.tar.gz`)));
    const at = memberOffset(tar, `${NAME}/decoder_weights.data`) + 1_000_000;
    tar[at] ^= 0x01;
    const archive = join(dir, `${NAME}.tar.gz`);
    await writeFile(archive, gzipSync(tar, { level: 1 })); // a valid gzip stream: only the member checksum can tell
    await expectRefused(['verify-package', archive], `${archive}: decoder_weights.data does not match its manifest checksum (tampered or corrupt)`, [dir]);
  });

  it('passes the same archive repacked by GNU tar in PAX format (read, not called corrupt)', async () => {
    const archive = await repack(join(work, 'lone-pax'), async () => {});
    expect(gunzipSync(await readFile(archive)).includes(Buffer.from('PaxHeaders'))).toBe(true);
    const run = await expectOk(['verify-package', archive]);
    expect(run.stdout).toBe(`OK ${archive}: 12 files, variant fp32, checksums match the manifest inside (no manifest beside it)\n`);
  });

  it('refuses an archive without its manifest inside', async () => {
    const archive = await repack(join(work, 'lone-no-manifest'), async () => {}, { keepManifestInside: false });
    await expectRefused(['verify-package', archive],
      `${archive}: no ${NAME}/manifest.json inside (not written by qwen3-onnx package, or by a version before archives carried their manifest)`, [join(work, 'lone-no-manifest')]);
  });

  it('refuses an edited member whose manifest inside was not updated', async () => {
    const archive = await repack(join(work, 'lone-stale-manifest'), (top) => editJson(join(top, 'config.json'), (j) => { j.decoder.rope_theta = 10000; }), { fixManifest: false });
    await expectRefused(['verify-package', archive], `${archive}: config.json does not match its manifest checksum (tampered or corrupt)`, [join(work, 'lone-stale-manifest')]);
  });

  it('refuses vocab_size 7 beside a 151936-row table even when the manifests were redone to match', async () => {
    const archive = await repack(join(work, 'lone-vocab7'), (top) => editJson(join(top, 'config.json'), (j) => { j.decoder.vocab_size = 7; }));
    await expectRefused(['verify-package', archive], `${archive}: ${NAME}/config.json: decoder.vocab_size 7 disagrees with embed_tokens_shape [151936, 96]`, [join(work, 'lone-vocab7')]);
  });

  it('refuses a truncated vocab.json and a broken merges.txt inside', async () => {
    let text = '';
    const a = await repack(join(work, 'lone-short-vocab'), async (top) => { text = await truncateFile(join(top, 'vocab.json'), 100_000); });
    await expectRefused(['verify-package', a], `${a}: ${NAME}/vocab.json: not valid JSON (${jsonError(text)})`, [join(work, 'lone-short-vocab')]);
    const b = await repack(join(work, 'lone-bad-merges'), (top) => writeFile(join(top, 'merges.txt'), '#version: 0.2\nĠ t\nthree part line\n'));
    await expectRefused(['verify-package', b], `${b}: ${NAME}/merges.txt: malformed merge line "three part line"`, [join(work, 'lone-bad-merges')]);
  });
});

describe('publish --dry-run checks what it would upload', () => {
  const publishArgs = (dist: string): string[] => ['publish', '--dist', dist, '--repo', 'someone/x', '--dry-run'];

  it('passes a good package folder, listing what it would upload', async () => {
    const run = await expectOk(publishArgs(oldDist));
    expect(run.stdout.split('\n').filter(Boolean).map((l) => l.split('  ')[0])).toEqual([
      `would upload ${NAME}.tar.gz`, `would upload ${NAME}.manifest.json`, 'would upload SHA256SUMS',
    ]);
  });

  it('refuses vocab_size 7 beside a 151936-row table, with manifests and SHA256SUMS redone to match', async () => {
    const dist = join(work, 'pub-vocab7');
    const archive = await repack(dist, (top) => editJson(join(top, 'config.json'), (j) => { j.decoder.vocab_size = 7; }), { beside: true });
    await expectRefused(publishArgs(dist), `${archive}: ${NAME}/config.json: decoder.vocab_size 7 disagrees with embed_tokens_shape [151936, 96]`, [dist]);
  });

  it('refuses a truncated vocab.json and a broken tokenizer_config.json', async () => {
    let text = '';
    const a = join(work, 'pub-short-vocab');
    const archiveA = await repack(a, async (top) => { text = await truncateFile(join(top, 'vocab.json'), 100_000); }, { beside: true });
    await expectRefused(publishArgs(a), `${archiveA}: ${NAME}/vocab.json: not valid JSON (${jsonError(text)})`, [a]);
    const b = join(work, 'pub-bad-tokenizer-config');
    const archiveB = await repack(b, async (top) => { text = await truncateFile(join(top, 'tokenizer_config.json'), 3000); }, { beside: true });
    await expectRefused(publishArgs(b), `${archiveB}: ${NAME}/tokenizer_config.json: not valid JSON (${jsonError(text)})`, [b]);
  });

  it('refuses an archive with no manifest beside it, and a --dist that is a file', async () => {
    const dist = join(work, 'pub-lone');
    await cp(oldDist, dist, { recursive: true });
    await copyFile(join(newAddDist, 'qwen3-asr-other-fp32.tar.gz'), join(dist, 'qwen3-asr-other-fp32.tar.gz'));
    await expectRefused(publishArgs(dist), `${dist}/qwen3-asr-other-fp32.tar.gz: no qwen3-asr-other-fp32.manifest.json beside it (package it again, or move it out of ${dist})`, [dist]);
    const file = join(dist, 'SHA256SUMS');
    await expectRefused(publishArgs(file), `--dist: cannot read ${file}: not a directory`, [dist]);
  });
});
