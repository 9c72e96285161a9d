/**
 * The OTLP/HTTP receiver: POST /v1/traces, /v1/metrics and /v1/logs, protobuf or JSON, plain or
 * gzip, answered as the OTLP specification says:
 *
 * - 200 with an empty Export*ServiceResponse when everything was stored;
 * - 200 with `partial_success` (rejected count and a message naming what and why) when some
 *   items were refused and the rest stored;
 * - 400 for a body that does not decode, 413 past the size limit (compressed or decompressed),
 *   415 for another content type or encoding, 405 for another method, 503 when the store is busy;
 *   errors carry a google.rpc.Status in the request's encoding.
 *
 * A request is stored in one transaction: a refused request stores nothing.
 * Host, Origin and token checks are done by the HTTP server in front (mcp/http.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { gunzip } from 'node:zlib';
import { log } from '../../log.js';
import { NOTHING_WRITTEN, type Store, type WriteSummary } from '../../store/store.js';
import { mapLogs } from './logs.js';
import { mapMetrics } from './metrics.js';
import { DEFAULT_OTLP_MAX_BODY } from './defaults.js';
import { decodeJson, decodeProtobuf, encodeResponse, encodeStatus, MalformedRequestError, RPC_CODE, SIGNALS, type WireFormat } from './proto.js';
import { CumulativeState, DEFAULT_MAX_SERIES, type StateChanges } from './state.js';
import { mapTraces, type MappedBatch } from './traces.js';
import type { RequestBySignal, Signal } from './types.js';

export { DEFAULT_OTLP_MAX_BODY, DEFAULT_OTLP_PORT } from './defaults.js';

export const OTLP_PATHS: Readonly<Record<string, Signal>> = {
  '/v1/traces': 'traces',
  '/v1/metrics': 'metrics',
  '/v1/logs': 'logs',
};

export interface OtlpReceiverOptions {
  /** Largest body accepted, before and after decompression, in bytes (default 16 MiB). */
  maxBodyBytes?: number;
  /** Cumulative series remembered for delta computation (default 50,000). */
  maxSeries?: number;
  clock?: () => number;
}

export interface OtlpOutcome {
  /** Spans, data points or log records accepted. */
  accepted: number;
  rejected: number;
  /** Why items were rejected (or warnings); empty when there is nothing to say. */
  message: string;
  written: WriteSummary;
}

class OtlpHttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** The wire format a Content-Type names, or null for anything else. */
export function wireFormatOf(contentType: string | undefined): WireFormat | null {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/x-protobuf' || type === 'application/protobuf') return 'protobuf';
  if (type === 'application/json') return 'json';
  return null;
}

/** Past the limit the body is still read (and dropped) up to this many times the limit, so the client can finish sending and read the 413. */
const DRAIN_FACTOR = 4;

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    let settled = false;
    const refuse = (headers: Record<string, string> = {}) =>
      reject(new OtlpHttpError(413, RPC_CODE.resourceExhausted, `request body larger than ${limit} bytes`, headers));
    req.on('data', (chunk: Buffer) => {
      if (settled) return;
      size += chunk.length;
      if (!tooLarge && size > limit) {
        tooLarge = true;
        chunks.length = 0;
      }
      if (!tooLarge) {
        chunks.push(chunk);
      } else if (size > DRAIN_FACTOR * limit) {
        // Enough: answer now and drop the connection rather than read on.
        settled = true;
        req.pause();
        refuse({ connection: 'close' });
      }
    });
    req.on('end', () => {
      if (settled) return;
      settled = true;
      if (tooLarge) refuse();
      else resolve(Buffer.concat(chunks, size));
    });
    req.on('error', (err) => {
      if (settled) return;
      settled = true;
      reject(err);
    });
  });
}

function gunzipBody(body: Buffer, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    gunzip(body, { maxOutputLength: limit }, (err, out) => {
      if (!err) return resolve(out);
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
        return reject(new OtlpHttpError(413, RPC_CODE.resourceExhausted, `decompressed request body larger than ${limit} bytes`));
      }
      reject(new OtlpHttpError(400, RPC_CODE.invalidArgument, `body is not valid gzip: ${err.message}`));
    });
  });
}

export class OtlpReceiver {
  private readonly state: CumulativeState;
  private readonly maxBody: number;
  private readonly clock: () => number;
  /** Rejections not yet logged, and when they last were, per signal (logged at most once a minute). */
  private readonly unlogged = new Map<Signal, { rejected: number; since: number }>();

  constructor(
    private readonly store: Store,
    options: OtlpReceiverOptions = {},
  ) {
    this.clock = options.clock ?? Date.now;
    this.maxBody = options.maxBodyBytes ?? DEFAULT_OTLP_MAX_BODY;
    this.state = new CumulativeState(options.maxSeries ?? DEFAULT_MAX_SERIES, this.clock);
  }

  signalFor(path: string): Signal | null {
    return OTLP_PATHS[path] ?? null;
  }

  /** Cumulative series currently remembered. */
  get rememberedSeries(): number {
    return this.state.size;
  }

  /** Decodes, maps and stores one request body in one transaction (the HTTP-free core). */
  ingest(signal: Signal, format: WireFormat, body: Buffer): OtlpOutcome {
    const decode = <S extends Signal>(s: S): RequestBySignal[S] => (format === 'protobuf' ? decodeProtobuf(s, body) : decodeJson(s, body));
    let changes: StateChanges | null = null;
    let mapped: MappedBatch;
    if (signal === 'traces') mapped = mapTraces(decode('traces'), this.clock());
    else if (signal === 'logs') mapped = mapLogs(decode('logs'), this.clock());
    else {
      const request = decode('metrics');
      changes = this.state.begin();
      mapped = mapMetrics(request, changes, this.clock());
    }
    const written = mapped.records.length > 0 ? this.store.writeRecords(mapped.records) : { ...NOTHING_WRITTEN };
    // Only now that the records are stored does the cumulative state move on.
    changes?.commit();
    return {
      accepted: mapped.accepted,
      rejected: mapped.rejections.count,
      message: mapped.rejections.message(SIGNALS[signal].item),
      written,
    };
  }

  /** Serves one request to an OTLP path; always answers, never throws. */
  async handle(req: IncomingMessage, res: ServerResponse, signal: Signal): Promise<void> {
    const format = wireFormatOf(req.headers['content-type']);
    try {
      if (req.method !== 'POST') {
        throw new OtlpHttpError(405, RPC_CODE.unimplemented, `use POST for ${req.url ?? ''}`, { allow: 'POST' });
      }
      if (!format) {
        throw new OtlpHttpError(
          415,
          RPC_CODE.invalidArgument,
          `content-type must be application/x-protobuf or application/json (got ${JSON.stringify(req.headers['content-type'] ?? '')})`,
        );
      }
      const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
      if (encoding !== 'identity' && encoding !== 'gzip' && encoding !== '') {
        throw new OtlpHttpError(415, RPC_CODE.invalidArgument, `content-encoding must be gzip or none (got ${JSON.stringify(encoding)})`);
      }
      const raw = await readBody(req, this.maxBody);
      const body = encoding === 'gzip' ? await gunzipBody(raw, this.maxBody) : raw;
      let outcome: OtlpOutcome;
      try {
        outcome = this.ingest(signal, format, body);
      } catch (err) {
        if (err instanceof MalformedRequestError) throw new OtlpHttpError(400, RPC_CODE.invalidArgument, err.message);
        const code = (err as { code?: unknown }).code;
        if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
          throw new OtlpHttpError(503, RPC_CODE.unavailable, 'the store is busy; retry', { 'retry-after': '1' });
        }
        throw err;
      }
      if (outcome.rejected > 0) this.noteRejections(signal, outcome);
      res.writeHead(200, { 'content-type': format === 'json' ? 'application/json' : 'application/x-protobuf' });
      res.end(encodeResponse(signal, format, outcome.rejected, outcome.message));
    } catch (err) {
      if (err instanceof OtlpHttpError) {
        this.respondError(req, res, err.status, err.message, err.headers, err.code);
      } else {
        log.error('OTLP request failed', { signal, error: (err as Error).message });
        this.respondError(req, res, 500, 'internal error', {}, RPC_CODE.internal);
      }
    }
  }

  /** Rejected records are answered to the exporter; the log gets them too, at most once a minute per signal. */
  private noteRejections(signal: Signal, outcome: OtlpOutcome): void {
    const now = Date.now();
    const pending = this.unlogged.get(signal) ?? { rejected: 0, since: 0 };
    pending.rejected += outcome.rejected;
    if (now - pending.since >= 60_000) {
      log.warn(`OTLP ${signal}: ${pending.rejected} rejected since the last report; latest: ${outcome.message}`);
      pending.rejected = 0;
      pending.since = now;
    }
    this.unlogged.set(signal, pending);
  }

  /** A google.rpc.Status error in the request's encoding (JSON when it named none Kiwi reads). */
  respondError(
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    message: string,
    headers: Record<string, string> = {},
    code: number = rpcCodeFor(status),
  ): void {
    if (res.headersSent) {
      res.end();
      return;
    }
    const format = wireFormatOf(req.headers['content-type']) ?? 'json';
    res.writeHead(status, { 'content-type': format === 'json' ? 'application/json' : 'application/x-protobuf', ...headers });
    res.end(encodeStatus(format, code, message));
  }
}

function rpcCodeFor(status: number): number {
  switch (status) {
    case 401:
      return RPC_CODE.unauthenticated;
    case 403:
      return RPC_CODE.permissionDenied;
    case 404:
      return RPC_CODE.notFound;
    case 413:
      return RPC_CODE.resourceExhausted;
    case 503:
      return RPC_CODE.unavailable;
    default:
      return status >= 500 ? RPC_CODE.internal : RPC_CODE.invalidArgument;
  }
}
