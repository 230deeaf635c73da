/** The API's shapes, named as the OpenAPI schema's components (src/schema.d.ts is generated from
 * docs/openapi.json by `npm run generate`; a test fails when the two differ). */
import type { components, operations } from "./schema.js";

export type Schemas = components["schemas"];
/** The query parameters of an operation of the schema (by its operationId). */
export type QueryOf<Op extends keyof operations> = NonNullable<operations[Op]["parameters"]["query"]>;

export type MetricValue = Schemas["MetricValue"];
export type EntityValue = Schemas["EntityValue"];
export type OrderTimeline = Schemas["OrderTimeline"];
export type QueryResult = Schemas["QueryResult"];
export type SearchResults = Schemas["SearchResults"];
export type Catalog = Schemas["Catalog"];
export type HealthReport = Schemas["HealthReport"];
export type DeadLetterList = Schemas["DeadLetterList"];
export type DeadLetterView = Schemas["DeadLetterView"];
export type DeadLetterReplayed = Schemas["DeadLetterReplayed"];
export type ErrorBody = Schemas["ErrorBody"];
export type OrderAck = Schemas["OrderAck"];
export type PaymentAck = Schemas["PaymentAck"];
export type ProductAck = Schemas["ProductAck"];
export type UserAck = Schemas["UserAck"];
export type SessionAck = Schemas["SessionAck"];

export type PlaceOrder = Schemas["PlaceOrder"];
export type OrderLine = Schemas["OrderLineBody"];
export type ReturnLine = Schemas["ReturnLine"];
export type RegisterUser = Schemas["RegisterUser"];
export type RegisterProduct = Schemas["RegisterProduct"];
export type InitiatePayment = Schemas["InitiatePayment"];
export type Refund = Schemas["Refund"];
export type Reservation = Schemas["Reservation"];
export type Adjustment = Schemas["Adjustment"];
export type SessionEvent = Schemas["SessionEvent"];
/** `POST /v1/query`'s body (the schema leaves its fields untyped; these are what the API reads). */
export interface QueryRequest {
  question?: string;
  sql?: string;
  metrics?: string[] | string;
  window?: string;
  dimensions?: string[];
  filters?: Record<string, unknown>;
  grain?: string;
  limit?: number;
  cursor?: string;
  context?: Record<string, unknown>;
}

export type MetricQuery = QueryOf<"V1MetricsMetricNameMetric">;
export type EntityQuery = QueryOf<"V1EntityEntityTypeEntityIdEntity">;
export type TimelineQuery = QueryOf<"V1EntityEntityTypeEntityIdTimelineOrderTimelineRoute">;
export type SearchQuery = QueryOf<"V1SearchSearch">;
export type DeadLetterQuery = QueryOf<"V1DeadletterListDeadLetters">;
export type StreamQuery = QueryOf<"V1StreamEventsStreamEvents">;
/** The read-your-writes parameters of a read that takes them. */
export type Consistency = Pick<MetricQuery, "min_position" | "timeout_ms" | "allow_stale">;

/** One Server-Sent Event of `/v1/stream/events` (the schema's EventFrame with `id` a number and `data`
 * decoded). */
export interface StreamEvent {
  id: number;
  event: string;
  data: Record<string, unknown>;
}
export type Quantities = Schemas["Quantities"];
export type PriceChange = Schemas["PriceChange"];
export type Reason = Schemas["Reason"];
