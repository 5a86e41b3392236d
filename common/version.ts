import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** The toolkit's own version, from package.json (works from the sources and from dist/). */
export const TOOL_VERSION: string = (() => {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = require(rel) as { name?: string; version?: string };
      if (pkg.name === 'qwen3-onnx' && pkg.version) return pkg.version;
    } catch { /* try the next */ }
  }
  return '0.0.0';
})();
