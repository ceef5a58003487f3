/**
 * Seeded pseudo-random numbers for every random choice crepe makes (calibration sampling,
 * search), so that a run is reproducible bit for bit from its seed.
 *
 * The generator is sfc32 (Chris Doty-Humphrey's "small fast counting" generator from
 * PractRand), whose 128-bit state is filled from the seed by splitmix32. Both are a few lines
 * of 32-bit integer arithmetic, so we write them here rather than take an npm dependency.
 */
import { CrepeError } from '../errors';

const TWO_POW_32 = 4294967296;

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  /** Box-Muller yields normals in pairs; the second one waits here for the next call. */
  private spareNormal: number | null = null;

  /** `seed` is any safe integer (negative too); all 53 bits take part. */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new CrepeError(`seed must be an integer, got ${seed}`);
    // splitmix32: a golden-ratio (Weyl) counter passed through the murmur3 finalizer, so that
    // nearby seeds (0, 1, 2, ...) give unrelated states.
    let counter = (seed >>> 0) ^ Math.imul(Math.floor(seed / TWO_POW_32) >>> 0, 0x85ebca6b);
    const splitmix32 = (): number => {
      counter = (counter + 0x9e3779b9) | 0;
      let z = counter;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = splitmix32();
    this.b = splitmix32();
    this.c = splitmix32();
    this.d = splitmix32();
    // The usual warm-up, so the first outputs do not echo the seeding.
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  /** sfc32 step: the next uniformly distributed 32-bit unsigned integer. */
  nextUint32(): number {
    const t0 = (this.a + this.b) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.d = (this.d + 1) | 0;
    const t = (t0 + this.d) | 0;
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1), with 32 bits of resolution. */
  next(): number {
    return this.nextUint32() / TWO_POW_32;
  }

  /** Uniform integer in [0, n). The bias for n not a power of two is below n / 2^32. */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_POW_32) {
      throw new CrepeError(`Rng.int needs an integer n in [1, 2^32], got ${n}`);
    }
    return Math.floor(this.next() * n);
  }

  /** Standard normal N(0, 1) by the Box-Muller transform. */
  normal(): number {
    if (this.spareNormal !== null) {
      const z = this.spareNormal;
      this.spareNormal = null;
      return z;
    }
    const u1 = 1 - this.next(); // in (0, 1], so the log is finite
    const u2 = this.next();
    const radius = Math.sqrt(-2 * Math.log(u1));
    const angle = 2 * Math.PI * u2;
    this.spareNormal = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }

  /** Fisher-Yates shuffle of `a` in place; returns `a`. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = a[i];
      a[i] = a[j];
      a[j] = tmp;
    }
    return a;
  }
}
