/**
 * Vitest setup file: keeps what the code under test writes to `process.stdout` and
 * `process.stderr` (the functions' Powertools JSON logs, CDK's bundling notes) out of the
 * test report, and prints it after a test only when that test failed, so a failure stands
 * out instead of drowning in log lines.
 *
 * With `pool: 'forks'` this runs in the worker process that runs the tests; vitest's
 * reporter writes from the main process and is not touched. `console.*` in a test is not
 * affected either: vitest routes it to the reporter itself. Tests that spy on
 * `process.stdout.write` (the production-logger tests) replace this wrapper for their own
 * duration and get it back from `vi.restoreAllMocks()`. Child processes a test starts have
 * their own streams.
 */
import { afterAll, afterEach } from 'vitest';

type Write = NodeJS.WriteStream['write'];

interface Capture {
  /** What the code wrote to either stream since the last test ended, in order. */
  chunks: string[];
  readonly originals: Map<NodeJS.WriteStream, Write>;
}

/** One capture per worker process: a worker may run several files, each loading this. */
const CAPTURE = Symbol.for('token-broker.test-output-capture');
const holder = globalThis as { [CAPTURE]?: Capture };

function install(): Capture {
  const capture: Capture = { chunks: [], originals: new Map() };
  for (const stream of [process.stdout, process.stderr]) {
    const original = stream.write;
    capture.originals.set(stream, original);
    stream.write = ((
      chunk: string | Uint8Array,
      encodingOrDone?: BufferEncoding | ((error?: Error | null) => void),
      done?: (error?: Error | null) => void,
    ): boolean => {
      capture.chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
      const callback = typeof encodingOrDone === 'function' ? encodingOrDone : done;
      if (callback) process.nextTick(callback);
      return true;
    }) as Write;
  }
  return capture;
}

const capture = holder[CAPTURE] ?? install();
holder[CAPTURE] = capture;

/**
 * Writes the captured output, framed so it reads as one block. All of it goes to stderr:
 * stdout and stderr flush at different times when piped, which would tear the block apart.
 */
function replay(title: string): void {
  const chunks = capture.chunks;
  capture.chunks = [];
  if (chunks.length === 0) return;
  const write = capture.originals.get(process.stderr);
  const text = chunks.join('');
  write?.call(
    process.stderr,
    `\n--- output of ${title} (shown because it failed) ---\n${text}--- end of output ---\n`,
  );
}

interface TaskLike {
  name: string;
  result?: { state?: string };
  tasks?: TaskLike[];
}

function failed(task: TaskLike): boolean {
  return task.result?.state === 'fail' || (task.tasks ?? []).some(failed);
}

// Output written before a test (a beforeAll starting a server) is kept with the first
// test's. Registered first, so (hooks run in reverse) this runs after the file's own
// afterEach hooks and sees their output too.
afterEach(({ task }) => {
  if (task.result?.state === 'fail') replay(`"${task.name}"`);
  else capture.chunks = [];
});

// A failed beforeAll/afterAll fails the file without a failed test's afterEach.
// biome-ignore lint/correctness/noEmptyPattern: vitest reads the fixtures from this pattern
afterAll(({}, suite) => {
  if (failed(suite)) replay(`the hooks of ${suite.name}`);
  else capture.chunks = [];
});
