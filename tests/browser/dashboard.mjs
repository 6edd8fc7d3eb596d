// The dashboard in a real browser: Debian's Chromium, headless, driven by
// playwright-core. A pidwatch monitor serves two `sleep` workers on a
// loopback port; the page must load, list them live, and a click on a
// worker's restart button (answering the confirmation dialog the trust
// rules raise for the page, an untrusted caller) must restart it: a new
// PID, counted by the status API, and never two of it.
//
// Usage: node dashboard.mjs <path to the pidwatch binary>
// Exit 0 when every check passed; 1 with what failed. Everything it starts
// (the monitor, its workers, the browser) is stopped at the end.

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import { chromium } from "playwright-core";

const binary = process.argv[2];
if (!binary) {
  console.error("usage: node dashboard.mjs <pidwatch binary>");
  process.exit(2);
}
const LIMIT_MS = 20000;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

async function waitFor(what, check) {
  const deadline = Date.now() + LIMIT_MS;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (_) {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// The live processes whose command line is exactly `needle`.
function processes(needle) {
  const out = execFileSync("ps", ["-eo", "pid=,stat=,args="]).toString();
  return out
    .split("\n")
    .map((l) => l.trim().match(/^(\d+)\s+(\S+)\s+(.*)$/))
    .filter((m) => m && !m[2].startsWith("Z") && m[3] === needle)
    .map((m) => Number(m[1]));
}

const dir = mkdtempSync(join(tmpdir(), "pidwatch-dashboard-"));
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
writeFileSync(
  join(dir, "pidwatch.toml"),
  'state_dir = "state"\n' +
    '[worker.alpha]\ncommand = ["sleep", "1090"]\n' +
    '[worker.beta]\ncommand = ["sleep", "1091"]\n',
);
const monitor = spawn(
  binary,
  ["--config", join(dir, "pidwatch.toml"), "run", "--listen", `127.0.0.1:${port}`],
  { cwd: dir, stdio: ["ignore", "pipe", "pipe"], detached: true },
);
let output = "";
monitor.stdout.on("data", (d) => (output += d));
monitor.stderr.on("data", (d) => (output += d));

let browser;
let failed = null;
try {
  const status = async () => (await fetch(`${base}/workers/status`)).json();
  const pidOf = async (id) => (await status()).workers.find((w) => w.id === id)?.pid;
  const first = await waitFor("alpha running", async () => {
    const pid = await pidOf("alpha");
    return pid && (await status()).workers.every((w) => w.verdict === "running") && pid;
  });

  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const page = await browser.newPage();
  const dialogs = [];
  page.on("dialog", async (dialog) => {
    dialogs.push(dialog.message());
    await dialog.accept();
  });
  await page.goto(`${base}/`);
  // The page lists both workers, running.
  await page.waitForSelector('tr[data-worker="alpha"] td.running', { timeout: LIMIT_MS });
  await page.waitForSelector('tr[data-worker="beta"] td.running', { timeout: LIMIT_MS });
  const title = await page.textContent("#scope");
  if (!title.includes("2 worker(s)")) throw new Error(`scope line: ${title}`);

  // A click restarts alpha, after the confirmation the trust rules ask.
  await page.click('tr[data-worker="alpha"] button[data-path="/workers/restart/alpha"]');
  const second = await waitFor("alpha restarted", async () => {
    const pid = await pidOf("alpha");
    return pid && pid !== first && pid;
  });
  if (dialogs.length !== 1 || !dialogs[0].includes("/workers/restart/alpha")) {
    throw new Error(`expected one confirmation dialog, got ${JSON.stringify(dialogs)}`);
  }
  const alive = processes("sleep 1090");
  if (alive.length !== 1 || alive[0] !== second) {
    throw new Error(`expected exactly alpha's new process ${second}, found ${alive}`);
  }
  // The page shows the new PID, live.
  await page.waitForFunction(
    (pid) => document.querySelector('tr[data-worker="alpha"]')?.children[2]?.textContent === String(pid),
    second,
    { timeout: LIMIT_MS },
  );
  // beta was not touched.
  if (processes("sleep 1091").length !== 1) throw new Error("beta changed");
  const audit = readFileSync(join(dir, "state", "logs", "audit.jsonl"), "utf8");
  if (!audit.includes('"trusted_by":"confirmation"')) throw new Error(`audit: ${audit}`);
  console.log(`dashboard: listed 2 workers; a click restarted alpha (PID ${first} -> ${second}) after 1 confirmation`);
} catch (e) {
  failed = e;
} finally {
  if (browser) await browser.close().catch(() => {});
  try {
    process.kill(-monitor.pid, "SIGTERM");
  } catch (_) {
    // gone already
  }
  await new Promise((r) => setTimeout(r, 200));
  for (const pid of [...processes("sleep 1090"), ...processes("sleep 1091")]) {
    try {
      process.kill(pid, "SIGKILL");
    } catch (_) {
      // gone already
    }
  }
  rmSync(dir, { recursive: true, force: true });
}
if (failed) {
  console.error(`dashboard check failed: ${failed.message}\n--- monitor output:\n${output}`);
  process.exit(1);
}
