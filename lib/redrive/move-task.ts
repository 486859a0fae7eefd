// The move-task method: SQS's StartMessageMoveTask, polled until it ends, cancelled on Ctrl-C.
import {
  CancelMessageMoveTaskCommand,
  ListMessageMoveTasksCommand,
  type SQSClient,
  StartMessageMoveTaskCommand,
} from '@aws-sdk/client-sqs';
import { RedriveError } from './errors';
import { callTimeoutOf, within } from './sqs-call';
import type { RedriveOptions, RedriveSummary } from './types';

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

export async function moveTask(
  sqs: SQSClient,
  options: RedriveOptions,
  source: { arn: string },
  destinationArn: string,
  total: number,
): Promise<Omit<RedriveSummary, 'remaining' | 'durationMs'>> {
  const timeoutMs = callTimeoutOf(options);
  const start = new StartMessageMoveTaskCommand({ SourceArn: source.arn, DestinationArn: destinationArn });
  const started = await within('StartMessageMoveTask', timeoutMs, (abortSignal) => sqs.send(start, { abortSignal }));
  options.onStart?.({ method: 'move-task', total });
  const poll = options.pollIntervalMs ?? 1_000;
  let cancelled = false;
  let unseen = 0;
  for (;;) {
    if (options.signal?.aborted && !cancelled && started.TaskHandle) {
      cancelled = true;
      try {
        const cancel = new CancelMessageMoveTaskCommand({ TaskHandle: started.TaskHandle });
        await within('CancelMessageMoveTask', timeoutMs, (abortSignal) => sqs.send(cancel, { abortSignal }));
      } catch {
        // The task finished in the meantime: nothing to cancel.
      }
    }
    const listing = new ListMessageMoveTasksCommand({ SourceArn: source.arn, MaxResults: 1 });
    const list = await within('ListMessageMoveTasks', timeoutMs, (abortSignal) => sqs.send(listing, { abortSignal }));
    const task = list.Results?.[0];
    if (!task && ++unseen > 10) {
      throw new RedriveError(
        `the move task on ${source.arn} does not show in ListMessageMoveTasks: check the SQS console`,
      );
    }
    const moved = task?.ApproximateNumberOfMessagesMoved ?? 0;
    options.onProgress?.({ moved, failed: 0, total: task?.ApproximateNumberOfMessagesToMove ?? total });
    const status = task?.Status;
    if (status && status !== 'RUNNING' && status !== 'CANCELLING') {
      const summary: Omit<RedriveSummary, 'remaining' | 'durationMs'> = {
        method: 'move-task',
        moved,
        failed: 0,
        returned: 0,
        arrivedLater: 0,
        failures: [],
        destinations: moved > 0 ? { [destinationArn]: moved } : {},
        interrupted: status === 'CANCELLED',
        complete: status === 'COMPLETED',
      };
      if (status === 'FAILED') summary.taskFailureReason = task?.FailureReason ?? 'unknown';
      return summary;
    }
    await sleep(poll, cancelled ? undefined : options.signal);
  }
}
