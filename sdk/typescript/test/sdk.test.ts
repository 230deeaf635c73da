/** The TypeScript SDK against a real `agentflow up` (started by tests/e2e/test_typescript_sdk.py, which
 * passes AF_URL, AF_KEY and AF_DEADLETTERS): commands with idempotent retries and If-Match,
 * read-your-writes (a position, or a session), as_of, query, search, typed errors, timeouts, dead letters,
 * and the SSE stream with resume and reconnect. Values are checked against what the test wrote. */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  AgentFlowClient, NO_RETRIES, NotFound, TimeoutError, TransportError, Unauthorized, Unprocessable,
  VersionConflict, type StreamEvent,
} from "../src/index.js";
import { LosesAnswers, PATIENT, TcpProxy, client, env } from "./helpers.js";

const af = client();
let serial = 0;

/** A fresh product (price 19.99 CHF, 1000 in stock) and user. */
async function shop(api: AgentFlowClient = af): Promise<{ pid: string; user: string }> {
  serial += 1;
  const product = await api.registerProduct({ name: `TS widget ${process.pid}-${serial}`, category: "ts-sdk",
                                              price: "19.99", currency: "CHF" });
  await api.restockProduct(product.product_id, { quantity: 1000 });
  const user = await api.registerUser({ name: `TS buyer ${serial}`, region: "EU" });
  return { pid: product.product_id, user: user.user_id };
}

const lines = (pid: string, quantity = 2) => [{ product_id: pid, quantity, unit_price: "19.99" }];

test("a command whose answer was lost is retried with its key and applied once", async () => {
  const { pid, user } = await shop();
  const lossy = new LosesAnswers(1);
  const api = client({ fetch: lossy.fetch, sleep: async () => undefined });
  const ack = await api.placeOrder({ user_id: user, lines: lines(pid), currency: "CHF" });
  assert.equal(lossy.posts.length, 2); // the lost answer, then the retry with the same key
  const keys = new Set(lossy.posts.map((h) => h.get("idempotency-key")));
  assert.equal(keys.size, 1);
  assert.match([...keys][0] ?? "", /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const timeline = await af.timeline(ack.order_id);
  assert.equal(timeline.events.filter((e) => e.event_type === "OrderPlaced").length, 1); // applied once
  assert.ok(timeline.last_position <= ack.position);
  assert.equal(ack.stream_version, 1);

  lossy.lose = 1; // without a key the command is not sent again: the caller learns it is unknown
  await assert.rejects(api.registerUser({ name: "No key", idempotencyKey: false }), TransportError);
  assert.equal(lossy.posts.length, 3);
  assert.equal(lossy.posts[2]?.get("idempotency-key"), null);

  const first = await af.confirmOrder(ack.order_id, { idempotencyKey: `confirm-${ack.order_id}` });
  const again = await af.confirmOrder(ack.order_id, { idempotencyKey: `confirm-${ack.order_id}` });
  assert.deepEqual(again, first); // the original answer, no new event
  const after = await af.timeline(ack.order_id);
  assert.equal(after.events.filter((e) => e.event_type === "OrderConfirmed").length, 1);
});

test("If-Match: a stale version is a VersionConflict, the current one applies", async () => {
  const { pid, user } = await shop();
  const ack = await af.placeOrder({ user_id: user, lines: lines(pid), currency: "CHF", channel: "ts-sdk" });
  const err = await af.confirmOrder(ack.order_id, { ifMatch: ack.stream_version + 5 }).catch((e: unknown) => e);
  assert.ok(err instanceof VersionConflict);
  assert.equal(err.status, 409);
  assert.equal(err.code, "version_conflict");
  assert.ok(err.requestId);
  const confirmed = await af.confirmOrder(ack.order_id, { ifMatch: ack.stream_version });
  assert.equal(confirmed.stream_version, ack.stream_version + 1);
});

test("reads see the caller's writes: min_position, a session, as_of", async () => {
  const { pid, user } = await shop();
  const ack = await af.placeOrder({ user_id: user, lines: lines(pid, 3), currency: "CHF" });
  assert.equal(af.position, Math.max(af.position, ack.position));
  const order = await af.entity("order", ack.order_id, { min_position: ack.position });
  assert.ok(order.meta.as_of_position >= ack.position);
  assert.equal(order.data.status, "pending");
  assert.equal(order.data.total_amount, 59.97); // 3 x 19.99
  assert.equal(order.data.currency, "CHF");

  const before = await af.metric("revenue", { window: "1h", currency: "CHF", min_position: ack.position });
  const session = af.session();
  const placed = await session.placeOrder({ user_id: user, lines: lines(pid, 2), currency: "CHF" });
  const confirmed = await session.confirmOrder(placed.order_id);
  assert.ok(session.position === confirmed.position && confirmed.position > placed.position);
  const seen = await session.entity("order", placed.order_id); // min_position = the session's last write
  assert.equal(seen.data.status, "confirmed");
  assert.ok(seen.meta.as_of_position >= confirmed.position);
  const buyer = await session.entity("user", user);
  assert.equal(buyer.data.total_orders, 2);
  assert.ok(Math.abs(Number(buyer.data.total_spent) - (59.97 + 39.98)) < 1e-6, JSON.stringify(buyer.data));
  const revenue = await session.metric("revenue", { window: "1h", currency: "CHF" });
  assert.ok(revenue.meta.as_of_position >= confirmed.position);
  assert.ok(Math.abs(revenue.value - before.value - 39.98) < 1e-6, `${before.value} -> ${revenue.value}`);
  assert.equal(revenue.metric_name, "revenue");

  // as_of: the order as it stood when it was placed (the instant the store recorded its first event)
  const timeline = await af.timeline(placed.order_id);
  const placedAt = timeline.events.find((e) => e.event_type === "OrderPlaced")?.recorded_at;
  assert.ok(placedAt);
  const then = await af.entity("order", placed.order_id, { as_of: placedAt });
  assert.equal(then.data.status, "pending");
  assert.equal(then.meta.is_historical, true);
  assert.equal(then.data.total_amount, 39.98);
  const revenueThen = await af.metric("revenue", { window: "1h", currency: "CHF", as_of: placedAt });
  assert.equal(revenueThen.meta.is_historical, true);
});

test("query, search, catalog and health read what the test wrote", async () => {
  const { pid, user } = await shop();
  const channel = `ts-${process.pid}`;
  let last = 0;
  for (let i = 0; i < 3; i++) {
    last = (await af.placeOrder({ user_id: user, lines: lines(pid, 1), currency: "CHF", channel })).position;
  }
  const result = await af.query({ metrics: ["order_count"], dimensions: ["channel"], window: "1h",
                                  filters: { channel }, min_position: last });
  const row = result.rows.find((r) => r.channel === channel);
  assert.ok(row, JSON.stringify(result.rows));
  assert.equal(row.order_count, 3);

  const found = await af.search(pid, { min_position: last, limit: 5 });
  assert.ok(found.results.some((h) => h.id === pid && h.entity_type === "product"), JSON.stringify(found.results));
  const catalog = await af.catalog();
  assert.ok(catalog.metrics.revenue?.available_windows.includes("1h"));
  assert.ok(catalog.entities.order);
  assert.ok(af.rateLimit && af.rateLimit.limit > 0 && af.rateLimit.remaining < af.rateLimit.limit);
  const health = await af.health();
  assert.ok(["healthy", "degraded", "unhealthy"].includes(health.status));
  assert.ok(health.components.some((c) => c.name === "freshness"));
});

test("errors carry code, details and request id; a timeout is a TimeoutError", async () => {
  const nf = await af.metric("no_such_metric", { window: "1h" }).catch((e: unknown) => e);
  assert.ok(nf instanceof NotFound);
  assert.equal(nf.code, "unknown_metric");
  assert.ok((nf.details as { available: string[] }).available.includes("revenue"));
  assert.ok(nf.requestId && nf.correlationId);
  const bad = await af.metric("revenue", { window: "2m" }).catch((e: unknown) => e);
  assert.ok(bad instanceof Unprocessable);
  assert.equal(bad.code, "invalid_window");
  const stranger = new AgentFlowClient({ baseUrl: env("AF_URL"), apiKey: "not-a-key" });
  const denied = await stranger.catalog().catch((e: unknown) => e);
  assert.ok(denied instanceof Unauthorized);
  assert.equal(denied.status, 401);
  assert.equal(denied.code, "unauthorized");
  const missing = await af.entity("order", "ORD-NOPE-0000").catch((e: unknown) => e);
  assert.ok(missing instanceof NotFound && missing.code === "entity_not_found");
  // the server holds a read for a position not yet written (up to its bound): past our timeout
  const hasty = client({ timeoutMs: 300, retry: NO_RETRIES });
  await assert.rejects(hasty.metric("revenue", { window: "1h", min_position: 1e12 }), TimeoutError);
  // the caller's own AbortSignal: its reason, no retry
  const abort = new AbortController();
  const pending = af.metric("revenue", { window: "1h", min_position: 1e12, signal: abort.signal });
  abort.abort(new Error("caller gave up"));
  await assert.rejects(pending, /caller gave up/);
});

test("dead letters: listed, shown, replayed with corrected data, dismissed", async () => {
  const seeded = JSON.parse(env("AF_DEADLETTERS")) as { position: number; order_id: string; total: number }[];
  const [mismatch, currency] = seeded;
  assert.ok(mismatch && currency);
  const failed = await af.deadletters({ status: "failed", event_type: "OrderPlaced", limit: 100 });
  const byPosition = new Map(failed.data.map((d) => [d.position, d]));
  const letter = byPosition.get(mismatch.position);
  const other = byPosition.get(currency.position);
  assert.ok(letter?.id != null && other?.id != null, JSON.stringify(failed.data));
  assert.equal(letter.reason_class, "total_mismatch");
  assert.equal(other.reason_class, "currency");

  const shown = await af.deadletter(letter.id);
  const data = (shown.record as { data: Record<string, unknown> }).data;
  assert.equal(data.order_id, mismatch.order_id);
  const corrected = { ...data, total_minor: Math.round(mismatch.total * 100) };
  const replayed = await af.replayDeadletter(letter.id, corrected);
  assert.equal(replayed.status, "replayed");
  assert.equal(replayed.appended, true);
  assert.ok(replayed.position);
  const order = await af.entity("order", mismatch.order_id, { min_position: replayed.position });
  assert.equal(order.data.total_amount, mismatch.total);

  const dismissed = await af.dismissDeadletter(other.id, "ts test data");
  assert.equal(dismissed.status, "dismissed");
  assert.equal(dismissed.status_note, "ts test data");
  const listed = await af.deadletters({ status: "dismissed" });
  assert.ok(listed.data.some((d) => d.id === other.id));
});

test("the event stream resumes after an id and reconnects after a dropped connection", async () => {
  const { pid, user } = await shop();
  const start = (await af.restockProduct(pid, { quantity: 1 })).position;
  const first = await af.placeOrder({ user_id: user, lines: lines(pid, 1), currency: "CHF" });
  const proxy = await TcpProxy.start(env("AF_URL"));
  let stream;
  const got: StreamEvent[] = [];
  let second;
  try {
    const viaProxy = client({ baseUrl: proxy.base });
    stream = viaProxy.streamEvents({ entityType: "order", lastEventId: start, heartbeat: 1 });
    const events = stream[Symbol.asyncIterator]();
    const one = await events.next(); // replayed from the store: after `start`
    assert.ok(!one.done);
    got.push(one.value);
    // an order's ack carries the position of the command's last event (its stock reservation)
    assert.equal(one.value.event, "OrderPlaced");
    assert.equal(one.value.data.entity_id, first.order_id);
    assert.ok(start < one.value.id && one.value.id < first.position);
    proxy.drop();
    second = await af.placeOrder({ user_id: user, lines: lines(pid, 1), currency: "CHF" });
    const two = await events.next(); // after a reconnect with Last-Event-ID: nothing twice, nothing missed
    assert.ok(!two.done);
    got.push(two.value);
    await events.return?.();
  } finally {
    stream?.close();
    await proxy.close();
  }
  const [, next] = got;
  assert.ok(next && second);
  assert.equal(next.data.entity_id, second.order_id);
  assert.ok(first.position < next.id && next.id < second.position);
  assert.ok(stream.reconnects >= 1 && proxy.accepted >= 2);
  assert.equal(stream.lastEventId, next.id);

  const bounded: StreamEvent[] = [];
  for await (const event of af.streamEvents({ entityType: "order", lastEventId: start, maxEvents: 2 })) {
    bounded.push(event);
  }
  assert.deepEqual(bounded.map((e) => e.data.entity_id), [first.order_id, second.order_id]);
});

test("every command method reaches its endpoint", async () => {
  const { pid, user } = await shop();
  assert.equal((await af.changePrice(pid, { price: "21.00" })).product_id, pid);
  assert.equal((await af.adjustStock(pid, { delta: -1, reason: "damage" })).product_id, pid);
  const hold = `ORD-TS-HOLD-${process.pid}`;
  const held = await af.reserveStock(pid, { order_id: hold, quantity: 2 });
  assert.equal((await af.releaseStock(pid, { order_id: hold, quantity: 2 })).stream_version, held.stream_version + 1);
  const product = await af.entity("product", pid, { min_position: af.position });
  assert.equal(product.data.price, 21);
  assert.equal(product.data.stock_quantity, 1000 - 1);

  const orderId = `ORD-TS-${process.pid}`;
  const order = await af.placeOrder({ order_id: orderId, user_id: user, lines: lines(pid, 1), currency: "CHF" });
  const payment = await af.initiatePayment({ order_id: orderId, amount: "19.99", currency: "CHF" });
  assert.equal((await af.completePayment(payment.payment_id)).payment_id, payment.payment_id);
  assert.equal((await af.confirmOrder(orderId)).order_id, orderId);
  await af.shipOrder(orderId);
  const delivered = await af.deliverOrder(orderId);
  const refunded = await af.refundPayment(payment.payment_id, { amount: "1.00" });
  assert.ok(refunded.position > delivered.position && order.order_id === orderId);
  const other = await af.placeOrder({ user_id: user, lines: lines(pid, 1), currency: "CHF" });
  const failing = await af.initiatePayment({ order_id: other.order_id, amount: "19.99", currency: "CHF", method: "wallet" });
  assert.equal((await af.failPayment(failing.payment_id, { reason: "declined" })).stream_version, failing.stream_version + 1);
  assert.equal((await af.cancelOrder(other.order_id, { reason: "changed my mind" })).order_id, other.order_id);
  const sessionId = `SES-TS-${process.pid}`;
  const clicks = await af.recordSessionEvent(sessionId, { type: "page_view", page_url: "/p", user_id: user });
  assert.equal(clicks.session_id, sessionId);
  assert.ok(clicks.stream_version >= 1);
  const final = af.session();
  const last = await final.refundOrder(orderId, { amount: "2.00", restock: false });
  const refundedOrder = await final.entity("order", orderId);
  assert.ok(refundedOrder.meta.as_of_position >= last.position);
  assert.equal(refundedOrder.data.status, "delivered"); // partly refunded: still delivered
  assert.equal(refundedOrder.data.refunded_amount, 3, JSON.stringify(refundedOrder.data)); // 1.00 + 2.00
  const cancelled = await final.entity("order", other.order_id);
  assert.equal(cancelled.data.status, "cancelled");
});

