import { Command } from 'commander';
import { vi } from 'vitest';

/**
 * Runs one sub-command in-process (for tests): registers it on a fresh program and captures what
 * it writes to stdout, also when it then fails (`error` holds the UserError / CommanderError).
 */
export async function runCommandResult(
  register: (program: Command) => void, command: string, args: string[],
): Promise<{ stdout: string; error?: unknown }> {
  const program = new Command().exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
  register(program);
  const chunks: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => { chunks.push(String(chunk)); return true; });
  try {
    await program.parseAsync(['node', 'qwen3-onnx', command, ...args]);
    return { stdout: chunks.join('') };
  } catch (error) {
    return { stdout: chunks.join(''), error };
  } finally {
    spy.mockRestore();
  }
}

/** Like runCommandResult, but returns stdout and rethrows a failure. */
export async function runCommand(register: (program: Command) => void, command: string, args: string[]): Promise<string> {
  const { stdout, error } = await runCommandResult(register, command, args);
  if (error !== undefined) throw error;
  return stdout;
}
