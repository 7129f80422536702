// End to end: the own-memory example (examples/own-memory/) in Debian's headless Chromium, driven
// by playwright-core: ioasid inside a region of a separately compiled AssemblyScript machine's
// memory, in a browser. The page runs the same demo.mjs as `npm run demo:own-memory` and must pass
// every check. The machine is compiled first when it is not built yet.
//
// No Chromium: fails under CI (process.env.CI), skips with a message otherwise.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildMachine, machineWasm } from '../../examples/own-memory/build.mjs';
import { startServer } from '../../scripts/serve-web.mjs';
import { CHROMIUM_ARGS, findChromium } from './chromium';

const executablePath = findChromium();
const built = existsSync(fileURLToPath(new URL('../../dist/index.js', import.meta.url)));

const MISSING = 'Chromium not found (set CHROMIUM_BIN or install it: apt-get install -y chromium)';
if (!executablePath) {
  if (process.env.CI) test('Chromium is installed for the own-memory browser test', () => expect.fail(MISSING));
  else console.warn(`skipping the own-memory browser test: ${MISSING}`);
}

describe.skipIf(!executablePath || !built)('the own-memory example in headless Chromium', () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  let browser: Browser;

  beforeAll(async () => {
    if (!existsSync(machineWasm)) buildMachine();
    server = await startServer({ port: 0, host: '127.0.0.1' });
    browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS, headless: true });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  test('ioasid in the machine\'s memory: DMA, A/D bits and no growth, every check passes', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(new URL('../own-memory/', server.url).href);
    await page.waitForSelector('#out:not([data-result="running"])', { timeout: 15_000 });
    const text = (await page.locator('#out').textContent()) ?? '';
    expect(await page.locator('#out').getAttribute('data-result'), text).toBe('pass');
    expect(text).toContain('PASS: all 5 checks');
    expect(errors).toEqual([]);
  }, 30_000);
});
