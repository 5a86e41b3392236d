import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createRepo, repoExists, uploadFiles } from '@huggingface/hub';
import { UserError } from '../common/errors.js';
import { sha256File } from '../common/hash.js';
import { parseJsonWith } from '../checkpoint/config.js';
import { parseRepoId } from '../checkpoint/model-source.js';
import { hubToken } from '../checkpoint/hub-token.js';
import { PackageManifestSchema } from './manifest.js';

export interface PublishOptions {
  distDir: string;
  repo: string;
  hubUrl?: string;
  branch?: string;
  create?: boolean;
  dryRun?: boolean;
  commitTitle?: string;
}

export interface PublishPlan { repo: string; files: { path: string; size?: number; sha256: string }[] }

/**
 * Checks a build's dist/ directory (every archive matches its manifest and SHA256SUMS) and
 * returns what would be uploaded: archives, manifests, SHA256SUMS and the model card.
 */
export async function planPublish(distDir: string, repo: string): Promise<PublishPlan> {
  const dir = resolve(distDir);
  const names = (await readdir(dir).catch(() => { throw new UserError(`${dir}: no such directory`); })).sort();
  const manifests = names.filter((n) => n.endsWith('.manifest.json'));
  if (manifests.length === 0) throw new UserError(`${dir}: no *.manifest.json (run build or package first)`);
  if (!names.includes('SHA256SUMS')) throw new UserError(`${dir}: SHA256SUMS is missing`);
  const sums = new Map((await readFile(join(dir, 'SHA256SUMS'), 'utf8')).split('\n').filter(Boolean).map((l) => [l.slice(66), l.slice(0, 64)]));
  const files: PublishPlan['files'] = [];
  for (const m of manifests) {
    const manifest = parseJsonWith(PackageManifestSchema, await readFile(join(dir, m), 'utf8'), join(dir, m));
    const archive = manifest.archive.path;
    if (!names.includes(archive)) throw new UserError(`${join(dir, archive)}: missing (named by ${m})`);
    const actual = await sha256File(join(dir, archive));
    if (actual !== manifest.archive.sha256) throw new UserError(`${archive}: sha256 differs from ${m}`);
    if (sums.get(archive) !== actual) throw new UserError(`${archive}: sha256 differs from SHA256SUMS`);
    files.push({ path: archive, size: manifest.archive.size, sha256: actual });
    const manifestSha = await sha256File(join(dir, m));
    if (sums.get(m) !== manifestSha) throw new UserError(`${m}: sha256 differs from SHA256SUMS`);
    files.push({ path: m, sha256: manifestSha });
  }
  files.push({ path: 'SHA256SUMS', sha256: await sha256File(join(dir, 'SHA256SUMS')) });
  if (names.includes('README.md')) files.push({ path: 'README.md', sha256: await sha256File(join(dir, 'README.md')) });
  return { repo: parseRepoId(repo), files };
}

/** Uploads a checked dist/ directory to a Hugging Face model repo in one commit. */
export async function publish(opts: PublishOptions): Promise<PublishPlan & { commit: string | null }> {
  const plan = await planPublish(opts.distDir, opts.repo);
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
