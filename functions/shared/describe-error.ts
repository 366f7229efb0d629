/**
 * How every log line names an error. No imports: the domain, the adapters and the HTTP
 * edge all use it.
 *
 * `name_and_message` (the default) logs `Name: message`; `name_only` the class name alone, for
 * log lines whose error may carry upstream or SDK text they never logged. A value that is
 * not an `Error` is named by its type only: a thrown string could hold anything.
 */
export function describeError(
  error: unknown,
  parts: 'name_and_message' | 'name_only' = 'name_and_message',
): string | undefined {
  if (error === undefined) return undefined;
  if (!(error instanceof Error)) return typeof error;
  return parts === 'name_only' ? error.name : `${error.name}: ${error.message}`;
}
