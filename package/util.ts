import { stat } from 'node:fs/promises';
import { fsError } from '../common/errors.js';

export async function statSize(path: string): Promise<number> {
  try { return (await stat(path)).size; } catch (err) { throw fsError('cannot read', path, err); }
}
