import type { Command } from 'commander';

/**
 * Every sub-command lives in its own module under cli/ and exports `register(program)`.
 * Keep this list sorted by command name.
 */
export function registerCommands(program: Command): void {
  void program;
}
