import type { Command } from 'commander';
import { register as registerAlign } from './align.js';
import { register as registerBuild } from './build.js';
import { register as registerCalibrate } from './calibrate.js';
import { register as registerCompare } from './compare.js';
import { register as registerExport } from './export.js';
import { register as registerFixtures } from './fixtures.js';
import { register as registerInspect } from './inspect.js';
import { register as registerPackage } from './package.js';
import { register as registerPublish } from './publish.js';
import { register as registerQuantize } from './quantize.js';
import { register as registerTranscribe } from './transcribe.js';
import { register as registerVerifyPackage } from './verify-package.js';
import { register as registerWer } from './wer.js';

/**
 * Every sub-command lives in its own module under cli/ and exports `register(program)`.
 * Keep this list sorted by command name.
 */
export function registerCommands(program: Command): void {
  registerAlign(program);
  registerBuild(program);
  registerCalibrate(program);
  registerCompare(program);
  registerExport(program);
  registerFixtures(program);
  registerInspect(program);
  registerPackage(program);
  registerPublish(program);
  registerQuantize(program);
  registerTranscribe(program);
  registerVerifyPackage(program);
  registerWer(program);
}
