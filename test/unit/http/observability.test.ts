import { afterEach, describe, expect, it, vi } from 'vitest';
import { EmfMetrics, withAttributes } from '../../../functions/http/observability.ts';
import { CaptureLog } from '../../support/capture-log.ts';

function captureOutput(): string[] {
  const lines: string[] = [];
  for (const stream of [process.stdout, process.stderr]) {
    vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
  }
  return lines;
}

describe('Class: EmfMetrics', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('publishes buffered metrics in Embedded Metric Format on flush', () => {
    const lines = captureOutput();
    const metrics = new EmfMetrics('broker-test');

    metrics.count('RefreshCommitted');
    metrics.timing('UpstreamLatencyMs', 42);
    metrics.flush();

    const emf = lines.map((line) => JSON.parse(line)).find((entry) => entry._aws);
    expect(emf._aws.CloudWatchMetrics[0].Metrics).toEqual(
      expect.arrayContaining([
        { Name: 'RefreshCommitted', Unit: 'Count' },
        { Name: 'UpstreamLatencyMs', Unit: 'Milliseconds' },
      ]),
    );
    expect(emf).toMatchObject({ RefreshCommitted: 1, UpstreamLatencyMs: 42 });
  });

  it('writes nothing for an invocation without metrics', () => {
    const lines = captureOutput();
    const metrics = new EmfMetrics('broker-test');

    metrics.flush();

    expect(lines).toEqual([]);
  });

  it('publishes a metric with a dimension at once', () => {
    const lines = captureOutput();
    const metrics = new EmfMetrics('broker-test');

    metrics.count('UpstreamError', 1, { class: 'invalid_grant' });

    const emf = JSON.parse(lines[0] ?? '{}');
    expect(emf).toMatchObject({ class: 'invalid_grant', UpstreamError: 1 });
  });
});

describe('Function: withAttributes', () => {
  it('adds request attributes without letting call sites drop them', () => {
    const log = new CaptureLog();

    withAttributes(log, { requestId: 'r-1' }).warn('x', { event: 'e' });

    expect(log.entries[0]).toMatchObject({
      level: 'warn',
      attributes: { requestId: 'r-1', event: 'e' },
    });
  });
});
