// What a redrive is asked and what it answers: shared by its entry point, the loop and the move task.
export type RedriveMethod = 'move-task' | 'loop';

export interface RedriveOptions {
  /** The dead-letter / quarantine queue to empty. */
  from: string;
  /** Where every message goes; without it each goes back to the queue it came from (see README). */
  to?: string;
  /** Move at most this many messages (forces the receive-send-delete loop: move tasks cannot be limited). */
  max?: number;
  /**
   * 'auto' (default) and 'loop': the receive-send-delete loop, which marks what it moves (REDRIVE_MARKER).
   * 'move-task': SQS's StartMessageMoveTask (needs --to, no --max); it cannot mark what it moves.
   */
  method?: RedriveMethod | 'auto';
  /** Loop only: how long a received message stays hidden; after an interruption it is visible again this much later. */
  visibilityTimeoutS?: number;
  /** Loop only: long-poll this many seconds before concluding the queue is empty (short polls can miss messages). */
  emptyWaitS?: number;
  /**
   * Loop only: SQS's clock minus ours, when known exactly (a local server on this machine: 0). A message is there at
   * the start when SQS stamped it (SentTimestamp) no later than the start on SQS's clock; later ones wait for the
   * next run. By default SQS's clock is read from the Date header of its first answer, to the second.
   */
  clockOffsetMs?: number;
  /** Told of a doubt the run worked around (e.g. SQS's clock far from ours); the CLI prints it. */
  onWarning?: (warning: string) => void;
  /**
   * How long one SQS call may take before the run gives up on it (a long poll's wait on top); default 30 s. A send
   * that times out may or may not have reached the destination: its messages stay in the source and are reported.
   */
  callTimeoutMs?: number;
  /** Move task only: how often its progress is read. */
  pollIntervalMs?: number;
  /** Stops the run: the loop finishes the batch in hand (send, then delete), a move task is cancelled. */
  signal?: AbortSignal;
  onStart?: (info: { method: RedriveMethod; total: number }) => void;
  onProgress?: (progress: RedriveProgress) => void;
}

export interface RedriveProgress {
  moved: number;
  failed: number;
  total: number;
}

export interface RedriveFailure {
  messageId: string;
  error: string;
}

export interface RedriveSummary {
  method: RedriveMethod;
  /** Messages now in their destination and deleted from the source. */
  moved: number;
  /** Messages that could not be moved; they stay in (or return to) the source queue. */
  failed: number;
  /**
   * Loop only: messages this run moved that came back to the source queue during the run (quarantined or
   * dead-lettered again: still poison). They are left there, not moved again.
   */
  returned: number;
  /** Loop only: messages sent to the source after the run started; they were left there for the next run. */
  arrivedLater: number;
  failures: RedriveFailure[];
  /** Moved messages per destination queue URL (loop) or destination ARN (move task). */
  destinations: Record<string, number>;
  interrupted: boolean;
  /**
   * False when the loop stopped on its idle rule (receives in a row with nothing to move) rather than on an empty
   * receive, --max or an interruption: messages there at the start may remain; run it again.
   */
  complete: boolean;
  /** ApproximateNumberOfMessages of the source after the run. */
  remaining: number;
  /** Why a move task ended without moving everything, as SQS reports it. */
  taskFailureReason?: string;
  durationMs: number;
}
