/** Server-Sent Events framing of `/v1/stream/events`: text in, StreamEvent out. The parser remembers the
 * last `id` (the resume point, sent back as `Last-Event-ID`) and the server's `retry` (ms to wait before
 * reconnecting). */
import type { StreamEvent } from "./types.js";

export const DEFAULT_RETRY_MS = 2000;

export class SseParser {
  lastEventId: number | undefined;
  retryMs = DEFAULT_RETRY_MS;
  private buffer = "";
  private id: string | undefined;
  private event = "message";
  private data: string[] = [];

  constructor(lastEventId?: number) {
    this.lastEventId = lastEventId;
  }

  /** A decoded chunk of the body; the events it completes. */
  push(chunk: string): StreamEvent[] {
    this.buffer += chunk;
    const events: StreamEvent[] = [];
    for (;;) {
      const end = this.buffer.search(/\r\n|\r|\n/);
      if (end < 0) break;
      // a lone \r at the buffer's end may be the first half of \r\n: wait for more
      if (this.buffer[end] === "\r" && end === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + (this.buffer.startsWith("\r\n", end) ? 2 : 1));
      const event = this.feed(line);
      if (event) events.push(event);
    }
    return events;
  }

  /** The stream ended: a half-received event is dropped (it is sent again after the last id). */
  reset(): void {
    this.buffer = "";
    this.id = undefined;
    this.event = "message";
    this.data = [];
  }

  /** One line without its end-of-line; an event when the line ends one. */
  feed(line: string): StreamEvent | undefined {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return undefined; // a comment: stream open, heartbeat
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") this.data.push(value);
    else if (name === "event") this.event = value;
    else if (name === "id") this.id = value;
    else if (name === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
    return undefined;
  }

  private dispatch(): StreamEvent | undefined {
    const { data, event, id } = this;
    this.data = [];
    this.event = "message";
    this.id = undefined;
    if (data.length === 0) return undefined;
    const payload = JSON.parse(data.join("\n")) as Record<string, unknown>;
    const position = id !== undefined && /^\d+$/.test(id) ? Number(id) : undefined;
    if (position !== undefined) this.lastEventId = position;
    return { id: position ?? -1, event, data: payload };
  }
}
