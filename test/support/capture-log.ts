import type { Log, MetricSink } from '../../functions/broker/ports.ts';

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

/** A {@link MetricSink} that adds counts up by name (and `class` dimension, when given). */
export class CaptureMetrics implements MetricSink {
  readonly counts = new Map<string, number>();
  readonly timings = new Map<string, number[]>();

  count(name: string, value = 1, dimensions?: Record<string, string>): void {
    const key = dimensions?.class ? `${name}:${dimensions.class}` : name;
    this.counts.set(key, (this.counts.get(key) ?? 0) + value);
  }

  timing(name: string, milliseconds: number): void {
    this.timings.set(name, [...(this.timings.get(name) ?? []), milliseconds]);
  }

  flush(): void {}

  get(name: string): number {
    return this.counts.get(name) ?? 0;
  }
}
