#!/usr/bin/python3
"""bench/python_binding_bench.py: a Python asyncio trainer sampling through
the sail_tinker binding (C++ runtime) vs the pure-Python asyncio + httpx
client (bench/peers/python_client.py), against the SAME emulator in the same
run: samples per client CPU-second, side by side -- and the binding with a
durable run (sail_tinker.Run, run=, every sample journaled before its create)
against the plain binding (target: >= 90 % of its samples per CPU-second).

The emulator is a `sail-tinker emulate` process (zero latency, one thread by
default); each client is a child process whose whole CPU time (user + system,
all threads, start-up and warm-up included, the same for both) is measured
with getrusage(RUSAGE_CHILDREN). Both keep --concurrency samples in flight
(a closed loop of lanes), poll with no delay, use at most --connections
connections, 32-token prompts, 16 output tokens, and check every result.

Usage: /usr/bin/python3 bench/python_binding_bench.py [--samples 20000]
         [--concurrency 256] [--connections 16] [--emu-threads 1] [--repeat 1]
         [--sides binding,durable,httpx] [--build build/dev]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MAX_TOKENS = 16
PROMPT_TOKENS = 32
WARMUP = 200  # python_client.py's default warm-up, the same on both sides


def prompt_tokens(n: int, salt: int) -> list[int]:
    # Same prompts as bench/bench_support.hpp and bench/peers/python_client.py.
    return [(salt * 31 + i * 7) % 61 + 3 for i in range(n)]


# -- the binding client (runs in a child process) ----------------------------------------

async def binding_client(args: argparse.Namespace) -> int:
    import sail_tinker

    journal_run = None
    durable = {}
    if args.journal:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(args.journal + suffix):
                os.remove(args.journal + suffix)
        journal_run = sail_tinker.Run(args.journal)
        durable = {"run": journal_run, "step": 0}
    c = sail_tinker.SailTokenCompleter(
        "emulator/toy", MAX_TOKENS, completion_window="priority",
        base_url=args.base_url, api_key=args.api_key,
        runtime_options={
            "all_windows": {"first_poll": 0, "max_poll": 0},
            "max_in_flight": args.concurrency,
            "max_connections": args.connections,
            "io_threads": 1,
            "workers": 4,
        }, **durable)
    errors = 0

    async def run(count: int, salt0: int) -> None:
        nonlocal errors
        next_i = 0

        async def lane() -> None:
            nonlocal next_i, errors
            while next_i < count:
                i = next_i
                next_i += 1
                try:
                    out = await c(prompt_tokens(PROMPT_TOKENS, salt0 + i))
                    if len(out.tokens) != MAX_TOKENS or len(out.logprobs) != MAX_TOKENS:
                        raise ValueError(f"unexpected length {len(out.tokens)}")
                except Exception as e:  # counted, reported
                    errors += 1
                    if errors <= 3:
                        print("error:", repr(e), file=sys.stderr)

        await asyncio.gather(*(lane() for _ in range(min(args.concurrency, count))))

    await run(WARMUP, 1_000_000)
    errors = 0
    t0 = time.perf_counter()
    await run(args.samples, 0)
    dt = time.perf_counter() - t0
    print("samples=%d errors=%d seconds=%.3f samples_per_s=%.1f"
          % (args.samples, errors, dt, args.samples / dt), flush=True)
    c.close()
    if journal_run is not None:
        st = journal_run.stats()["0"]
        journal_run.close()
        if st["fresh"] != args.samples + WARMUP:
            print(f"error: {st} (expected every sample fresh)", file=sys.stderr)
            return 1
    return 0 if errors == 0 else 1


# -- the driver ------------------------------------------------------------------------------

def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_client(cmd: list[str], env: dict, emu_pid: int) -> dict:
    cpu0, emu0 = children_cpu(), proc_cpu(emu_pid)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    cpu = children_cpu() - cpu0
    out = {"ok": proc.returncode == 0, "client_cpu": cpu, "emulator_cpu": proc_cpu(emu_pid) - emu0}
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    for part in last.split():
        k, _, v = part.partition("=")
        if k in ("samples", "errors"):
            out[k] = int(v)
        elif k in ("seconds", "samples_per_s"):
            out[k] = float(v)
    if not out["ok"] or "samples_per_s" not in out:
        out["ok"] = False
        print(f"client failed ({proc.returncode}): {last}\n{proc.stderr[-2000:]}", file=sys.stderr)
    return out


def emulator_stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url + "/_emulator/stats?summary=1", timeout=30) as r:
        return json.load(r)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--concurrency", type=int, default=256)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--emu-threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--build", default=os.path.join(ROOT, "build", "dev"))
    p.add_argument("--python", default="/usr/bin/python3")
    p.add_argument("--sides", default="binding,durable,httpx")
    # Internal: run one client.
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--base-url", help=argparse.SUPPRESS)
    p.add_argument("--api-key", help=argparse.SUPPRESS)
    p.add_argument("--journal", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        return asyncio.run(binding_client(args))

    binary = os.path.join(args.build, "sail-tinker")
    env = dict(os.environ, PYTHONPATH=os.path.join(args.build, "python"))
    emu = subprocess.Popen([binary, "emulate", "--threads", str(args.emu_threads),
                            "--log-level", "warn"], stdout=subprocess.PIPE, text=True)
    try:
        line = emu.stdout.readline().strip()
        if not line.startswith("listening on http://"):
            print("emulator did not start:", line, file=sys.stderr)
            return 1
        base_url = line[len("listening on "):]
        api_key = "sk_emulator_key"
        print(f"python_binding_bench: {os.cpu_count()} cores; emulator process "
              f"({args.emu_threads} thread, zero latency); {args.samples} samples per side, "
              f"{args.concurrency} in flight, {args.connections} connections, prompt "
              f"{PROMPT_TOKENS} tokens, {MAX_TOKENS} output tokens, polls at once; "
              f"client CPU includes start-up and {WARMUP} warm-up samples", flush=True)
        common = ["--base-url", base_url, "--api-key", api_key, "--samples", str(args.samples),
                  "--concurrency", str(args.concurrency), "--connections", str(args.connections)]
        binding_cmd = [args.python, os.path.abspath(__file__), "--client", *common]
        journal = os.path.join(args.build, "python_binding_bench.journal")
        durable_cmd = binding_cmd + ["--journal", journal]
        peer_cmd = [args.python, os.path.join(HERE, "peers", "python_client.py"), *common,
                    "--max-tokens", str(MAX_TOKENS), "--prompt-tokens", str(PROMPT_TOKENS),
                    "--first-poll-ms", "0", "--max-poll-ms", "0", "--warmup", str(WARMUP)]
        sides = [s for s in args.sides.split(",") if s]
        cmds = {"binding": binding_cmd, "durable": durable_cmd, "httpx": peer_cmd}
        results = {s: [] for s in sides}
        rc = 0
        for r in range(max(1, args.repeat)):
            for name in sides:
                cmd = cmds[name]
                res = run_client(cmd, env, emu.pid)
                results[name].append(res)
                if not res["ok"] or res.get("errors", 1) != 0:
                    rc = 1
                    continue
                print(f"run {r + 1} {name:8}: {res['samples_per_s']:9.1f} samples/s "
                      f"({res['seconds']:.2f} s; client CPU {res['client_cpu']:.2f} s = "
                      f"{args.samples / res['client_cpu']:.0f} samples per CPU-s; emulator CPU "
                      f"{res['emulator_cpu']:.2f} s)", flush=True)
        st = emulator_stats(base_url)
        print(f"emulator: max inference runs per key {st.get('max_runs_per_key')}")
        best = {}
        for name, xs in results.items():
            ok = [x for x in xs if x["ok"]]
            if ok:
                best[name] = max(ok, key=lambda x: args.samples / x["client_cpu"])
        labels = {"binding": "binding (sail_tinker) ", "durable": "durable (run=, journal)",
                  "httpx": "httpx (pure Python)   "}
        print(f"\n== python_binding_bench summary (best of {args.repeat}) ==")
        for name, b in best.items():
            print(f"{labels[name]} : {b['samples_per_s']:9.1f} samples/s, "
                  f"{args.samples / b['client_cpu']:8.0f} samples per client CPU-second")
        cpu = {name: args.samples / b["client_cpu"] for name, b in best.items()}
        if "binding" in best and "httpx" in best:
            print(f"binding / httpx         : "
                  f"{best['binding']['samples_per_s'] / best['httpx']['samples_per_s']:9.1f}x "
                  f"wall-clock, {cpu['binding'] / cpu['httpx']:.1f}x per client CPU-second "
                  f"(target: >= 10x)")
        if "binding" in best and "durable" in best:
            print(f"durable / binding       : {100 * cpu['durable'] / cpu['binding']:9.1f} % "
                  f"of the samples per client CPU-second (target: >= 90 %)")
        return rc
    finally:
        emu.terminate()
        emu.wait(30)


if __name__ == "__main__":
    sys.exit(main())
