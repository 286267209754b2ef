// Fetch wrapper for the appliance's envelope: success `{data, meta}`, error `{error: {...}}`.
import type { Envelope, ErrorBody, Meta } from './types';

export class ApiError extends Error {
  readonly code: string;
  readonly status: number; // HTTP status; 0 when the server could not be reached
  readonly details: unknown;
  readonly retryable: boolean;
  readonly timestamp: string | null;

  constructor(code: string, message: string, status: number, details: unknown = null,
              retryable = false, timestamp: string | null = null) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.status = status;
    this.details = details;
    this.retryable = retryable;
    this.timestamp = timestamp;
  }

  get isNetwork(): boolean {
    return this.status === 0;
  }

  get isUnauthorized(): boolean {
    return this.status === 401;
  }
}

// --- access token -----------------------------------------------------------------------------
// When the server has MISTUDIO_TOKEN set, every /api call without it answers 401 UNAUTHORIZED.
// The token lives only in the `mistudio_token` cookie (EventSource cannot send headers).

export const TOKEN_COOKIE = 'mistudio_token';

type Listener = () => void;
const unauthorizedListeners = new Set<Listener>();

/** Called whenever any API call answers 401. Returns an unsubscribe function. */
export function onUnauthorized(listener: Listener): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

export function notifyUnauthorized(): void {
  for (const listener of [...unauthorizedListeners]) listener();
}

/** A token that can travel in a cookie value unquoted (what the server's cookie parser reads). */
export function tokenIsCookieSafe(token: string): boolean {
  return /^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]+$/.test(token);
}

export function setAccessToken(token: string): void {
  document.cookie = `${TOKEN_COOKIE}=${token}; path=/; SameSite=Strict`;
}

// --- requests ---------------------------------------------------------------------------------

export interface RequestOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  body?: unknown;
  signal?: AbortSignal;
  /** Abort after this many milliseconds (a hung server counts as unreachable). */
  timeoutMs?: number;
}

function isErrorBody(value: unknown): value is { error: ErrorBody } {
  return typeof value === 'object' && value !== null && 'error' in value
    && typeof (value as { error: unknown }).error === 'object' && (value as { error: unknown }).error !== null;
}

export async function apiRequest<T>(path: string, options: RequestOptions = {}): Promise<Envelope<T>> {
  const { method = 'GET', body, signal, timeoutMs } = options;
  const controller = new AbortController();
  const abort = () => controller.abort();
  if (signal) {
    if (signal.aborted) controller.abort();
    else signal.addEventListener('abort', abort, { once: true });
  }
  const timer = timeoutMs ? window.setTimeout(abort, timeoutMs) : undefined;
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      signal: controller.signal,
      credentials: 'same-origin',
      headers: body === undefined ? { Accept: 'application/json' }
        : { Accept: 'application/json', 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    const aborted = controller.signal.aborted;
    const why = aborted && !signal?.aborted ? 'The server did not answer in time'
      : aborted ? 'The request was cancelled' : 'The server could not be reached';
    throw new ApiError(aborted && signal?.aborted ? 'ABORTED' : 'NETWORK_ERROR', why, 0, String(err), true);
  } finally {
    if (timer !== undefined) window.clearTimeout(timer);
    signal?.removeEventListener('abort', abort);
  }

  let payload: unknown = null;
  const text = await response.text().catch(() => '');
  if (text) {
    try {
      payload = JSON.parse(text);
    } catch {
      payload = null;
    }
  }

  if (!response.ok) {
    if (response.status === 401) notifyUnauthorized();
    if (isErrorBody(payload)) {
      const e = payload.error;
      throw new ApiError(e.code || `HTTP_${response.status}`, e.message || response.statusText, response.status,
        e.details ?? null, Boolean(e.retryable), e.timestamp ?? null);
    }
    throw new ApiError(`HTTP_${response.status}`, `${response.status} ${response.statusText || 'error'}`.trim(),
      response.status, text.slice(0, 500), response.status >= 500);
  }
  if (typeof payload !== 'object' || payload === null || !('data' in payload)) {
    throw new ApiError('BAD_RESPONSE', `Unexpected response from ${path}`, response.status, text.slice(0, 500));
  }
  const envelope = payload as { data: T; meta?: Meta };
  // Every answer of the API has `meta`; a proxy's or an older server's may not.
  return { data: envelope.data, meta: envelope.meta ?? { timestamp: '', request_id: '' } };
}

export async function apiGet<T>(path: string, options: Omit<RequestOptions, 'method' | 'body'> = {}): Promise<T> {
  return (await apiRequest<T>(path, options)).data;
}

export async function apiPost<T>(path: string, body?: unknown,
                                 options: Omit<RequestOptions, 'method' | 'body'> = {}): Promise<T> {
  return (await apiRequest<T>(path, { ...options, method: 'POST', body: body ?? {} })).data;
}

export async function apiPatch<T>(path: string, body: unknown): Promise<T> {
  return (await apiRequest<T>(path, { method: 'PATCH', body })).data;
}

export function apiDelete<T>(path: string, options: Omit<RequestOptions, 'method' | 'body'> = {}): Promise<T> {
  return apiRequest<T>(path, { ...options, method: 'DELETE' }).then((envelope) => envelope.data);
}

/**
 * POST a file as multipart/form-data with upload progress (fetch cannot report it, XHR can).
 * Resolves with the envelope's data; rejects with an ApiError like apiRequest.
 */
export function uploadFile<T>(path: string, file: File, fields: Record<string, string>,
                              onProgress?: (fraction: number) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const form = new FormData();
    for (const [key, value] of Object.entries(fields)) if (value !== '') form.append(key, value);
    form.append('file', file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
    };
    xhr.onerror = () => reject(new ApiError('NETWORK_ERROR', 'The server could not be reached', 0, null, true));
    xhr.onload = () => {
      let payload: unknown = null;
      try {
        payload = JSON.parse(xhr.responseText);
      } catch {
        payload = null;
      }
      if (xhr.status >= 200 && xhr.status < 300 && typeof payload === 'object' && payload !== null && 'data' in payload) {
        resolve((payload as { data: T }).data);
        return;
      }
      if (xhr.status === 401) notifyUnauthorized();
      if (isErrorBody(payload)) {
        const e = payload.error;
        reject(new ApiError(e.code, e.message, xhr.status, e.details ?? null, Boolean(e.retryable), e.timestamp ?? null));
      } else {
        reject(new ApiError(`HTTP_${xhr.status}`, `${xhr.status} ${xhr.statusText || 'error'}`, xhr.status));
      }
    };
    xhr.send(form);
  });
}

/** A short human sentence for any thrown value. */
export function errorMessage(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}
