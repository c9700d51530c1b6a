// Types of @switchboard/client (hand-written; index.js is the implementation, README.md the
// documentation of every option and event).

/** A method name as the client takes it; numbers are the protocol's (docs/PROTOCOL.md §3). */
export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'get' | 'post' | 'put' | 'patch' | 'delete' | 1 | 2 | 3 | 4 | 5;

/** How a received body is given as `body` (`raw` always has the bytes). */
export type ResponseType = 'auto' | 'json' | 'text' | 'bytes';

/** What a request or send body may be: bytes as they are, a string as UTF-8, anything else as JSON. */
export type Body = Uint8Array | ArrayBuffer | ArrayBufferView | string | number | boolean | null | object | unknown[] | undefined;

export type ClientState = 'idle' | 'connecting' | 'resuming' | 'open' | 'waiting' | 'offline' | 'closed';

/** The `code` of every SwitchboardError (README.md, "Errors"). */
export type ErrorCode =
  | 'TIMEOUT' | 'DISCONNECTED' | 'QUEUE_FULL' | 'CLOSED' | 'ABORTED' | 'TOO_BIG' | 'INVALID' | 'BAD_BODY'
  | 'CONNECT' | 'DISCOVERY' | 'TOKEN' | 'HEARTBEAT' | 'GAP' | 'PROTOCOL' | 'SERVER' | 'LISTENER'
  | 'VERSION' | 'REPLACED' | 'IDENTITY' | 'GAVE_UP';

export class SwitchboardError extends Error {
  constructor(code: ErrorCode, message: string, extra?: Record<string, unknown>);
  readonly code: ErrorCode;
  /** HTTP-like status, for SERVER and TOKEN errors that came with one. */
  readonly status?: number;
  /** The close code, for CONNECT, REPLACED and IDENTITY. */
  readonly closeCode?: number;
  /** The server url, for CONNECT. */
  readonly url?: string;
  /** The body that could not be decoded, for BAD_BODY. */
  readonly raw?: Uint8Array;
}

export interface ReconnectOptions {
  /** ms: the cap of the first delay. Default 500. */
  initialDelay?: number;
  /** The cap grows by this factor per failed attempt. Default 2. */
  factor?: number;
  /** ms: the largest delay. Default 30000. */
  maxDelay?: number;
  /** ms: a connection open this long resets the attempt count. Default 10000. */
  stableAfter?: number;
  /** Consecutive failed attempts before giving up (GAVE_UP). Default Infinity. */
  maxAttempts?: number;
}

/** A WebSocket constructor: the browser's, Node's global one, or npm `ws`. */
export interface WebSocketConstructor {
  new (url: string, protocols?: string | string[], options?: unknown): WebSocketLike;
}

export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  terminate?(): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
}

/** Where session and positions are kept with `persist`: sessionStorage or anything like it. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export interface ClientOptions {
  /** One server url (ws:// or wss://) or several, tried in turn. */
  url?: string | string[];
  /** An http(s) url answering JSON: an array of server urls, or { nodes: [url | { url }] }. */
  discoveryUrl?: string;
  /** The WebSocket to use. Default: globalThis.WebSocket. */
  WebSocket?: WebSocketConstructor;
  /** Subprotocols to offer. Default: none, or ["sb.v1"] next to a token. */
  protocols?: string[];
  /** A bearer token, or a function giving one (called before every connection attempt and when the server asks for a new one). */
  token?: string | ((info: { reason: 'connect' | 'refresh' }) => string | undefined | null | Promise<string | undefined | null>);
  /** Node (npm ws) only: also send the token as `Authorization: Bearer`. Default false. */
  authorizationHeader?: boolean;
  /** Node (npm ws) only: the WebSocket constructor's third argument (headers, TLS options, ...). */
  webSocketOptions?: Record<string, unknown>;
  /** ms a request waits for its response (queued time included). Default 10000; 0: no limit. */
  timeout?: number;
  /** ms from opening a socket to the session being ready. Default 10000. */
  connectTimeout?: number;
  /** What a request made while not connected does. Default 'wait'. */
  whileDisconnected?: 'wait' | 'fail';
  /** Requests and sends that may wait for a connection. Default 1000. */
  maxQueued?: number;
  /** How received bodies are decoded. Default 'auto'. */
  responseType?: ResponseType;
  /** Reconnect options, or false for no reconnect. */
  reconnect?: ReconnectOptions | false;
  /** ms of silence before a PING. Default: half the server's heartbeat_ms, at most 25000. */
  heartbeatInterval?: number;
  /** ms without any message after a PING before the connection counts as dead. Default 10000. */
  heartbeatTimeout?: number;
  /** ms between acknowledgements of the direct stream. Default 5000. */
  ackInterval?: number;
  /** Keep the session and positions across a page reload: true for sessionStorage, or a storage. Default false. */
  persist?: boolean | StorageLike;
  /** The storage key. Default "switchboard:" + the first url (or the discovery url). */
  storageKey?: string;
  /** Connect in the constructor. Default true. */
  autoConnect?: boolean;
  /** fetch for the discovery url. Default: globalThis.fetch. */
  fetch?: (url: string, init?: unknown) => Promise<{ ok: boolean; status: number; json(): Promise<unknown> }>;
  /** Where online, offline and pagehide come from (null: nowhere). Default: the global window. */
  window?: EventTarget & { navigator?: { onLine?: boolean }; sessionStorage?: StorageLike } | null;
  /** Where visibilitychange comes from (null: nowhere). Default: the global document. */
  document?: EventTarget & { visibilityState?: string } | null;
  /** The random source of the backoff jitter, in [0, 1). Default Math.random. */
  random?: () => number;
}

export interface RequestOptions {
  /** ms; overrides the client's timeout. */
  timeout?: number;
  responseType?: ResponseType;
  /** Values for application fields of the server's envelope schema. */
  fields?: Record<string, unknown>;
  signal?: AbortSignal;
}

export interface SendOptions extends RequestOptions {
  /** Default 'POST'. */
  method?: Method;
}

export interface Response<B = any> {
  status: number;
  /** status is 2xx */
  ok: boolean;
  body: B;
  raw: Uint8Array;
  /** The answer was an ERROR envelope (a protocol-level refusal) rather than a RESPONSE. */
  error?: true;
  /** Application fields of the envelope, if the server's schema has any. */
  [field: string]: unknown;
}

export interface Push<B = any> {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'NONE' | number;
  url: string;
  /** The pattern's parameters, decoded. */
  params: Record<string, string>;
  /** The query string of the url, without "?", or "". */
  query: string;
  body: B;
  raw: Uint8Array;
  /** "g:<group>" or "c:<connection id>", or "" for an unrecorded push. */
  stream: string;
  offset: number;
  /** 16 hex digits. */
  epoch: string;
  [field: string]: unknown;
}

export interface StreamPosition {
  offset: number;
  /** 16 hex digits. */
  epoch: string;
}

export interface OpenEvent { connectionId: string; url: string; resumed: boolean }
export interface CloseEvent { code: number; reason: string; willReconnect: boolean }
export interface ReconnectingEvent { attempt: number; delay: number }
export interface ResumedEvent {
  /** Every stream was recovered. */
  recovered: boolean;
  /** The session was gone: this connection is a new session, and nothing was recovered. */
  sessionLost: boolean;
  /** With sessionLost: the server's status (401, 403, 400) and reason. */
  status?: number;
  reason?: string;
  streams: Record<string, StreamPosition & { recovered: boolean }>;
}
export interface AuthEvent { status: number; expires?: number; error?: string }

export interface EventMap {
  open: OpenEvent;
  close: CloseEvent;
  reconnecting: ReconnectingEvent;
  resumed: ResumedEvent;
  error: SwitchboardError;
  auth: AuthEvent;
}

export interface ListenerOptions {
  responseType?: ResponseType;
  /** Pushes kept for next() / for await when there is no callback. Default 1000. */
  bufferLimit?: number;
}

export class Listener<B = any> implements AsyncIterable<Push<B>> {
  readonly pattern: string;
  /** The method listened for, or null for any. */
  readonly method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | null;
  /** Pushes dropped from a full buffer. */
  readonly dropped: number;
  readonly active: boolean;
  /** Stops the listener; false if it had stopped already. */
  stopListening(): boolean;
  /** The next push (without a callback); rejects with CLOSED once stopped. */
  next(): Promise<Push<B>>;
  [Symbol.asyncIterator](): AsyncIterator<Push<B>>;
}

export type ListenFor = <B = any>(pattern: string, fn?: (push: Push<B>) => void, opts?: ListenerOptions) => Listener<B>;

export class SwitchboardClient {
  constructor(options: ClientOptions | string | string[]);
  readonly state: ClientState;
  readonly connectionId: string | null;
  readonly hello: { connectionId: string; heartbeatMs: number; maxMessage: number; maxReplay: number; historyMax: number } | null;
  readonly envelope: Schema | null;
  readonly schemas: Map<string, Schema>;
  readonly addServerResponseListenerFor: Readonly<{ get: ListenFor; post: ListenFor; put: ListenFor; patch: ListenFor; delete: ListenFor; any: ListenFor }>;

  get<B = any>(url: string, opts?: RequestOptions): Promise<Response<B>>;
  post<B = any>(url: string, body?: Body, opts?: RequestOptions): Promise<Response<B>>;
  put<B = any>(url: string, body?: Body, opts?: RequestOptions): Promise<Response<B>>;
  patch<B = any>(url: string, body?: Body, opts?: RequestOptions): Promise<Response<B>>;
  delete<B = any>(url: string, body?: Body, opts?: RequestOptions): Promise<Response<B>>;
  request<B = any>(method: Method, url: string, body?: Body, opts?: RequestOptions): Promise<Response<B>>;
  send(url: string, body?: Body, opts?: SendOptions): Promise<void>;

  on<K extends keyof EventMap>(event: K, fn: (e: EventMap[K]) => void): () => void;
  on<B = any>(pattern: `/${string}`, fn: (push: Push<B>) => void, opts?: ListenerOptions): () => void;

  positions(): Record<string, StreamPosition>;
  /** Drops the position of `stream` (e.g. after leaving a group): its next push is a fresh start, not a gap. */
  forget(stream: string): boolean;
  ready(): Promise<void>;
  connect(): void;
  close(code?: number, reason?: string): void;
}

export function createClient(options: ClientOptions | string | string[]): SwitchboardClient;
export default SwitchboardClient;

export function encodeBody(body: Body): Uint8Array;
export function decodeBody(raw: Uint8Array, type?: ResponseType): any;
export function compilePattern(pattern: string): (url: string) => { params: Record<string, string>; query: string } | null;
export function backoffCap(attempt: number, options?: Required<ReconnectOptions>): number;
export function backoffDelay(attempt: number, options?: Required<ReconnectOptions>, random?: () => number): number;
export const RECONNECT_DEFAULTS: Readonly<Required<ReconnectOptions>>;

export const KIND: Readonly<{ REQUEST: 1; RESPONSE: 2; PUSH: 3; SEND: 4; HELLO: 5; RESUME: 6; RESUMED: 7; ACK: 8; ERROR: 9; AUTH: 10; PING: 11 }>;
export const METHOD: Readonly<{ NONE: 0; GET: 1; POST: 2; PUT: 3; PATCH: 4; DELETE: 5 }>;
export const CLOSE: Readonly<Record<'NORMAL' | 'GOING_AWAY' | 'PROTOCOL_ERROR' | 'UNSUPPORTED' | 'NO_STATUS' | 'ABNORMAL' | 'INVALID_DATA' | 'POLICY' | 'TOO_BIG' | 'INTERNAL' | 'TRY_AGAIN' | 'REPLACED' | 'EXPIRED' | 'IDENTITY', number>>;

/** A schema field as written in JSON: { name, type, size }, or the shorthand { name, size: 1|2|4|8 } and { name }. */
export interface FieldSpec { name: string; type?: 'u8' | 'u16' | 'u32' | 'u64' | 'fixed' | 'bytes' | 'text' | 'rest' | number; size?: number }
export interface Field { readonly name: string; readonly type: 'u8' | 'u16' | 'u32' | 'u64' | 'fixed' | 'bytes' | 'text' | 'rest'; readonly size: number }

/** The schema codec (docs/PROTOCOL.md §2). */
export class Schema {
  static from(fields: FieldSpec[]): Schema;
  static deserialize(bytes: Uint8Array | ArrayBuffer | ArrayBufferView): Schema;
  readonly fields: readonly Field[];
  readonly names: string[];
  serialize(): Uint8Array;
  /** Integers as number, bigint or decimal string; bytes as Uint8Array/ArrayBuffer/view; text as string or UTF-8 bytes. */
  encode(values: Record<string, unknown>): Uint8Array;
  /** u8/u16/u32 as number, u64 as bigint, text as string, the rest as Uint8Array views of the input. */
  decode(bytes: Uint8Array | ArrayBuffer | ArrayBufferView): Record<string, any>;
  decodePrefix(bytes: Uint8Array | ArrayBuffer | ArrayBufferView): { values: Record<string, any>; size: number };
}

export class CodecError extends Error {
  readonly field?: string;
  readonly index?: number;
}
