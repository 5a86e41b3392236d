import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

// The release workflow's pull-request job is `npm run release:pr-check`; run it exactly so the
// workflow's steps cannot rot. It builds the tiny fixture twice and fails unless both builds give
// byte-identical archives, manifests and SHA256SUMS, every archive verifies, and the publish
// plan checks out. Needs dist/ (npm test builds it first).
describe('npm run release:pr-check', () => {
  it('builds twice byte-identically, verifies and plans the publish', () => {
    const r = spawnSync('npm', ['run', '--silent', 'release:pr-check'], { cwd: join(__dirname, '..'), encoding: 'utf8', env: { ...process.env, CI: 'true' } });
    expect(r.stderr).not.toContain('FAILED');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/pr-check OK: qwen3-asr-tiny-fp32\.tar\.gz, qwen3-asr-tiny-int4\.tar\.gz built twice byte-identically/);
  }, 900_000);
});
