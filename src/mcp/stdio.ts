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
const ID_AT_HEAD = /^\s*\{[^{[]*?"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")/;
const ID_AT_TAIL = /"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")\s*\}\s*$/;

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
  }

  async close(): Promise<void> {
    this.stdin.off('data', this.ondata);
    this.stdin.off('error', this.onStreamError);
    if (this.stdin.listenerCount('data') === 0) this.stdin.pause();
    this.pieces = [];
    this.size = 0;
    this.onclose?.();
  }

  send(message: JSONRPCMessage): Promise<void> {
    return new Promise((resolve) => {
      if (this.stdout.write(serializeMessage(message))) resolve();
      else this.stdout.once('drain', resolve);
    });
  }

  private readonly onStreamError = (error: Error) => this.onerror?.(error);

  private readonly ondata = (chunk: Buffer) => {
    let start = 0;
    for (let newline = chunk.indexOf(NEWLINE); newline >= 0; newline = chunk.indexOf(NEWLINE, start)) {
      this.take(chunk.subarray(start, newline));
      this.endLine();
      start = newline + 1;
    }
    if (start < chunk.length) this.take(chunk.subarray(start));
  };

  private take(piece: Buffer): void {
    if (piece.length === 0) return;
    if (this.skipped < 0 && this.size + piece.length > this.maxMessageBytes) {
      this.head = Buffer.concat([...this.pieces, piece.subarray(0, ID_WINDOW)]).subarray(0, ID_WINDOW).toString('utf8');
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
    const idText = ID_AT_HEAD.exec(this.head)?.[1] ?? ID_AT_TAIL.exec(tail)?.[1];
    this.skipped = -1;
    this.head = '';
    this.tail = Buffer.alloc(0);
    const reason =
      `message of ${bytes.toLocaleString('en')} bytes is over this server's limit of ${this.maxMessageBytes.toLocaleString('en')} bytes; ` +
      'send less per call (for files, use kiwi ingest)';
    this.onerror?.(new Error(`skipped a ${reason}`));
    const id = idText === undefined ? null : (JSON.parse(idText) as string | number);
    // JSON-RPC answers a request whose id cannot be read with id null; the SDK's types want one.
    void this.send({ jsonrpc: '2.0', id, error: { code: ErrorCode.InvalidRequest, message: `Request too large: ${reason}` } } as JSONRPCMessage);
  }
}
