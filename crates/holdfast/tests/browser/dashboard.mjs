// Drives the admin dashboard in headless Chromium (playwright-core, Debian's `chromium`):
// the page loads, shows the session a test client created, and its Discard button removes it.
// Usage: node dashboard.mjs URL CLIENT_ID
// Environment: CHROMIUM (browser binary), PLAYWRIGHT_DIR (a folder whose node_modules holds
// playwright-core), SCREENSHOT (optional PNG path).
import { createRequire } from "node:module";
import path from "node:path";

const [url, clientId] = process.argv.slice(2);
const require = createRequire(path.join(process.env.PLAYWRIGHT_DIR, "package.json"));
const { chromium } = require("playwright-core");

function fail(message) {
  console.error("FAIL: " + message);
  process.exit(1);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  timeout: 30000,
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("dialog", (d) => d.accept());
  await page.goto(url, { waitUntil: "load", timeout: 15000 });
  if ((await page.title()) !== "Holdfast") fail("title is " + (await page.title()));

  const row = page.locator(`#sessions-table tbody tr[data-client-id="${clientId}"]`);
  await row.waitFor({ state: "visible", timeout: 15000 });
  console.log("row: " + (await row.innerText()).replace(/\s+/g, " "));
  const connections = await page.locator("#connections").innerText();
  console.log("connections: " + connections);
  if (connections !== "1") fail("connections shows " + connections);
  const queued = await row.locator("td").nth(4).innerText();
  if (queued !== "1") fail("queued shows " + queued);
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });

  await row.locator("button.discard").click();
  await row.waitFor({ state: "detached", timeout: 15000 });
  const status = await page.locator("#status").innerText();
  console.log("status: " + status);
  if (!status.includes("discarded")) fail("status shows " + status);
  if (errors.length) fail("page errors: " + errors.join("; "));
  console.log("OK");
} catch (e) {
  fail(e.stack || String(e));
} finally {
  await browser.close();
}
