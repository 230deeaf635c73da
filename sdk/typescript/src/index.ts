export * from "./client.js";
export * from "./errors.js";
export * from "./retry.js";
export { SseParser } from "./sse.js";
export type * from "./types.js";
export type { components, operations, paths } from "./schema.js";
