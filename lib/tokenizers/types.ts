/** What every tokenizer in crepe offers: text to ids and back. */
export interface Tokenizer {
  readonly vocabSize: number;
  /** -1 when the tokenizer has no such token. */
  readonly bosId: number;
  readonly eosId: number;
  /**
   * The tokenizer's own convention for a text's start, as transformers' `tokenizer(text)` applies
   * it: true when a BOS id is prepended (Llama, Mistral), false when not (Qwen2, GPT-style).
   * Evaluation and calibration text follow it.
   */
  readonly addBos: boolean;
  /** ids for text; with bos=true a BOS id is prepended (llama2c/sentencepiece put the dummy-prefix space as run.c does). */
  encode(text: string, opts?: { bos?: boolean }): Int32Array;
  decode(ids: ArrayLike<number>): string;
}
