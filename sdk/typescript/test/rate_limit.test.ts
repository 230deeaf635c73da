/** The SDK under the API's rate limits (a server of its own with small budgets, AF_LIMITED_URL): a 429
 * `rate_limited` is a typed error carrying Retry-After; the retry policy waits exactly that long and then
 * succeeds; a command without an Idempotency-Key is never sent again. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { AgentFlowClient, NO_RETRIES, RateLimited, type ClientOptions } from "../src/index.js";
import { Waits, env } from "./helpers.js";

const READ_RPM = Number(env("AF_LIMITED_READ_RPM"));
const WRITE_RPM = Number(env("AF_LIMITED_WRITE_RPM"));
const limited = (options: ClientOptions = {}) =>
  new AgentFlowClient({ baseUrl: env("AF_LIMITED_URL"), apiKey: env("AF_LIMITED_KEY"), ...options });

async function exhaustReads(): Promise<RateLimited> {
  const api = limited({ retry: NO_RETRIES });
  for (let i = 0; i < READ_RPM * 3; i++) {
    try {
      await api.catalog();
    } catch (err) {
      if (err instanceof RateLimited) return err;
      throw err;
    }
  }
  throw new Error("the read budget never ran out");
}

test("a 429 is a typed error, then waited out as Retry-After says", async () => {
  const refused = await exhaustReads();
  assert.equal(refused.status, 429);
  assert.equal(refused.code, "rate_limited");
  assert.ok(refused.requestId);
  assert.ok(refused.retryAfter !== undefined && refused.retryAfter >= 1);
  const waits = new Waits();
  const api = limited({ sleep: waits.sleep, retry: { maxRetries: 3 } });
  const catalog = await api.catalog();
  assert.ok(catalog.metrics.revenue?.unit);
  assert.equal(api.rateLimit?.limit, READ_RPM); // X-RateLimit-* of the answer
  assert.ok(api.rateLimit.remaining >= 0 && api.rateLimit.reset > Date.now() / 1000 - 1);
  assert.ok(waits.seconds.length > 0);
  assert.ok(waits.seconds.every((s) => s >= 1 && Number.isInteger(s)), String(waits.seconds)); // Retry-After, not backoff
});

test("commands are retried only with their key", async () => {
  const waits = new Waits(false);
  const api = limited({ retry: { maxRetries: 1 }, sleep: waits.sleep });
  await assert.rejects(async () => {
    for (let i = 0; i < WRITE_RPM * 3; i++) await api.registerUser({ idempotencyKey: false });
  }, RateLimited);
  assert.deepEqual(waits.seconds, []); // refused without a key: thrown at once, never sent again
  const caught = await api.registerUser().catch((e: unknown) => e);
  assert.ok(caught instanceof RateLimited);
  assert.deepEqual(waits.seconds, [caught.retryAfter]); // with its key: one wait of Retry-After, then the last try
});
