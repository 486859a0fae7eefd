import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { onTestFinished, vi } from 'vitest';

export type LogLine = Record<string, unknown> & { level: string; message: string };

/**
 * A real Powertools Logger (and Metrics) whose output the test reads back as parsed JSON lines. The logger writes to
 * process.stdout/stderr through its own Console, so those writes are what is captured, until the test finishes.
 */
export function captureLogs(): { logger: Logger; metrics: Metrics; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const capture = (chunk: unknown) => {
    for (const text of String(chunk).split('\n')) {
      if (!text.startsWith('{')) continue;
      try {
        const parsed = JSON.parse(text) as Partial<LogLine>;
        if (typeof parsed.level === 'string' && typeof parsed.message === 'string') lines.push(parsed as LogLine);
      } catch {}
    }
    return true;
  };
  const out = vi.spyOn(process.stdout, 'write').mockImplementation(capture);
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(capture);
  onTestFinished(() => {
    out.mockRestore();
    err.mockRestore();
  });
  const logger = new Logger({ serviceName: 'ingest-test', logLevel: 'DEBUG' });
  const metrics = new Metrics({ serviceName: 'ingest-test', namespace: 'IngestTest' });
  return { logger, metrics, lines };
}
