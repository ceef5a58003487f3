/** What every tokenizer in crepe offers: text to ids and back. */
export interface Tokenizer {
  readonly vocabSize: number;
  /** -1 when the tokenizer has no such token. */
  readonly bosId: number;
  readonly eosId: number;
  /** ids for text; with bos=true a BOS id is prepended (llama2c/sentencepiece put the dummy-prefix space as run.c does). */
  encode(text: string, opts?: { bos?: boolean }): Int32Array;
  decode(ids: ArrayLike<number>): string;
}
