import type {
  BrokerCodeRecord,
  BrokerCodeStore,
  Redemption,
} from '../../functions/broker/ports.ts';

/** {@link BrokerCodeStore} in memory, with the DynamoDB adapter's single-use semantics. */
export class MemoryBrokerCodeStore implements BrokerCodeStore {
  readonly items = new Map<string, BrokerCodeRecord>();

  async create(record: BrokerCodeRecord): Promise<boolean> {
    if (this.items.has(record.codeKey)) return false;
    this.items.set(record.codeKey, { ...record });
    return true;
  }

  async get(codeKey: string): Promise<BrokerCodeRecord | undefined> {
    const record = this.items.get(codeKey);
    return record ? { ...record } : undefined;
  }

  async redeem(
    codeKey: string,
    redemption: { redemptionId: string; now: number },
  ): Promise<Redemption> {
    const record = this.items.get(codeKey);
    if (!record) return { outcome: 'unknown' };
    if (record.redeemedAt !== undefined) return { outcome: 'replayed', record: { ...record } };
    record.redeemedAt = redemption.now;
    record.redemptionId = redemption.redemptionId;
    return { outcome: 'first', record: { ...record } };
  }
}
