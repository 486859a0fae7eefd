import { vi } from 'vitest';

/**
 * Runs `fn` and returns the JSON lines it wrote (Powertools writes logs and EMF to stdout, warnings to stderr), and
 * all it wrote as text (Powertools' own warnings, e.g. Metrics', are not JSON).
 */
export async function captureOutput<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; lines: Record<string, unknown>[]; text: string }> {
  const chunks: string[] = [];
  const capture = (chunk: string | Uint8Array) => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  };
  // Powertools writes INFO and EMF to stdout, WARN and ERROR to stderr: in Lambda both reach the log group.
  const spies = [
    vi.spyOn(process.stdout, 'write').mockImplementation(capture),
    vi.spyOn(process.stderr, 'write').mockImplementation(capture),
  ];
  try {
    const result = await fn();
    const text = chunks.join('');
    const lines = text
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    return { result, lines, text };
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
}
