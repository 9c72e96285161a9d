/**
 * Kiwi over HTTP: MCP (Streamable HTTP) at `/mcp`, one MCP server per session, all over the same
 * store; and OpenTelemetry OTLP/HTTP at `/v1/traces`, `/v1/metrics`, `/v1/logs`. Either may be
 * served alone (`kiwi otlp` serves only OTLP). The same guards run before every route: the Host
 * (and Origin, when sent) must name an allowed host, against DNS rebinding; a bearer token is
 * required whenever one is configured, and one must be configured to listen on anything but
 * loopback.
 */
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import type { OtlpReceiver } from '../ingest/otlp/receiver.js';
import { log } from '../log.js';
import type { KiwiMcpServer } from './server.js';

export interface HttpOptions {
  host: string;
  port: number;
  /** Bearer token; required when `host` is not loopback. */
  token?: string;
  /** Host names accepted in the Host header besides the loopback names and `host` itself. */
  allowedHosts?: string[];
  /** Largest MCP request body accepted, in bytes (OTLP has its own limit, in the receiver). */
  maxBodyBytes?: number;
  /** Serves MCP at /mcp when given. */
  createServer?: () => KiwiMcpServer;
  /** Serves OTLP/HTTP at /v1/traces, /v1/metrics and /v1/logs when given. */
  otlp?: OtlpReceiver;
  /**
   * How long an MCP session may go unused before it is closed and forgotten, in ms; 0 keeps
   * sessions until their client ends them. Default DEFAULT_SESSION_IDLE_MS (30 minutes).
   */
  sessionIdleMs?: number;
}

export interface RunningHttp {
  /** The MCP endpoint when MCP is served, else the base URL. */
  url: string;
  /** `http://host:port`, without a path. */
  baseUrl: string;
  port: number;
  close(): Promise<void>;
}

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1', '[::1]'];
const WILDCARD_HOSTS = ['0.0.0.0', '::'];
export const DEFAULT_HTTP_PORT = 8787;
const DEFAULT_MAX_BODY = 16 * 1024 * 1024;
/**
 * A session is closed (its transport and McpServer with it) once it has had no request open for
 * 30 minutes, counted from the end of its last one. A request still being answered, or a GET
 * stream the client holds open for server messages, is use: a connected client, however quiet,
 * keeps its session, and one that went away without a DELETE frees it 30 minutes after its
 * connection closed (the SDK writes a keep-alive on open streams, so a vanished peer's stream ends).
 */
export const DEFAULT_SESSION_IDLE_MS = 30 * 60_000;
/** Longest wait between two sweeps for idle sessions; shorter timeouts sweep more often. */
const MAX_SWEEP_INTERVAL_MS = 60_000;

interface Session {
  transport: StreamableHTTPServerTransport;
  server: KiwiMcpServer;
  /** HTTP requests (open streams included) of this session not yet ended. */
  open: number;
  /** When the last of them ended (or the session began), from Date.now(). */
  lastUsed: number;
}

export function isLoopback(host: string): boolean {
  return LOOPBACK_NAMES.includes(host) || /^127(\.\d{1,3}){3}$/.test(host);
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function sendJsonRpcError(res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
}

function hostnameOf(hostHeader: string): string | null {
  try {
    return new URL(`http://${hostHeader}`).hostname.toLowerCase();
  } catch {
    return null;
  }
}

async function readBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HttpError(413, `request body larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new HttpError(400, 'request body is not valid JSON');
  }
}

export async function startHttp(options: HttpOptions): Promise<RunningHttp> {
  const createMcpServer = options.createServer;
  const otlp = options.otlp;
  if (!createMcpServer && !otlp) throw new Error('startHttp: nothing to serve (give createServer, otlp, or both)');
  const loopback = isLoopback(options.host);
  if (!loopback && !options.token) {
    throw new Error(`refusing to listen on ${options.host} without a token: set KIWI_TOKEN (or listen on 127.0.0.1)`);
  }
  const allowed = new Set([...LOOPBACK_NAMES, ...(options.allowedHosts ?? []).map((h) => h.toLowerCase())]);
  if (!WILDCARD_HOSTS.includes(options.host)) allowed.add(options.host.toLowerCase());
  // Bound to every interface with no names given: the token is the guard, any Host is accepted.
  const anyHost = WILDCARD_HOSTS.includes(options.host) && !options.allowedHosts?.length;
  const expectedAuth = options.token ? Buffer.from(`Bearer ${options.token}`) : null;
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const sessions = new Map<string, Session>();
  const idleMs = options.sessionIdleMs ?? DEFAULT_SESSION_IDLE_MS;
  if (!(idleMs >= 0)) throw new Error(`startHttp: sessionIdleMs must be 0 or more, not ${idleMs}`);

  /** Counts `res` as use of `session` until it ends, however it ends (answered, stream closed, client gone). */
  function inUse(session: Session, res: ServerResponse): void {
    session.open++;
    res.once('close', () => {
      session.open--;
      session.lastUsed = Date.now();
    });
  }

  /** Forgets a session at once (a request after this gets 404), then closes its transport and server. */
  async function endSession(id: string, session: Session): Promise<void> {
    if (sessions.get(id) === session) sessions.delete(id);
    await session.transport.close().catch(() => undefined);
    await session.server.close().catch(() => undefined);
  }

  const sweeper =
    createMcpServer && idleMs > 0
      ? setInterval(
          () => {
            const now = Date.now();
            for (const [id, session] of sessions) {
              if (session.open === 0 && now - session.lastUsed >= idleMs) {
                log.debug('MCP session expired', { idle_ms: now - session.lastUsed });
                void endSession(id, session);
              }
            }
          },
          Math.min(MAX_SWEEP_INTERVAL_MS, Math.max(10, Math.floor(idleMs / 4))),
        )
      : undefined;
  sweeper?.unref();

  function checkGuards(req: IncomingMessage): void {
    const host = req.headers.host ? hostnameOf(req.headers.host) : null;
    if (!host) throw new HttpError(403, 'missing or malformed Host header');
    if (!anyHost && !allowed.has(host)) throw new HttpError(403, `Host "${host}" is not allowed`);
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== 'null' && !anyHost) {
      let originHost: string | null = null;
      try {
        originHost = new URL(origin).hostname.toLowerCase();
      } catch {
        // fall through: refused below
      }
      if (!originHost || !allowed.has(originHost)) throw new HttpError(403, `Origin "${origin}" is not allowed`);
    }
    if (expectedAuth) {
      const given = Buffer.from(req.headers.authorization ?? '');
      if (given.length !== expectedAuth.length || !timingSafeEqual(given, expectedAuth)) {
        throw new HttpError(401, 'missing or wrong bearer token');
      }
    }
  }

  async function handleMcp(req: IncomingMessage, res: ServerResponse, createServer: () => KiwiMcpServer): Promise<void> {
    const sessionId = req.headers['mcp-session-id'];
    // Looked up before the body is read, so that a slow upload counts as use too.
    const existing = typeof sessionId === 'string' ? sessions.get(sessionId) : undefined;
    if (existing) inUse(existing, res);
    const body = req.method === 'POST' ? await readBody(req, maxBody) : undefined;
    if (existing) {
      await existing.transport.handleRequest(req, res, body);
      return;
    }
    if (sessionId !== undefined) throw new HttpError(404, 'unknown or expired session; initialize again');
    if (req.method !== 'POST' || !isInitializeRequest(body)) {
      throw new HttpError(400, 'no session: the first request must be an initialize request');
    }
    const server = createServer();
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        sessions.set(id, session);
        // no session id in the line: it lets whoever holds it act as the session, and log lines go to other sessions
        log.debug('MCP session opened', { sessions: sessions.size });
      },
    });
    const session: Session = { transport, server, open: 0, lastUsed: Date.now() };
    // However the session ends (the client's DELETE, expiry, shutdown), it is forgotten. This
    // relies on whatever wraps the transport (KiwiMcpServer's InstrumentedTransport) chaining onclose.
    transport.onclose = () => {
      const id = transport.sessionId;
      if (id && sessions.get(id) === session) {
        sessions.delete(id);
        log.debug('MCP session closed', { sessions: sessions.size });
      }
    };
    inUse(session, res);
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  }

  const served = [
    createMcpServer ? 'MCP is served at /mcp' : null,
    otlp ? 'OTLP at /v1/traces, /v1/metrics and /v1/logs' : null,
  ].filter(Boolean);
  const notFound = (path: string) => `nothing at ${path}; ${served.join('; ')}`;

  const httpServer: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const signal = otlp?.signalFor(path) ?? null;
    const handle = async () => {
      checkGuards(req);
      if (signal && otlp) return otlp.handle(req, res, signal);
      if (path === '/mcp' && createMcpServer) return handleMcp(req, res, createMcpServer);
      if (path === '/healthz' && req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(createMcpServer ? { status: 'ok', sessions: sessions.size } : { status: 'ok' }));
        return;
      }
      throw new HttpError(404, notFound(path));
    };
    handle().catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      const message = err instanceof HttpError ? err.message : 'internal error';
      if (!(err instanceof HttpError)) log.error('HTTP request failed', { error: (err as Error).message });
      const headers: Record<string, string> = status === 401 ? { 'www-authenticate': 'Bearer' } : {};
      // OTLP clients read errors as a google.rpc.Status; MCP clients as JSON-RPC.
      if (signal && otlp) otlp.respondError(req, res, status, message, headers);
      else sendJsonRpcError(res, status, message, headers);
    });
  });

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(options.port, options.host, () => {
      httpServer.off('error', reject);
      resolve();
    });
  });
  const port = (httpServer.address() as AddressInfo).port;
  const shownHost = options.host.includes(':') ? `[${options.host}]` : options.host;
  const baseUrl = `http://${shownHost}:${port}`;
  return {
    url: createMcpServer ? `${baseUrl}/mcp` : baseUrl,
    baseUrl,
    port,
    async close() {
      if (sweeper) clearInterval(sweeper);
      for (const { transport, server } of sessions.values()) {
        await transport.close().catch(() => undefined);
        await server.close().catch(() => undefined);
      }
      sessions.clear();
      await new Promise<void>((resolve) => {
        httpServer.close(() => resolve());
        httpServer.closeAllConnections();
      });
    },
  };
}
