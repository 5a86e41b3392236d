#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { UserError } from '../common/errors.js';
import { registerCommands } from './commands.js';
import { TOOL_VERSION } from '../common/version.js';

const program = new Command();
program
  .name('qwen3-onnx')
  .description('Build fast, small ONNX models of Qwen3-ASR straight from Hugging Face safetensors (no Python).')
  .version(TOOL_VERSION)
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

registerCommands(program);

async function main(): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help / --version exit 0; unknown flags and missing arguments exit non-zero.
      process.exitCode = err.exitCode;
      return;
    }
    if (err instanceof UserError) {
      process.stderr.write(`qwen3-onnx: error: ${err.message}\n`);
      process.exitCode = err.exitCode;
      return;
    }
    process.stderr.write(`qwen3-onnx: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 70;
  }
}

await main();
