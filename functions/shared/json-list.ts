/**
 * A list setting as JSON text (an environment variable, a `-c` context value) or as the
 * already parsed array (`cdk.json`): empty or absent is no entries. Throws an `Error` with
 * `shape` (what the value must be) for anything that is not an array, and one naming the
 * limit past `maxEntries`. No imports: both the stack and the functions use it.
 */
export function jsonList(value: unknown, shape: string, maxEntries: number): unknown[] {
  let parsed = value;
  if (parsed === undefined || parsed === null) return [];
  if (typeof parsed === 'string') {
    if (parsed.trim() === '') return [];
    try {
      parsed = JSON.parse(parsed);
    } catch {
      throw new Error(shape);
    }
  }
  if (!Array.isArray(parsed)) throw new Error(shape);
  if (parsed.length > maxEntries) throw new Error(`must list at most ${maxEntries} apps`);
  return parsed;
}
