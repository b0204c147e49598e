#!/usr/bin/python3
"""Python asyncio peer of bench/e2e_bench: the same Sail create + poll protocol.

Per sample: POST /v1/responses (background true, Idempotency-Key, Bearer), then
GET /v1/responses/{id} until the status is terminal (the first GET after
--first-poll-ms, later ones growing by --poll-growth up to --max-poll-ms, as
the C++ pool does), then decode output_text's token_ids and logprobs and
check their lengths. --concurrency samples in flight, --samples in all.
Uses httpx (Debian's python3-httpx) with at most --connections connections.

Prints one line:  samples=N errors=E seconds=S samples_per_s=R
"""
import argparse
import asyncio
import sys
import time
import uuid

import httpx

TERMINAL = {"completed", "incomplete", "failed", "cancelled"}


def prompt_tokens(n, salt):
    # Same prompts as bench/bench_support.hpp prompt_tokens().
    return [(salt * 31 + i * 7) % 61 + 3 for i in range(n)]


def decode(doc, want):
    for item in doc.get("output") or []:
        for part in item.get("content") or []:
            if part.get("type") == "output_text":
                ids = part.get("token_ids")
                lps = part.get("logprobs")
                if not isinstance(ids, list) or not all(isinstance(t, int) for t in ids):
                    raise ValueError("bad token_ids")
                if lps is not None:
                    lps = [x if isinstance(x, (int, float)) else x["logprob"] for x in lps]
                    if len(lps) != len(ids):
                        raise ValueError("logprobs length differs")
                if want and len(ids) != want:
                    raise ValueError("unexpected length %d" % len(ids))
                return ids, lps
    raise ValueError("missing output_text")


async def one(client, args, salt, headers):
    body = {
        "model": args.model,
        "input": ".",
        "raw_prompt_tokens": prompt_tokens(args.prompt_tokens, salt),
        "max_output_tokens": args.max_tokens,
        "temperature": 1.0,
        "top_p": 1.0,
        "background": True,
        "include": ["message.output_text.logprobs"],
        "metadata": {"completion_window": args.window},
    }
    h = dict(headers)
    h["Idempotency-Key"] = str(uuid.uuid4())
    r = await client.post("/v1/responses", json=body, headers=h)
    if r.status_code not in (200, 202):
        raise RuntimeError("create answered %d" % r.status_code)
    doc = r.json()
    rid = doc["id"]
    delay = args.first_poll_ms / 1000.0
    while doc.get("status") not in TERMINAL:
        await asyncio.sleep(delay)
        delay = min(max(delay, 1e-9) * args.poll_growth, args.max_poll_ms / 1000.0) \
            if args.first_poll_ms > 0 else 0.0
        r = await client.get("/v1/responses/" + rid, headers=headers)
        if r.status_code != 200:
            raise RuntimeError("poll answered %d" % r.status_code)
        doc = r.json()
    if doc["status"] != "completed":
        raise RuntimeError("status " + doc["status"])
    return decode(doc, args.max_tokens)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--api-key", required=True)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=256)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--model", default="emulator/toy")
    p.add_argument("--window", default="priority")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--first-poll-ms", type=float, default=0.0)
    p.add_argument("--max-poll-ms", type=float, default=0.0)
    p.add_argument("--poll-growth", type=float, default=1.5)
    p.add_argument("--warmup", type=int, default=200)
    args = p.parse_args()

    limits = httpx.Limits(max_connections=args.connections,
                          max_keepalive_connections=args.connections)
    headers = {"Authorization": "Bearer " + args.api_key}
    async with httpx.AsyncClient(base_url=args.base_url, limits=limits,
                                 timeout=httpx.Timeout(60.0)) as client:
        errors = 0

        async def run(count, salt0):
            nonlocal errors
            next_i = 0

            async def lane():
                nonlocal next_i, errors
                while next_i < count:
                    i = next_i
                    next_i += 1
                    try:
                        await one(client, args, salt0 + i, headers)
                    except Exception as e:  # counted, reported
                        errors += 1
                        if errors <= 3:
                            print("error:", repr(e), file=sys.stderr)

            await asyncio.gather(*(lane() for _ in range(min(args.concurrency, count))))

        await run(args.warmup, 1_000_000)
        errors = 0
        t0 = time.perf_counter()
        await run(args.samples, 0)
        dt = time.perf_counter() - t0
    print("samples=%d errors=%d seconds=%.3f samples_per_s=%.1f"
          % (args.samples, errors, dt, args.samples / dt), flush=True)
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
