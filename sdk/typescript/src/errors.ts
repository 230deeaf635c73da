/** Typed errors: every API error carries the body's `error.code`, `message` and `details`, the status,
 * the answer's `X-Request-ID` and correlation id, and `Retry-After` (seconds) when it sent one. */

/** Anything the client throws. */
export class AgentFlowError extends Error {
  override name = "AgentFlowError";
}

/** No answer: the connection failed or was cut (after the retries the request allowed). */
export class TransportError extends AgentFlowError {
  override name = "TransportError";
}

/** No answer within the client's timeout (an AbortController fired). */
export class TimeoutError extends TransportError {
  override name = "TimeoutError";
}

export interface ApiErrorInit {
  status: number;
  code: string;
  message: string;
  details?: unknown;
  requestId?: string | undefined;
  correlationId?: string | undefined;
  retryAfter?: number | undefined;
  method?: string;
  path?: string;
}

/** The API answered with an error status. */
export class ApiError extends AgentFlowError {
  override name = "ApiError";
  readonly status: number;
  readonly code: string;
  readonly details: unknown;
  readonly requestId: string | undefined;
  readonly correlationId: string | undefined;
  readonly retryAfter: number | undefined;

  constructor(init: ApiErrorInit) {
    super(`${init.status} ${init.code}: ${init.message}` + (init.method ? ` (${init.method} ${init.path})` : ""));
    this.status = init.status;
    this.code = init.code;
    this.details = init.details;
    this.requestId = init.requestId;
    this.correlationId = init.correlationId;
    this.retryAfter = init.retryAfter;
    // `message` is the API's message; the Error's text (with status and code) stays in `stack`
    this.message = init.message;
  }
}

/** 400 */
export class BadRequest extends ApiError { override name = "BadRequest"; }
/** 401: no key, or one the API does not know. */
export class Unauthorized extends ApiError { override name = "Unauthorized"; }
/** 403: the key lacks the scope. */
export class Forbidden extends ApiError { override name = "Forbidden"; }
/** 404 */
export class NotFound extends ApiError { override name = "NotFound"; }
/** 409: a business rule refused the command (`code` says which), or `version_conflict`. */
export class Conflict extends ApiError { override name = "Conflict"; }
/** 409 `version_conflict`: the stream is not at the `If-Match` version. */
export class VersionConflict extends Conflict { override name = "VersionConflict"; }
/** 422: malformed input; `details` names the fields. */
export class Unprocessable extends ApiError { override name = "Unprocessable"; }
/** 429: past the key's budget (`retryAfter` says when one more request fits). */
export class RateLimited extends ApiError { override name = "RateLimited"; }
/** 503: e.g. `position_not_yet_applied` (the read model has not reached `min_position`). */
export class Unavailable extends ApiError { override name = "Unavailable"; }
/** 5xx other than 503. */
export class ServerError extends ApiError { override name = "ServerError"; }

const BY_STATUS: Record<number, typeof ApiError> = {
  400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
  422: Unprocessable, 429: RateLimited, 503: Unavailable,
};

/** The typed error of an error answer (a body that is not the API's error shape still gives one). */
export function apiError(
  status: number, body: string, headers: Headers, retryAfter: number | undefined, method: string, path: string,
): ApiError {
  let code = `http_${status}`;
  let message = body.slice(0, 500);
  let details: unknown = undefined;
  let correlationId: string | undefined = undefined;
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown; message?: unknown; details?: unknown }; correlation_id?: unknown };
    if (parsed.error && typeof parsed.error.code === "string") {
      code = parsed.error.code;
      message = typeof parsed.error.message === "string" ? parsed.error.message : message;
      details = parsed.error.details ?? undefined;
      correlationId = typeof parsed.correlation_id === "string" ? parsed.correlation_id : undefined;
    }
  } catch {
    // not JSON: the http_<status> error with the body's text
  }
  let cls = BY_STATUS[status] ?? (status >= 500 ? ServerError : ApiError);
  if (status === 409 && code === "version_conflict") cls = VersionConflict;
  return new cls({
    status, code, message, details, retryAfter, method, path,
    requestId: headers.get("x-request-id") ?? undefined,
    correlationId: correlationId ?? headers.get("x-correlation-id") ?? undefined,
  });
}
