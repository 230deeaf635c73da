/** The client: `new AgentFlowClient({ baseUrl, apiKey })`; one method per endpoint of the Python SDK,
 * `streamEvents` tails the SSE stream, `session()` reads its own writes. Runs on the platform's `fetch`
 * (Node 18+, browsers, Deno, Bun); a timeout is an AbortController per attempt. */
import { ApiError, TimeoutError, TransportError, apiError } from "./errors.js";
import { DEFAULT_RETRY, parseRetryAfter, retryDelay, type RetryPolicy } from "./retry.js";
import { SseParser } from "./sse.js";
import type {
  Adjustment, Catalog, Consistency, DeadLetterList, DeadLetterQuery, DeadLetterReplayed, DeadLetterView,
  EntityQuery, EntityValue, HealthReport, InitiatePayment, MetricQuery, MetricValue, OrderAck, OrderTimeline,
  PaymentAck, PlaceOrder, PriceChange, ProductAck, Quantities, QueryRequest, QueryResult, Reason, Refund,
  RegisterProduct, RegisterUser, Reservation, SearchQuery, SearchResults, SessionAck, SessionEvent, StreamEvent,
  TimelineQuery, UserAck,
} from "./types.js";

export const DEFAULT_URL = "http://127.0.0.1:8000";
export const DEFAULT_TIMEOUT_MS = 30_000;
export const USER_AGENT = "agentflow-client-typescript/0.1";

export interface ClientOptions {
  baseUrl?: string;
  apiKey?: string;
  /** per attempt: no answer (headers and body) within this many ms is a TimeoutError */
  timeoutMs?: number;
  retry?: Partial<RetryPolicy>;
  headers?: Record<string, string>;
  /** the fetch to use (default: the global one) */
  fetch?: typeof fetch;
  /** how to wait `seconds` before a retry or reconnect (tests record the waits) */
  sleep?: (seconds: number) => Promise<void>;
}

export interface CallOptions {
  /** aborts the call (and its retries); the abort reason is thrown as is */
  signal?: AbortSignal;
}

export interface CommandOptions extends CallOptions {
  /** `If-Match`: the stream version the command expects (409 VersionConflict otherwise) */
  ifMatch?: number;
  /** undefined: a fresh UUID (a retry resends it); a string: yours; false: none (never sent twice) */
  idempotencyKey?: string | false;
}

/** The key's budget as the last answer's `X-RateLimit-*` headers told it. */
export interface RateLimit {
  limit: number;
  remaining: number;
  /** unix seconds by which the whole budget is back */
  reset: number;
}

type Query = Record<string, string | number | boolean | readonly string[] | null | undefined>;

/** One request: what `run` sends, retries and decodes. */
export interface Call<T> {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  path: string;
  query?: Query;
  body?: unknown;
  /** a command: retried only with its Idempotency-Key */
  command?: boolean;
  /** a read that takes min_position (a Session fills it in) */
  consistent?: boolean;
  /** safe to send again after a lost answer (default: GET) */
  read?: boolean;
  ifMatch?: number | undefined;
  idempotencyKey?: string | undefined;
  signal?: AbortSignal | undefined;
  /** phantom: the result's type */
  readonly __result?: T;
}

interface Settings {
  baseUrl: string;
  timeoutMs: number;
  retry: RetryPolicy;
  headers: Record<string, string>;
  fetch: typeof fetch;
  sleep: (seconds: number) => Promise<void>;
}

const pause = (seconds: number) => new Promise<void>((resolve) => setTimeout(resolve, seconds * 1000));
const seg = (value: string | number) => encodeURIComponent(String(value));

function rateLimitOf(headers: Headers): RateLimit | undefined {
  const [limit, remaining, reset] = ["limit", "remaining", "reset"].map((k) => headers.get(`x-ratelimit-${k}`));
  if (limit == null || remaining == null || reset == null) return undefined;
  const parsed = { limit: Number(limit), remaining: Number(remaining), reset: Number(reset) };
  return Object.values(parsed).every(Number.isInteger) ? parsed : undefined;
}

function splitCommand<T extends object>(input: T & CommandOptions): [T, CommandOptions] {
  const { ifMatch, idempotencyKey, signal, ...body } = input;
  return [body as unknown as T, { ifMatch, idempotencyKey, signal }];
}

function splitConsistency<T extends object>(input: T & Consistency & CallOptions): [T, Query, AbortSignal | undefined] {
  const { min_position, timeout_ms, allow_stale, signal, ...rest } = input;
  return [rest as unknown as T, { min_position, timeout_ms, allow_stale }, signal];
}

function command<T>(path: string, body: unknown, opts: CommandOptions = {}): Call<T> {
  const key = opts.idempotencyKey === undefined ? crypto.randomUUID() : opts.idempotencyKey || undefined;
  return { method: "POST", path, body, command: true, read: false, ifMatch: opts.ifMatch, idempotencyKey: key,
           signal: opts.signal };
}

export class AgentFlowClient {
  protected settings: Settings;
  protected readonly tracksPosition: boolean = false;
  /** the last position this client's commands wrote (a session reads after it) */
  position = 0;
  /** from the last answer that carried X-RateLimit-* */
  rateLimit: RateLimit | undefined;

  constructor(options: ClientOptions = {}) {
    const o = options;
    const headers: Record<string, string> = { "User-Agent": USER_AGENT, Accept: "application/json", ...o.headers };
    if (o.apiKey) headers["X-API-Key"] = o.apiKey;
    this.settings = {
      baseUrl: (o.baseUrl ?? DEFAULT_URL).replace(/\/+$/, ""),
      timeoutMs: o.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      retry: { ...DEFAULT_RETRY, ...o.retry },
      headers,
      fetch: o.fetch ?? globalThis.fetch.bind(globalThis),
      sleep: o.sleep ?? pause,
    };
  }

  /** @internal the settings a session shares */
  settings_(): Settings {
    return this.settings;
  }

  get baseUrl(): string {
    return this.settings.baseUrl;
  }

  /** A view of this client that remembers the last position its commands wrote and passes it as
   * `min_position` to every read that takes one. */
  session(): Session {
    return new Session(this);
  }

  url(path: string, query: Query = {}): string {
    const url = new URL(this.settings.baseUrl + path);
    for (const [name, value] of Object.entries(query)) {
      if (value === undefined || value === null) continue;
      url.searchParams.set(name, Array.isArray(value) ? value.join(",") : String(value));
    }
    return url.toString();
  }

  /** Send one call with the retry policy; its typed result or a typed error. */
  async run<T>(call: Call<T>): Promise<T> {
    const query: Query = { ...call.query };
    if (this.tracksPosition && call.consistent && query.min_position == null && this.position) {
      query.min_position = this.position;
    }
    const headers: Record<string, string> = { ...this.settings.headers };
    if (call.idempotencyKey !== undefined) headers["Idempotency-Key"] = call.idempotencyKey;
    if (call.ifMatch !== undefined) headers["If-Match"] = String(call.ifMatch);
    let body: string | undefined;
    if (call.method !== "GET") {
      body = call.body === undefined ? "" : JSON.stringify(call.body);
      headers["Content-Type"] = "application/json";
    }
    const url = this.url(call.path, query);
    const read = call.read ?? call.method === "GET";
    const retryable = !call.command || call.idempotencyKey !== undefined;
    for (let attempt = 1; ; attempt++) {
      const timeout = AbortSignal.timeout(this.settings.timeoutMs);
      const signal = call.signal ? AbortSignal.any([timeout, call.signal]) : timeout;
      let response: Response;
      let text: string;
      try {
        response = await this.settings.fetch(url, { method: call.method, headers, body, signal });
        text = await response.text();
      } catch (err) {
        if (call.signal?.aborted) throw call.signal.reason;
        // a lost answer: again only when that is safe (a read, or a command with its key)
        const wait = read || call.idempotencyKey !== undefined ? retryDelay(this.settings.retry, attempt, undefined) : undefined;
        if (wait === undefined) {
          const what = `${call.method} ${call.path}: ${err instanceof Error ? err.message : String(err)}`;
          throw timeout.aborted ? new TimeoutError(`${what} (no answer in ${this.settings.timeoutMs} ms)`, { cause: err })
                                : new TransportError(what, { cause: err });
        }
        await this.settings.sleep(wait);
        continue;
      }
      this.rateLimit = rateLimitOf(response.headers) ?? this.rateLimit;
      if (response.status < 400) {
        const result = (text ? JSON.parse(text) : undefined) as T;
        this.observe(result);
        return result;
      }
      const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
      if (this.settings.retry.statuses.has(response.status) && retryable) {
        const wait = retryDelay(this.settings.retry, attempt, retryAfter);
        if (wait !== undefined) {
          await this.settings.sleep(wait);
          continue;
        }
      }
      throw apiError(response.status, text, response.headers, retryAfter, call.method, call.path);
    }
  }

  protected observe(result: unknown): void {
    if (result && typeof result === "object") {
      const { position, stream_version } = result as { position?: unknown; stream_version?: unknown };
      if (typeof position === "number" && stream_version !== undefined) this.position = Math.max(this.position, position);
    }
  }

  /** `GET /v1/stream/events` as an async iterable of StreamEvent, resuming after `lastEventId`; a
   * dropped connection is reopened with `Last-Event-ID` (after the server's `retry` delay) unless
   * `reconnect` is false. `maxEvents` ends it after that many events. */
  streamEvents(options: StreamOptions = {}): EventStream {
    return new EventStream(this, this.settings, options);
  }

  // ---- reads ------------------------------------------------------------------------------------

  /** `GET /v1/metrics/{name}`: the metric over `window` (5m, 15m, 1h, 6h, 24h; `now` for gauges). */
  metric(name: string, options: MetricQuery & CallOptions = {}): Promise<MetricValue> {
    const { signal, ...query } = options;
    return this.run({ method: "GET", path: `/v1/metrics/${seg(name)}`, query, consistent: true, signal });
  }

  /** `GET /v1/entity/{type}/{id}`: an order, user, product or session as it is (or was `as_of`). */
  entity(entityType: string, entityId: string, options: EntityQuery & CallOptions = {}): Promise<EntityValue> {
    const { signal, ...query } = options;
    return this.run({ method: "GET", path: `/v1/entity/${seg(entityType)}/${seg(entityId)}`, query, consistent: true,
                      signal });
  }

  /** `GET /v1/entity/{type}/{id}/timeline`: the entity's events with stages and durations. */
  timeline(entityId: string, options: TimelineQuery & CallOptions & { entityType?: string } = {}): Promise<OrderTimeline> {
    const { signal, entityType = "order", ...query } = options;
    return this.run({ method: "GET", path: `/v1/entity/${seg(entityType)}/${seg(entityId)}/timeline`, query, signal });
  }

  /** `POST /v1/query`: a plain-language question, guarded SQL, or metrics by dimensions. */
  query(request: QueryRequest & Consistency & CallOptions): Promise<QueryResult> {
    const [body, query, signal] = splitConsistency(request);
    return this.run({ method: "POST", path: "/v1/query", query, body, consistent: true, read: true, signal });
  }

  /** `GET /v1/search`: entities, metrics and catalog fields matching `q`. */
  search(q: string, options: Omit<SearchQuery, "q" | "entity_types"> & { entity_types?: string[] | string } & CallOptions = {}): Promise<SearchResults> {
    const { signal, ...query } = options;
    return this.run({ method: "GET", path: "/v1/search", query: { q, ...query }, consistent: true, signal });
  }

  /** `GET /v1/catalog`: the entities, metrics and streams the API serves. */
  catalog(options: CallOptions = {}): Promise<Catalog> {
    return this.run({ method: "GET", path: "/v1/catalog", signal: options.signal });
  }

  /** `GET /v1/health` */
  health(options: CallOptions = {}): Promise<HealthReport> {
    return this.run({ method: "GET", path: "/v1/health", signal: options.signal });
  }

  /** `GET /v1/deadletter`: rejected events, newest first (one page; `next_cursor` for the next). */
  deadletters(options: DeadLetterQuery & CallOptions = {}): Promise<DeadLetterList> {
    const { signal, ...query } = options;
    return this.run({ method: "GET", path: "/v1/deadletter", query, signal });
  }

  /** `GET /v1/deadletter/{id}` */
  deadletter(letterId: number, options: CallOptions = {}): Promise<DeadLetterView> {
    return this.run({ method: "GET", path: `/v1/deadletter/${seg(letterId)}`, signal: options.signal });
  }

  /** `POST /v1/deadletter/{id}/replay`: append it again (with `data` as its corrected payload). */
  replayDeadletter(letterId: number, data?: Record<string, unknown>, options: CallOptions = {}): Promise<DeadLetterReplayed> {
    return this.run({ method: "POST", path: `/v1/deadletter/${seg(letterId)}/replay`, body: { data: data ?? null },
                      read: false, signal: options.signal });
  }

  /** `POST /v1/deadletter/{id}/dismiss` */
  dismissDeadletter(letterId: number, note?: string, options: CallOptions = {}): Promise<DeadLetterView> {
    return this.run({ method: "POST", path: `/v1/deadletter/${seg(letterId)}/dismiss`, body: { note: note ?? null },
                      read: false, signal: options.signal });
  }

  // ---- commands (each takes ifMatch and idempotencyKey) -------------------------------------------

  registerUser(input: RegisterUser & CommandOptions = {}): Promise<UserAck> {
    const [body, opts] = splitCommand(input);
    return this.run(command("/v1/users", body, opts));
  }

  registerProduct(input: RegisterProduct & CommandOptions): Promise<ProductAck> {
    const [body, opts] = splitCommand(input);
    return this.run(command("/v1/products", body, opts));
  }

  restockProduct(productId: string, input: Quantities & CommandOptions): Promise<ProductAck> {
    const [body, opts] = splitCommand(input);
    return this.run(command(`/v1/products/${seg(productId)}/restock`, body, opts));
  }

  reserveStock(productId: string, input: Reservation & CommandOptions): Promise<ProductAck> {
    const [body, opts] = splitCommand(input);
    return this.run(command(`/v1/products/${seg(productId)}/reserve`, body, opts));
  }

  releaseStock(productId: string, input: Reservation & CommandOptions): Promise<ProductAck> {
    const [body, opts] = splitCommand(input);
    return this.run(command(`/v1/products/${seg(productId)}/release`, body, opts));
  }

  adjustStock(productId: string, input: Adjustment & CommandOptions): Promise<ProductAck> {
    const [body, opts] = splitCommand(input);
    return this.run(command(`/v1/products/${seg(productId)}/adjust`, body, opts));
  }

  changePrice(productId: string, input: PriceChange & CommandOptions): Promise<ProductAck> {
    const [body, opts] = splitCommand(input);
    return this.run(command(`/v1/products/${seg(productId)}/price`, body, opts));
  }

  placeOrder(input: PlaceOrder & CommandOptions): Promise<OrderAck> {
    const [body, opts] = splitCommand(input);
    return this.run(command("/v1/orders", body, opts));
  }

  confirmOrder(orderId: string, options: CommandOptions = {}): Promise<OrderAck> {
    return this.run(command(`/v1/orders/${seg(orderId)}/confirm`, undefined, options));
  }

  shipOrder(orderId: string, options: CommandOptions = {}): Promise<OrderAck> {
    return this.run(command(`/v1/orders/${seg(orderId)}/ship`, undefined, options));
  }

  deliverOrder(orderId: string, options: CommandOptions = {}): Promise<OrderAck> {
    return this.run(command(`/v1/orders/${seg(orderId)}/deliver`, undefined, options));
  }

  cancelOrder(orderId: string, input: Reason & CommandOptions = {}): Promise<OrderAck> {
    const [body, opts] = splitCommand(input);
    return this.run(command(`/v1/orders/${seg(orderId)}/cancel`, body, opts));
  }

  /** `restock` defaults to true (the returned units go back on sale). */
  refundOrder(orderId: string, input: Omit<Refund, "restock"> & { restock?: boolean } & CommandOptions): Promise<OrderAck> {
    const [body, opts] = splitCommand(input);
    return this.run(command(`/v1/orders/${seg(orderId)}/refund`, body, opts));
  }

  /** `method` defaults to card. */
  initiatePayment(input: Omit<InitiatePayment, "method"> & { method?: InitiatePayment["method"] } & CommandOptions): Promise<PaymentAck> {
    const [body, opts] = splitCommand(input);
    return this.run(command("/v1/payments", { method: "card", ...body }, opts));
  }

  completePayment(paymentId: string, options: CommandOptions = {}): Promise<PaymentAck> {
    return this.run(command(`/v1/payments/${seg(paymentId)}/complete`, undefined, options));
  }

  failPayment(paymentId: string, input: Reason & CommandOptions = {}): Promise<PaymentAck> {
    const [body, opts] = splitCommand(input);
    return this.run(command(`/v1/payments/${seg(paymentId)}/fail`, body, opts));
  }

  refundPayment(paymentId: string, input: Omit<Refund, "restock"> & { restock?: boolean } & CommandOptions): Promise<PaymentAck> {
    const [body, opts] = splitCommand(input);
    return this.run(command(`/v1/payments/${seg(paymentId)}/refund`, body, opts));
  }

  /** `POST /v1/sessions/{id}/events`: page_view, click, add_to_cart, checkout_started (or checkout). */
  recordSessionEvent(sessionId: string, input: SessionEvent & CommandOptions): Promise<SessionAck> {
    const [body, opts] = splitCommand(input);
    return this.run(command(`/v1/sessions/${seg(sessionId)}/events`, body, opts));
  }
}

/** `client.session()`: reads wait for this session's own writes. */
export class Session extends AgentFlowClient {
  protected override readonly tracksPosition = true;

  constructor(parent: AgentFlowClient) {
    super();
    this.settings = parent.settings_();
  }
}

export interface StreamOptions extends CallOptions {
  eventType?: string | string[];
  entityType?: string;
  entityId?: string;
  /** resume after this position (sent as Last-Event-ID) */
  lastEventId?: number;
  /** end after this many events */
  maxEvents?: number;
  /** seconds between the server's heartbeats; no byte for 3 x that (at least 5 s) counts as a drop */
  heartbeat?: number;
  reconnect?: boolean;
  /** consecutive failed reconnects before a TransportError */
  maxReconnects?: number;
}

/** Iterate (`for await`) for events; `lastEventId` is the resume point, `reconnects` how often it
 * reopened. `close()` (or aborting the `signal` given) ends the iteration. */
export class EventStream implements AsyncIterable<StreamEvent> {
  reconnects = 0;
  private readonly parser: SseParser;
  private left: number | undefined;
  private closed = false;
  private current: AbortController | undefined;
  private readonly idleMs: number;

  constructor(private readonly client: AgentFlowClient, private readonly settings: Settings,
              private readonly options: StreamOptions) {
    this.parser = new SseParser(options.lastEventId);
    this.left = options.maxEvents;
    const heartbeat = options.heartbeat;
    this.idleMs = heartbeat === undefined ? settings.timeoutMs : Math.max(3 * heartbeat, 5) * 1000;
    options.signal?.addEventListener("abort", () => this.close(), { once: true });
  }

  get lastEventId(): number | undefined {
    return this.parser.lastEventId;
  }

  close(): void {
    this.closed = true;
    this.current?.abort();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamEvent> {
    const { reconnect = true, maxReconnects = 10 } = this.options;
    let failures = 0;
    try {
      while (!this.closed && this.left !== 0) {
        try {
          for await (const event of this.connection()) {
            failures = 0;
            yield event;
            if (this.left !== undefined && --this.left === 0) break;
          }
          if (this.closed || this.left === 0 || !reconnect) break;
        } catch (err) {
          if (this.closed) break; // close() (or the caller's signal) ends the iteration
          if (err instanceof ApiError) throw err;
          failures += 1;
          if (!reconnect || failures > maxReconnects) {
            throw new TransportError(`event stream: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
          }
        }
        this.reconnects += 1;
        await this.settings.sleep(this.parser.retryMs / 1000);
      }
    } finally {
      this.close();
    }
  }

  private async *connection(): AsyncGenerator<StreamEvent> {
    const o = this.options;
    const headers: Record<string, string> = { ...this.settings.headers, Accept: "text/event-stream" };
    if (this.parser.lastEventId !== undefined) headers["Last-Event-ID"] = String(this.parser.lastEventId);
    const url = this.client.url("/v1/stream/events", {
      event_type: o.eventType, entity_type: o.entityType, entity_id: o.entityId, heartbeat: o.heartbeat,
      max_events: this.left,
    });
    const controller = new AbortController();
    this.current = controller;
    let idle: ReturnType<typeof setTimeout> | undefined;
    const arm = (ms: number) => {
      clearTimeout(idle);
      idle = setTimeout(() => controller.abort(new TimeoutError(`no byte of the event stream in ${ms} ms`)), ms);
    };
    try {
      let response: Response;
      for (let attempt = 1; ; attempt++) { // 429 too_many_streams / 503: after Retry-After, as every request
        arm(this.settings.timeoutMs);
        response = await this.settings.fetch(url, { headers, signal: controller.signal });
        if (response.status < 400) break;
        const text = await response.text();
        this.client.rateLimit = rateLimitOf(response.headers) ?? this.client.rateLimit;
        const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
        const wait = this.settings.retry.statuses.has(response.status)
          ? retryDelay(this.settings.retry, attempt, retryAfter) : undefined;
        if (wait === undefined) throw apiError(response.status, text, response.headers, retryAfter, "GET", "/v1/stream/events");
        clearTimeout(idle);
        await this.settings.sleep(wait);
      }
      if (!response.body) throw new TransportError("event stream: no body");
      arm(this.idleMs);
      const decoder = new TextDecoder();
      for await (const chunk of response.body) {
        arm(this.idleMs);
        for (const event of this.parser.push(decoder.decode(chunk, { stream: true }))) yield event;
      }
    } finally {
      clearTimeout(idle);
      controller.abort();
      this.parser.reset();
      if (this.current === controller) this.current = undefined;
    }
  }
}
