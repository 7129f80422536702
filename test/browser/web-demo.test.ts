// End to end: the browser demo (examples/web/, served by scripts/serve-web.mjs on an ephemeral
// loopback port) in Debian's headless Chromium, driven by playwright-core. Once cross-origin
// isolated (worker translators over shared memory) and once without COOP/COEP (single-threaded,
// the reason shown). Each run waits for live numbers, checks what the page shows, then stops the
// machine and expects every check of the demo to pass. Screenshots go to build/screenshots/.
//
// No Chromium: fails under CI (process.env.CI), skips with a message otherwise.
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startServer } from '../../scripts/serve-web.mjs';
import { CHROMIUM_ARGS, findChromium } from './chromium';

const executablePath = findChromium();
const built = existsSync(fileURLToPath(new URL('../../dist/index.js', import.meta.url)));
const screenshots = fileURLToPath(new URL('../../build/screenshots/', import.meta.url));
const LIVE_TIMEOUT_MS = 10_000;
const DEVICES = ['accel', 'nicA', 'nicB', 'disk', 'rogue'];

const MISSING = 'Chromium not found (set CHROMIUM_BIN or install it: apt-get install -y chromium)';
if (!executablePath) {
  if (process.env.CI) test('Chromium is installed for the browser e2e test', () => expect.fail(MISSING));
  else console.warn(`skipping the browser e2e test: ${MISSING}`);
}

type Server = Awaited<ReturnType<typeof startServer>>;

/** Opens the demo and waits until the engine and every device report translations. */
async function openDemo(browser: Browser, url: string): Promise<{ page: Page; errors: string[] }> {
  const page = await (await browser.newContext({ viewport: { width: 1300, height: 1100 } })).newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(url);
  await page.waitForFunction((names) => {
    const rate = Number(document.querySelector<HTMLElement>('#rate')?.dataset.value);
    const busy = names.every((n) => Number(document.querySelector<HTMLElement>(`.device[data-name="${n}"]`)?.dataset.translations) > 0);
    return rate > 0 && busy;
  }, DEVICES, { timeout: LIVE_TIMEOUT_MS });
  return { page, errors };
}

const mode = (page: Page) => page.locator('#mode').evaluate((el: HTMLElement) => ({ ...el.dataset, text: el.textContent ?? '' }));

/** Stops the machine from the page and expects the demo's checks to have passed. */
async function stopAndCheck(page: Page, name: string): Promise<void> {
  await page.click('#stop');
  await page.waitForSelector('#checks[data-passed]', { timeout: LIVE_TIMEOUT_MS });
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: `${screenshots}${name}.png`, fullPage: true });
  const failed = await page.locator('#checks li[data-pass="false"]').allTextContents();
  expect(failed, 'failed checks').toEqual([]);
  expect(await page.locator('#checks').getAttribute('data-passed')).toBe('true');
  expect(await page.locator('#checks li[data-pass="true"]').count()).toBeGreaterThanOrEqual(8);
}

describe.skipIf(!executablePath || !built)('the browser demo in headless Chromium', () => {
  let server: Server;
  let browser: Browser;

  beforeAll(async () => {
    server = await startServer({ port: 0, host: '127.0.0.1' });
    browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS, headless: true });
  }, 20_000);
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  test('with COOP/COEP: worker translators, live FDs, attachments, rates and rogue faults', async () => {
    const { page, errors } = await openDemo(browser, server.url);
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    const m = await mode(page);
    expect(m).toMatchObject({ isolated: 'true', shared: 'true', workers: String(DEVICES.length) });
    expect(m.text).toContain(`${DEVICES.length} worker translators`);
    expect(Number(await page.locator('#rate').getAttribute('data-value'))).toBeGreaterThan(0);
    expect(Number(await page.locator('#table-pages').getAttribute('data-value'))).toBeGreaterThan(0);

    // Each VM's FD with its own objects; every HWPT names an IOAS of the same FD.
    for (const vm of ['A', 'B']) {
      const fd = page.locator(`.fd[data-vm="${vm}"]`);
      const types = new Set(await fd.locator('.object').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.type)));
      expect([...types].sort()).toEqual(['device', 'hwpt-paging', 'ioas']);
      const ioasIds = await fd.locator('.object[data-type="ioas"]').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.id));
      const mirrored = await fd.locator('.object[data-type="hwpt-paging"]').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.ioas));
      for (const id of mirrored) expect(ioasIds).toContain(id);
    }
    await expect.poll(() => page.locator('.fd[data-vm="A"] .pasids').textContent()).toBe('1, 2');
    const accel = await page.locator('.device[data-name="accel"] .attachments').textContent();
    expect(accel).toMatch(/^RID → HWPT \d+, PASID 1 → HWPT \d+, PASID 2 → HWPT \d+$/);
    expect(await page.locator('.device[data-name="nicB"] .attachments').textContent()).toMatch(/^RID → HWPT \d+$/);

    // The rogue: refused at authorization, and its DMA at VM A faults (per device and engine-wide).
    const errnos = await page.locator('#authorization li').evaluateAll((lis) => lis.map((li) => (li as HTMLElement).dataset.errno));
    expect(errnos).toEqual(expect.arrayContaining(['EPERM', 'ENOENT']));
    const rogueFaults = JSON.parse((await page.locator('.device[data-name="rogue"] [data-faults]').getAttribute('data-faults'))!);
    expect(rogueFaults['not-attached']).toBeGreaterThan(0);
    expect(rogueFaults['not-present']).toBeGreaterThan(0);
    expect(Number(await page.locator('#faults [data-reason="not-attached"]').getAttribute('data-count'))).toBeGreaterThan(0);
    // Those faults are provoked on purpose: shown as expected, with the reason, not as failures.
    const rogueCell = page.locator('.device[data-name="rogue"] [data-faults]');
    expect(await rogueCell.getAttribute('class')).toBe('expected');
    expect(await rogueCell.textContent()).toContain("expected at A's PASID: the rogue DMAs with VM A's PASID");
    expect(await page.locator('#engine .faults .note').textContent()).toContain('hot-plug RX pool on purpose');

    await stopAndCheck(page, 'web-demo-isolated');
    expect(errors).toEqual([]);
  }, 30_000);

  test('without COOP/COEP: runs single-threaded and shows why', async () => {
    const { page, errors } = await openDemo(browser, server.noIsolationUrl);
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(false);
    const m = await mode(page);
    expect(m).toMatchObject({ isolated: 'false', shared: 'false', workers: '0' });
    expect(m.text).toContain('single-threaded: the page is not cross-origin isolated (serve it with COOP/COEP headers)');
    expect(await page.locator('.fd').count()).toBe(2);
    await stopAndCheck(page, 'web-demo-single-threaded');
    expect(errors).toEqual([]);
  }, 30_000);
});
