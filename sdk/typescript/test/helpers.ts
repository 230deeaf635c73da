/** What the live-server tests share: the target from the environment (tests/e2e/test_typescript_sdk.py
 * starts `agentflow up` and sets it), a TCP proxy whose connections a test can cut, and a fetch that
 * loses answers. */
import net from "node:net";
import { AgentFlowClient, type ClientOptions } from "../src/index.js";

export function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: these tests run against a live server (tests/e2e/test_typescript_sdk.py)`);
  return value;
}

// 503 position_not_yet_applied says Retry-After: 1; how long the projector takes is not asserted here
export const PATIENT = { maxRetries: 200, maxBackoff: 1 };

export function client(options: ClientOptions = {}): AgentFlowClient {
  return new AgentFlowClient({ baseUrl: env("AF_URL"), apiKey: env("AF_KEY"), retry: PATIENT, ...options });
}

/** A forwarder on 127.0.0.1 to the server; `drop()` cuts every open connection (both ends see it). */
export class TcpProxy {
  accepted = 0;
  private readonly open = new Set<net.Socket>();
  private readonly server: net.Server;

  private constructor(target: URL) {
    this.server = net.createServer((client) => {
      this.accepted += 1;
      const upstream = net.connect(Number(target.port), target.hostname);
      for (const s of [client, upstream]) {
        this.open.add(s);
        s.on("error", () => undefined);
        s.on("close", () => this.open.delete(s));
      }
      client.pipe(upstream).pipe(client);
    });
  }

  static async start(target: string): Promise<TcpProxy> {
    const proxy = new TcpProxy(new URL(target));
    await new Promise<void>((resolve) => proxy.server.listen(0, "127.0.0.1", resolve));
    return proxy;
  }

  get base(): string {
    const address = this.server.address() as net.AddressInfo;
    return `http://127.0.0.1:${address.port}`;
  }

  drop(): void {
    for (const s of this.open) s.destroy();
    this.open.clear();
  }

  async close(): Promise<void> {
    this.drop();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A fetch that delivers each POST to the server, then loses the first `lose` answers (as a cut
 * connection); `posts` are the headers each POST carried. */
export class LosesAnswers {
  readonly posts: Headers[] = [];
  constructor(public lose = 1) {}

  readonly fetch: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    if ((init?.method ?? "GET") !== "POST") return response;
    this.posts.push(new Headers(init?.headers));
    const body = await response.arrayBuffer();
    if (this.lose > 0) {
      this.lose -= 1;
      throw new TypeError("fetch failed: answer lost");
    }
    return new Response(body, { status: response.status, headers: response.headers });
  };
}

/** A client's `sleep` that records each wait (and really waits unless `wait` is false). */
export class Waits {
  readonly seconds: number[] = [];
  constructor(private readonly wait = true) {}

  readonly sleep = async (seconds: number): Promise<void> => {
    this.seconds.push(seconds);
    if (this.wait) await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  };
}
