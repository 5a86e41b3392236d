import type { Command } from 'commander';
import { register as registerPackage } from './package.js';
import { register as registerVerifyPackage } from './verify-package.js';

/**
 * Every sub-command lives in its own module under cli/ and exports `register(program)`.
 * Keep this list sorted by command name.
 */
export function registerCommands(program: Command): void {
  registerPackage(program);
  registerVerifyPackage(program);
}
