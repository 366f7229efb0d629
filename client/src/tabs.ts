import type { AccessToken } from './client.js';

/** The parts of the Web Locks API used here (lib.dom's `LockManager`). */
interface Locks {
  request<T>(name: string, callback: () => Promise<T>): Promise<T>;
  request<T>(name: string, options: { mode: 'shared' }, callback: () => Promise<T>): Promise<T>;
  query(): Promise<{ held?: Array<{ name?: string }> }>;
}

export interface TabShare {
  /** Runs `refresh` under the cross-tab lock, unless another tab's token makes it needless. */
  run(refresh: () => Promise<AccessToken>): Promise<AccessToken>;
  /** This tab considers `version` dead. */
  forget(version: number): void;
  close(): void;
}

interface Hooks {
  /** This tab's token when usable. */
  usable(): AccessToken | undefined;
  /** The highest version this tab considers dead (-1: none). */
  dead(): number;
  /** A token from another tab. */
  adopt(token: AccessToken): void;
}

/** How long a tab waits for another tab to hand over a token it knows exists. */
const ASK_TIMEOUT_MS = 500;

/**
 * One `/refresh` for all tabs of an origin (they share the session cookie, so one session).
 *
 * Two browser mechanisms, and why both: a Web Lock named after the broker makes the tabs'
 * refreshes take turns, and a BroadcastChannel carries the token the lock holder got to the
 * other tabs (in memory only: no localStorage or IndexedDB copy that outlives the tabs).
 * The lock alone cannot carry data, and the two are not ordered with each other: the
 * holder posts its token and then releases the lock, yet the next tab may be granted the
 * lock before the message reaches it. Had it then called `/refresh`, it would have been
 * the second call. So every tab that holds a usable token also holds a shared lock named
 * after its version (`<name> v<version>`), a marker that lives exactly as long as some tab
 * can hand that token over. A tab granted the refresh lock:
 *
 *   1. uses its own token if a message already brought a usable one;
 *   2. else lists the held locks (`navigator.locks.query()`, ordered with the lock grant):
 *      a marker newer than the version it considers dead means a live tab has a usable
 *      token, so it asks for it on the channel and takes the first answer (the holder's
 *      own message, still on its way, answers too); only if none comes within 500 ms
 *      (that tab froze or closed meanwhile) does it go on;
 *   3. else calls `/refresh` itself, takes the marker and posts the token to the others.
 *
 * A tab that opens later finds the marker the same way and asks instead of refreshing.
 * A tab releases its marker when its token is said to be dead or a newer one arrives.
 * Where the Web Locks API or BroadcastChannel is missing, there is nothing to share and
 * each tab refreshes for itself (its concurrent calls still share one request).
 */
export function createTabShare(name: string, hooks: Hooks): TabShare | undefined {
  const locks = (globalThis as { navigator?: { locks?: Locks } }).navigator?.locks;
  if (!locks || typeof BroadcastChannel !== 'function') return undefined;
  const channel = new BroadcastChannel(name);
  const markerPrefix = `${name} v`;
  let marker: { version: number; release: () => void } | undefined;
  const waiters = new Set<(token: AccessToken) => void>();

  const hold = (version: number) => {
    if (marker && marker.version >= version) return;
    marker?.release();
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    marker = { version, release };
    void locks.request(`${markerPrefix}${version}`, { mode: 'shared' }, () => held);
  };

  channel.onmessage = (event: MessageEvent) => {
    const message = event.data as { type?: unknown; after?: unknown; token?: unknown } | null;
    if (message?.type === 'ask' && typeof message.after === 'number') {
      const token = hooks.usable();
      if (token && token.version > message.after) channel.postMessage({ type: 'token', token });
    } else if (message?.type === 'token') {
      const token = sharedToken(message.token);
      if (!token) return;
      hooks.adopt(token);
      if (hooks.usable() === token) hold(token.version);
      for (const waiter of waiters) waiter(token);
    }
  };

  const ask = (after: number) =>
    new Promise<AccessToken | undefined>((resolve) => {
      const done = (token: AccessToken | undefined) => {
        clearTimeout(timer);
        waiters.delete(answer);
        resolve(token);
      };
      const answer = (token: AccessToken) => {
        if (token.version > after) done(hooks.usable() ?? token);
      };
      const timer = setTimeout(() => done(undefined), ASK_TIMEOUT_MS);
      waiters.add(answer);
      channel.postMessage({ type: 'ask', after });
    });

  return {
    run(refresh) {
      return locks.request(name, async () => {
        const ready = hooks.usable();
        if (ready) return ready;
        const dead = hooks.dead();
        const { held = [] } = await locks.query();
        const newest = Math.max(
          -1,
          ...held.map(({ name: lock = '' }) =>
            lock.startsWith(markerPrefix) ? Number(lock.slice(markerPrefix.length)) : -1,
          ),
        );
        if (newest > dead) {
          const handed = await ask(dead);
          if (handed) return handed;
        }
        const token = await refresh();
        hold(token.version);
        channel.postMessage({ type: 'token', token });
        return token;
      });
    },
    forget(version) {
      if (marker && marker.version <= version) {
        marker.release();
        marker = undefined;
      }
    },
    close() {
      channel.close();
      marker?.release();
      marker = undefined;
    },
  };
}

/** A token posted by another tab of this origin (same origin only, yet checked). */
function sharedToken(value: unknown): AccessToken | undefined {
  const token = value as Partial<AccessToken> | null;
  return typeof token?.accessToken === 'string' &&
    typeof token.instanceUrl === 'string' &&
    Number.isSafeInteger(token.version)
    ? (token as AccessToken)
    : undefined;
}
