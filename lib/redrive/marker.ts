// The attribute the loop puts on what it moves: the function then reads the ledger for it (a redelivery).

/**
 * Message attribute naming the queue (ARN) a redrive moved the message out of. SQS gives a moved message a new id and
 * a receive count of 1, so without it a message SQS dead-lettered would look like a first delivery.
 */
export const REDRIVE_MARKER = 'redrive.from';
