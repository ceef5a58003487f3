/**
 * Errors a user can cause (bad file, bad flag, impossible setting). The CLI prints the message
 * on one line and exits with `exitCode`; anything else is a bug and is reported differently.
 */
export class CrepeError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    // The user sees one line, even when a message quotes a library's error text or the input
    // itself (V8's JSON.parse errors quote the bad text, line breaks included).
    super(message.replace(/\s*[\r\n]+\s*/g, ' '));
    this.name = 'CrepeError';
  }
}

/** Throw a CrepeError unless `cond` holds. */
export function check(cond: unknown, message: string): asserts cond {
  if (!cond) throw new CrepeError(message);
}
