import * as fs from 'fs';
import * as path from 'path';
import { CrepeError } from './errors';

/**
 * The folder holding the embedded models and texts. One setting: the CREPE_ASSETS environment
 * variable, else `../shared/assets` relative to the project root.
 */
export function assetsDir(): string {
  const env = process.env.CREPE_ASSETS;
  if (env && env.length > 0) return path.resolve(env);
  return path.resolve(projectRoot(), '..', 'shared', 'assets');
}

/** The project root (the folder with package.json), whether running from lib/ or dist/lib/. */
export function projectRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  return process.cwd();
}

/** Path of a file inside the assets folder, with a clear message when it is missing. */
export function assetPath(...parts: string[]): string {
  const p = path.join(assetsDir(), ...parts);
  if (!fs.existsSync(p)) {
    throw new CrepeError(`asset not found: ${p} (set CREPE_ASSETS to the folder holding models/ and text/)`);
  }
  return p;
}
