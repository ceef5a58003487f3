import * as fs from 'fs';
import * as path from 'path';

/**
 * Write a file so that readers see either the old content or the complete new content, never a
 * half-written file: write beside it under a temporary name, fsync, then rename.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}

/**
 * Build a directory under a temporary name and rename it into place when `fill` succeeds, so a
 * failed save leaves nothing behind. An existing directory at `dir` is replaced.
 */
export function writeDirAtomic(dir: string, fill: (tmpDir: string) => void): void {
  const abs = path.resolve(dir);
  const tmp = `${abs}.${process.pid}.${Date.now()}.tmp`;
  fs.mkdirSync(tmp, { recursive: true });
  try {
    fill(tmp);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  if (fs.existsSync(abs)) fs.rmSync(abs, { recursive: true, force: true });
  fs.renameSync(tmp, abs);
}
