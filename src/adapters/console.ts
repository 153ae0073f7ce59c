/**
 * One line to the instance's console. EC2 posts the console at termination and keeps it for at least
 * an hour (`aws ec2 get-console-output`), so a line written here outlives an instance the launch gate
 * abandoned — and its journal with it.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

export const CONSOLE_PATH = '/dev/console';

/** Best effort: a console that is missing or busy costs the line, never the caller. */
export async function writeConsoleLine(line: string, path = CONSOLE_PATH): Promise<boolean> {
  try {
    // Not a controlling terminal; never wait on a stuck console; never create a file in its place.
    const fh = await open(path, constants.O_WRONLY | constants.O_NOCTTY | constants.O_NONBLOCK | constants.O_APPEND);
    try {
      await fh.write(`${line.replace(/[\r\n]+/g, ' ')}\r\n`);
    } finally {
      await fh.close();
    }
    return true;
  } catch {
    return false;
  }
}
