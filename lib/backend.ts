import * as tf from '@tensorflow/tfjs';
import { CrepeError } from './errors';

export type BackendChoice = 'auto' | 'wasm' | 'cpu' | 'tensorflow';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'wasm', 'cpu', 'tensorflow'];

/** Try to load a native TensorFlow binding; they are optional peers and absent on most machines. */
function tryRequireNative(): string | null {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      require(pkg);
      return pkg;
    } catch {
      /* not installed: fall through */
    }
  }
  return null;
}

let active: string | null = null;

/**
 * Select and initialise the tfjs backend once per process. 'auto' prefers a native binding
 * (a user's GPU box), else wasm with SIMD. 'cpu' is ~30x slower than wasm here and exists only
 * for debugging.
 */
export async function initBackend(choice: BackendChoice = 'auto'): Promise<string> {
  if (active !== null) return active;
  if (!BACKEND_CHOICES.includes(choice)) {
    throw new CrepeError(`unknown backend '${choice}' (choose one of ${BACKEND_CHOICES.join(', ')})`);
  }
  let name: string;
  if (choice === 'tensorflow' || choice === 'auto') {
    const native = tryRequireNative();
    if (native) name = 'tensorflow';
    else if (choice === 'tensorflow') {
      throw new CrepeError('backend tensorflow needs @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node installed');
    } else name = 'wasm';
  } else name = choice;
  if (name === 'wasm') require('@tensorflow/tfjs-backend-wasm');
  const ok = await tf.setBackend(name);
  if (!ok) throw new CrepeError(`backend ${name} failed to initialise`);
  await tf.ready();
  active = name;
  return name;
}

/** The backend in use, with its relevant flags, for recording beside every result. */
export function backendDescription(): string {
  const name = tf.getBackend();
  if (name === 'wasm') {
    const simd = tf.env().getBool('WASM_HAS_SIMD_SUPPORT');
    return `wasm${simd ? '+simd' : ''}`;
  }
  return name;
}
