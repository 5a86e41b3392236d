import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createRepo, repoExists, uploadFiles } from '@huggingface/hub';
import { UserError, fsError } from '../common/errors.js';
import { silentProgress, type Progress } from '../common/progress.js';
import { sha256File } from '../common/hash.js';
import { parseJsonWith } from '../checkpoint/config.js';
import { parseRepoId } from '../checkpoint/model-source.js';
import { hubToken } from '../checkpoint/hub-token.js';
import { PackageManifestSchema } from './manifest.js';
import { unfinishedCommitsIn } from './output-dir.js';
import { verifyArchive } from './verify.js';

export interface PublishOptions {
  distDir: string;
  repo: string;
  hubUrl?: string;
  branch?: string;
  create?: boolean;
  dryRun?: boolean;
  commitTitle?: string;
  progress?: Progress;
}

export interface PublishPlan { repo: string; files: { path: string; size?: number; sha256: string }[] }

/**
 * Checks a build's dist/ directory and returns what would be uploaded: archives, manifests,
 * SHA256SUMS and the model card. Every archive must have its manifest beside it and be listed in
 * SHA256SUMS, and passes verifyArchive's `contents` checks (members against both manifests,
 * config.json against embed_tokens.bin and the graphs, tokenizer); an archive an interrupted
 * package run left half switched in, or one without a manifest, is refused.
 */
export async function planPublish(distDir: string, repo: string, progress: Progress = silentProgress): Promise<PublishPlan> {
  const dir = resolve(distDir);
  const repoId = parseRepoId(repo);
  let names: string[];
  try { names = (await readdir(dir)).sort(); } catch (err) { throw fsError('--dist: cannot read', dir, err); }
  const unfinished = unfinishedCommitsIn(dir)[0];
  if (unfinished) throw new UserError(`${dir}: ${unfinished.describe}`);
  const manifests = names.filter((n) => n.endsWith('.manifest.json'));
  if (manifests.length === 0) throw new UserError(`${dir}: no *.manifest.json (run build or package first)`);
  for (const a of names.filter((n) => n.endsWith('.tar.gz'))) {
    const m = a.replace(/\.tar\.gz$/, '.manifest.json');
    if (!names.includes(m)) throw new UserError(`${join(dir, a)}: no ${m} beside it (package it again, or move it out of ${dir})`);
  }
  if (!names.includes('SHA256SUMS')) throw new UserError(`${dir}: SHA256SUMS is missing`);
  const sums = new Map((await readFile(join(dir, 'SHA256SUMS'), 'utf8')).split('\n').filter(Boolean).map((l) => [l.slice(66), l.slice(0, 64)]));
  const files: PublishPlan['files'] = [];
  for (const m of manifests) {
    const manifest = parseJsonWith(PackageManifestSchema, await readFile(join(dir, m), 'utf8'), join(dir, m));
    const archive = manifest.archive.path;
    if (archive !== m.replace(/\.manifest\.json$/, '.tar.gz')) throw new UserError(`${join(dir, m)}: names archive ${archive}, expected ${m.replace(/\.manifest\.json$/, '.tar.gz')}`);
    if (!names.includes(archive)) throw new UserError(`${join(dir, archive)}: missing (named by ${m})`);
    if (!sums.has(archive)) throw new UserError(`${archive}: not listed in SHA256SUMS`);
    progress.info(`checking ${archive}`);
    const checked = await verifyArchive(join(dir, archive), { depth: 'contents', progress });
    if (!checked.sumsChecked) throw new UserError(`${archive}: sha256 differs from SHA256SUMS`);
    files.push({ path: archive, size: manifest.archive.size, sha256: manifest.archive.sha256 });
    const manifestSha = await sha256File(join(dir, m));
    if (sums.get(m) !== manifestSha) throw new UserError(`${m}: sha256 differs from SHA256SUMS`);
    files.push({ path: m, sha256: manifestSha });
  }
  files.push({ path: 'SHA256SUMS', sha256: await sha256File(join(dir, 'SHA256SUMS')) });
  if (names.includes('README.md')) files.push({ path: 'README.md', sha256: await sha256File(join(dir, 'README.md')) });
  return { repo: repoId, files };
}

/** Uploads a checked dist/ directory to a Hugging Face model repo in one commit. */
export async function publish(opts: PublishOptions): Promise<PublishPlan & { commit: string | null }> {
  const plan = await planPublish(opts.distDir, opts.repo, opts.progress);
  if (opts.dryRun) return { ...plan, commit: null };
  const accessToken = await hubToken();
  if (!accessToken) throw new UserError('publish: no Hugging Face token (set HF_TOKEN)');
  const repo = { type: 'model' as const, name: plan.repo };
  const hubUrl = opts.hubUrl ?? process.env.HF_ENDPOINT;
  if (opts.create && !(await repoExists({ repo, accessToken, ...(hubUrl ? { hubUrl } : {}) }))) {
    await createRepo({ repo, accessToken, ...(hubUrl ? { hubUrl } : {}) });
  }
  const dir = resolve(opts.distDir);
  const out = await uploadFiles({
    repo,
    accessToken,
    ...(hubUrl ? { hubUrl } : {}),
    ...(opts.branch ? { branch: opts.branch } : {}),
    commitTitle: opts.commitTitle ?? `qwen3-onnx release: ${plan.files.filter((f) => f.path.endsWith('.tar.gz')).map((f) => f.path).join(', ')}`,
    files: plan.files.map((f) => ({ path: f.path, content: pathToFileURL(join(dir, f.path)) })),
  });
  return { ...plan, commit: out?.commit.oid ?? null };
}
