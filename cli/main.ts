#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { installInterruptCleanup } from '../common/cleanup.js';
import { UserError } from '../common/errors.js';
import { registerCommands } from './commands.js';
import { unknownOptionMessage } from './unknown-options.js';
import { TOOL_VERSION } from '../common/version.js';

const PREFIX = 'qwen3-onnx';
const HINT = ' (run with --help for usage)';

const program = new Command();
program
  .name(PREFIX)
  .description('Build fast, small ONNX models of Qwen3-ASR straight from Hugging Face safetensors (no Python).')
  .version(TOOL_VERSION)
  // Usage errors are one line like every other error: `qwen3-onnx: error: ... (run with --help ...)`.
  .configureOutput({ outputError: (str, write) => write(`${PREFIX}: ${str.trim().replace(/\s*\n\s*/g, ' ')}${HINT}\n`) })
  .exitOverride();

registerCommands(program);

async function main(): Promise<void> {
  // Temp files, staging folders and locks of this run are removed on Ctrl-C / SIGTERM.
  installInterruptCleanup(PREFIX);
  // `qwen3-onnx ... | head`: a reader that stops early is not an error worth a stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
  try {
    const unknown = unknownOptionMessage(registerCommands, process.argv.slice(2));
    if (unknown) throw new UserError(`${unknown}${HINT}`, 1);
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help / --version exit 0; unknown flags and missing arguments exit non-zero.
      process.exitCode = err.exitCode;
      return;
    }
    if (err instanceof UserError) {
      process.stderr.write(`${PREFIX}: error: ${err.message}\n`);
      process.exitCode = err.exitCode;
      return;
    }
    process.stderr.write(`${PREFIX}: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 70;
  }
}

await main();
