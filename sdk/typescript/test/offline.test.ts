/** What needs no server: the committed src/schema.d.ts is what openapi-typescript makes of
 * docs/openapi.json today (so a schema change without `npm run generate` fails), SSE framing and
 * Retry-After parsing. */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { DEFAULT_RETRY, SseParser, parseRetryAfter, retryDelay } from "../src/index.js";

const PACKAGE = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

test("src/schema.d.ts is generated from docs/openapi.json (npm run generate)", () => {
  const out = mkdtempSync(join(tmpdir(), "agentflow-schema-"));
  try {
    const cli = join(PACKAGE, "node_modules", "openapi-typescript", "bin", "cli.js");
    execFileSync(process.execPath, [cli, join(PACKAGE, "..", "..", "docs", "openapi.json"), "-o",
                                    join(out, "schema.d.ts")], { stdio: "pipe" });
    const fresh = readFileSync(join(out, "schema.d.ts"), "utf8");
    const committed = readFileSync(join(PACKAGE, "src", "schema.d.ts"), "utf8");
    assert.ok(fresh === committed, "src/schema.d.ts differs from docs/openapi.json: run `npm run generate` in sdk/typescript");
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test("SSE framing: ids, events, multi-line data, comments, retry, split chunks and CRLF", () => {
  const parser = new SseParser(7);
  assert.deepEqual(parser.push("retry: 1500\n: stream open\n\nid: 8\nevent: OrderPlaced\nda"), []);
  const [first] = parser.push('ta: {"a":\ndata: 1}\n\n');
  assert.deepEqual(first, { id: 8, event: "OrderPlaced", data: { a: 1 } });
  assert.equal(parser.retryMs, 1500);
  assert.deepEqual(parser.push('id: 9\r\ndata: {"b":2}\r'), []);
  assert.deepEqual(parser.push("\n\r\n"), [{ id: 9, event: "message", data: { b: 2 } }]);
  assert.equal(parser.lastEventId, 9);
  parser.push("id: 10\ndata: {}\n"); // cut before its blank line: dropped, resumed after 9
  parser.reset();
  assert.equal(parser.lastEventId, 9);
});

test("Retry-After: seconds or an HTTP date; the policy waits it, or gives up past its cap", () => {
  assert.equal(parseRetryAfter("3"), 3);
  assert.equal(parseRetryAfter(null), undefined);
  const soon = parseRetryAfter(new Date(Date.now() + 10_000).toUTCString());
  assert.ok(soon !== undefined && soon > 8 && soon <= 10);
  assert.equal(retryDelay(DEFAULT_RETRY, 1, 3), 3);
  assert.equal(retryDelay(DEFAULT_RETRY, 1, 500), undefined);
  assert.equal(retryDelay(DEFAULT_RETRY, 5, 1), undefined);
  const backoff = retryDelay(DEFAULT_RETRY, 3, undefined);
  assert.ok(backoff !== undefined && backoff >= 0.5 && backoff <= 1);
});
