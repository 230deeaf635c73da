/** When to ask again: 429 and 503 answers (after their `Retry-After`, else an exponential backoff with
 * jitter) and lost connections -- but only requests that are safe to repeat: reads, and commands that
 * carry an `Idempotency-Key` (the API answers a repeated key with the original response). */

export interface RetryPolicy {
  /** retries after the first attempt (0: none) */
  maxRetries: number;
  /** the first wait (seconds) when the answer names none; doubles each attempt */
  backoff: number;
  maxBackoff: number;
  /** a longer Retry-After (seconds) is thrown (RateLimited.retryAfter) instead of waited out */
  maxRetryAfter: number;
  statuses: ReadonlySet<number>;
}

export const DEFAULT_RETRY: RetryPolicy = Object.freeze({
  maxRetries: 4, backoff: 0.25, maxBackoff: 8, maxRetryAfter: 120, statuses: new Set([429, 503]),
});

export const NO_RETRIES: RetryPolicy = Object.freeze({ ...DEFAULT_RETRY, maxRetries: 0 });

/** Seconds to wait before retry number `attempt` (1-based), or undefined: do not retry. */
export function retryDelay(policy: RetryPolicy, attempt: number, retryAfter: number | undefined): number | undefined {
  if (attempt > policy.maxRetries) return undefined;
  if (retryAfter !== undefined) return retryAfter <= policy.maxRetryAfter ? retryAfter : undefined;
  return (0.5 + Math.random() * 0.5) * Math.min(policy.maxBackoff, policy.backoff * 2 ** (attempt - 1));
}

/** `Retry-After`: delay-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.max(0, Number(trimmed));
  const when = Date.parse(trimmed);
  return Number.isNaN(when) ? undefined : Math.max(0, (when - Date.now()) / 1000);
}
