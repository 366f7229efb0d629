import type { LoginTransaction, LoginTransactionStore } from '../../functions/broker/ports.ts';

/** An in-memory {@link LoginTransactionStore} with the DynamoDB adapter's conditions. */
export class MemoryLoginStore implements LoginTransactionStore {
  readonly items = new Map<string, LoginTransaction>();
  readonly calls = { create: 0, consume: 0 };

  async create(transaction: LoginTransaction): Promise<boolean> {
    this.calls.create++;
    if (this.items.has(transaction.stateKey)) return false;
    this.items.set(transaction.stateKey, structuredClone(transaction));
    return true;
  }

  async consume(stateKey: string): Promise<LoginTransaction | undefined> {
    this.calls.consume++;
    const item = this.items.get(stateKey);
    this.items.delete(stateKey);
    return item;
  }
}
