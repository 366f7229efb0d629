import type { Log } from '../../functions/broker/ports.ts';

export interface CapturedEntry {
  level: 'debug' | 'info' | 'warn' | 'error';
  message: string;
  attributes: Record<string, unknown>;
}

/** A {@link Log} that keeps entries in memory, serialised like the JSON log lines. */
export class CaptureLog implements Log {
  readonly entries: CapturedEntry[] = [];

  debug(message: string, attributes: Record<string, unknown> = {}): void {
    this.entries.push({ level: 'debug', message, attributes });
  }
  info(message: string, attributes: Record<string, unknown> = {}): void {
    this.entries.push({ level: 'info', message, attributes });
  }
  warn(message: string, attributes: Record<string, unknown> = {}): void {
    this.entries.push({ level: 'warn', message, attributes });
  }
  error(message: string, attributes: Record<string, unknown> = {}): void {
    this.entries.push({ level: 'error', message, attributes });
  }

  /** Every entry as one JSON line, for "no secret appears anywhere" checks. */
  text(): string {
    return this.entries.map((entry) => JSON.stringify(entry)).join('\n');
  }

  events(): unknown[] {
    return this.entries.map((entry) => entry.attributes.event).filter(Boolean);
  }
}
