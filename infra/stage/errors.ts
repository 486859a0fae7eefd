// What a stage that cannot deploy raises, and how the package step reports it once.

/** A stage param the function would reject; the message names the param and the fix. */
export class StageConfigError extends Error {
  override name = 'StageConfigError';
}

export function fail(stage: string, message: string): never {
  throw new StageConfigError(`Stage '${stage}': ${message}`);
}

/** Every variable that reads this file would repeat the error inside "Cannot resolve serverless.yml": say it once. */
export function stop(error: Error): never {
  process.stderr.write(
    `\nError:\n${error.message}\n(checked by infra/stage.js while packaging; nothing was deployed)\n`,
  );
  process.exit(1);
}
