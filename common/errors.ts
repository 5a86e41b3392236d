/**
 * Errors a user can act on. The CLI prints `message` as one line and exits non-zero;
 * anything else that escapes is a bug and gets a stack trace.
 */
export class UserError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message.replace(/\s*\n\s*/g, ' '));
    this.name = 'UserError';
    this.exitCode = exitCode;
  }
}

/** Turns a Node file-system error into a UserError that names the path and the cause. */
export function fsError(action: string, path: string, err: unknown): UserError {
  const e = err as NodeJS.ErrnoException;
  const why =
    e?.code === 'ENOENT' ? 'no such file or directory'
    : e?.code === 'ENOSPC' ? 'no space left on device'
    : e?.code === 'EACCES' ? 'permission denied'
    : e?.code === 'EISDIR' ? 'is a directory'
    : e?.code === 'ENOTDIR' ? 'not a directory'
    : (e?.message ?? String(err));
  return new UserError(`${action} ${path}: ${why}`);
}
