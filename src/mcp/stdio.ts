/**
 * MCP over stdio, as the SDK's StdioServerTransport speaks it (one JSON-RPC message per line),
 * with two differences that matter for a server taking large ingest requests:
 *
 * - A line is gathered in pieces and joined once, so reading it costs its length. The SDK's
 *   buffer is re-joined and re-scanned on every chunk: a 64 MiB message took half a minute.
 * - A message over the limit is skipped to its end and answered with an error naming the limit
 *   (with the request's id when it can be read from the line's head or tail), and the server
 *   keeps serving. The SDK's buffer closes the connection instead, and the server went away
 *   without a word.
 */
import process from 'node:process';
import type { Readable, Writable } from 'node:stream';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { deserializeMessage, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import { ErrorCode, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

const NEWLINE = 0x0a;
/** Bytes of a skipped line's head and tail kept to find its id. */
const ID_WINDOW = 512;
/** A JSON-RPC id as JSON: an integer, or a string (parsed with JSON.parse, which has the last word). */
const ID = String.raw`(-?(?:0|[1-9]\d*)(?=\s*[,}])|"(?:[^"\\]|\\.)*")`;
const ID_AT_HEAD = new RegExp(String.raw`^\s*\{[^{[]*?"id"\s*:\s*` + ID);
const ID_AT_TAIL = new RegExp(String.raw`"id"\s*:\s*` + ID + String.raw`\s*\}\s*$`);
/** Only a request is answered: a response or notification the client sends gets no reply. */
const IS_REQUEST = /"method"\s*:/;

export class LineStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  private pieces: Buffer[] = [];
  private size = 0;
  /** Bytes of the line being skipped, or -1 while reading normally. */
  private skipped = -1;
  private head = '';
  private tail = Buffer.alloc(0);
  private started = false;
  private closed = false;

  constructor(
    readonly maxMessageBytes: number,
    private readonly stdin: Readable = process.stdin,
    private readonly stdout: Writable = process.stdout,
  ) {}

  async start(): Promise<void> {
    if (this.started) throw new Error('LineStdioTransport already started');
    this.started = true;
    this.stdin.on('data', this.ondata);
    this.stdin.on('error', this.onStreamError);
    this.stdout.on('error', this.onStdoutError);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stdin.off('data', this.ondata);
    this.stdin.off('error', this.onStreamError);
    this.stdout.off('error', this.onStdoutError);
    if (this.stdin.listenerCount('data') === 0) this.stdin.pause();
    this.pieces = [];
    this.size = 0;
    this.onclose?.();
  }

  send(message: JSONRPCMessage): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed) return resolve();
      if (this.stdout.write(serializeMessage(message))) return resolve();
      // settled by the drain, or by the error that closes the transport when the reader is gone
      const done = () => {
        this.stdout.off('drain', done);
        this.stdout.off('error', done);
        resolve();
      };
      this.stdout.once('drain', done);
      this.stdout.once('error', done);
    });
  }

  private readonly onStreamError = (error: Error) => this.onerror?.(error);

  /** The client stopped reading (EPIPE and kin): report it and close, so the server shuts down cleanly. */
  private readonly onStdoutError = (error: Error) => {
    this.onerror?.(error);
    void this.close();
  };

  private readonly ondata = (chunk: Buffer) => {
    let start = 0;
    for (let newline = chunk.indexOf(NEWLINE); newline >= 0; newline = chunk.indexOf(NEWLINE, start)) {
      this.guarded(() => {
        this.take(chunk.subarray(start, newline));
        this.endLine();
      });
      start = newline + 1;
    }
    if (start < chunk.length) this.guarded(() => this.take(chunk.subarray(start)));
  };

  /** Whatever one line does wrong is reported, and the next line is read. */
  private guarded(step: () => void): void {
    try {
      step();
    } catch (error) {
      this.onerror?.(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private take(piece: Buffer): void {
    if (piece.length === 0) return;
    if (this.skipped < 0 && this.size + piece.length > this.maxMessageBytes) {
      // the line's first and last bytes so far, for its id; the pieces themselves are let go
      const held = [...this.pieces, piece];
      this.head = Buffer.concat(firstBytes(held, ID_WINDOW)).toString('utf8');
      this.tail = Buffer.concat(lastBytes(this.pieces, ID_WINDOW));
      this.skipped = this.size;
      this.pieces = [];
      this.size = 0;
    }
    if (this.skipped >= 0) {
      this.skipped += piece.length;
      this.tail = Buffer.concat([this.tail, piece.subarray(Math.max(0, piece.length - ID_WINDOW))]).subarray(-ID_WINDOW);
      return;
    }
    this.pieces.push(piece);
    this.size += piece.length;
  }

  private endLine(): void {
    if (this.skipped >= 0) return this.refuseSkipped();
    if (this.size === 0) return;
    const line = Buffer.concat(this.pieces, this.size).toString('utf8');
    this.pieces = [];
    this.size = 0;
    const text = line.endsWith('\r') ? line.slice(0, -1) : line;
    if (text.trim() === '') return;
    let message: JSONRPCMessage;
    try {
      message = deserializeMessage(text);
    } catch (error) {
      this.onerror?.(error as Error);
      return;
    }
    this.onmessage?.(message);
  }

  private refuseSkipped(): void {
    const bytes = this.skipped;
    const tail = this.tail.toString('utf8');
    const isRequest = IS_REQUEST.test(this.head) || IS_REQUEST.test(tail);
    const idText = ID_AT_HEAD.exec(this.head)?.[1] ?? ID_AT_TAIL.exec(tail)?.[1];
    this.skipped = -1;
    this.head = '';
    this.tail = Buffer.alloc(0);
    const size = `${bytes.toLocaleString('en')} bytes, over this server's limit of ${this.maxMessageBytes.toLocaleString('en')} bytes`;
    const reason = `a message of ${size}; send less per call (for files, use kiwi ingest)`;
    this.onerror?.(new Error(`skipped a message of ${size}`));
    if (!isRequest) return;
    const id = parseId(idText);
    // JSON-RPC answers a request whose id cannot be read with id null; the SDK's types want one.
    void this.send({ jsonrpc: '2.0', id, error: { code: ErrorCode.InvalidRequest, message: `Request too large: ${reason}` } } as JSONRPCMessage);
  }
}

function parseId(text: string | undefined): string | number | null {
  if (text === undefined) return null;
  try {
    const id = JSON.parse(text) as unknown;
    return typeof id === 'string' || (typeof id === 'number' && Number.isSafeInteger(id)) ? id : null;
  } catch {
    return null;
  }
}

/** Pieces holding the first `n` bytes of `pieces` (the last one cut). */
function firstBytes(pieces: readonly Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  for (const p of pieces) {
    if (n <= 0) break;
    out.push(p.subarray(0, n));
    n -= p.length;
  }
  return out;
}

/** Pieces holding the last `n` bytes of `pieces` (the first one cut). */
function lastBytes(pieces: readonly Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = pieces.length - 1; i >= 0 && n > 0; i--) {
    const p = pieces[i]!;
    out.unshift(p.subarray(Math.max(0, p.length - n)));
    n -= p.length;
  }
  return out;
}
