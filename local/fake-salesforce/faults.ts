/** FIFO queues of injected faults, one per endpoint. */
import type { FakeFault } from '../fake-salesforce.ts';

type Endpoint = FakeFault['endpoint'];

export class FaultQueue {
  private readonly queues = new Map<Endpoint, { fault: FakeFault; remaining: number }[]>();

  add(fault: FakeFault): void {
    const times = fault.times ?? 1;
    if (!Number.isInteger(times) || times < 1) {
      throw new RangeError(`fault.times must be a positive integer, got ${String(fault.times)}`);
    }
    if (fault.kind === 'delay' && !(fault.ms >= 0)) {
      throw new RangeError('fault.ms must be >= 0');
    }
    const queue = this.queues.get(fault.endpoint) ?? [];
    queue.push({ fault, remaining: times });
    this.queues.set(fault.endpoint, queue);
  }

  /** The next fault for a request arriving at `endpoint`, consumed once. */
  take(endpoint: Endpoint): FakeFault | undefined {
    const queue = this.queues.get(endpoint);
    const head = queue?.[0];
    if (!queue || !head) return undefined;
    head.remaining--;
    if (head.remaining <= 0) queue.shift();
    return head.fault;
  }

  clear(): void {
    this.queues.clear();
  }
}
