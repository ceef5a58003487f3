/**
 * Progress that library passes publish for whoever listens (the command line's progress bars),
 * on a Node diagnostics channel: a pass deep inside a library call (the search's calibration, its
 * final pruning and evaluation, OWL's dense pass) shows progress without a callback threaded
 * through every signature on the way. Publishing costs nothing while nobody subscribes.
 */
import * as diagnostics from 'diagnostics_channel';

export interface ProgressEvent {
  /** Which pass: a dense calibration pass, a pruning pass, an evaluation. */
  pass: 'calibration' | 'prune' | 'eval';
  /** What is counted: decoder blocks (an evaluation's head counts as one more), or evaluation windows. */
  unit: 'blocks' | 'windows';
  done: number;
  total: number;
}

const channel = diagnostics.channel('crepe:progress');

export function publishProgress(event: ProgressEvent): void {
  if (channel.hasSubscribers) channel.publish(event);
}

/** Receive every published event until the returned function is called. */
export function subscribeProgress(listener: (event: ProgressEvent) => void): () => void {
  const handler = (message: unknown): void => listener(message as ProgressEvent);
  channel.subscribe(handler);
  return () => {
    channel.unsubscribe(handler);
  };
}
