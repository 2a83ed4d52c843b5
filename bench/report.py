#!/usr/bin/env python3
"""Turns the raw outputs of bench/run into bench/results/<date>.md, and that file into the
BENCHMARKS.md summary (--summary-of). Only the standard library: it runs on a fresh Debian."""
import argparse
import json
import os
import platform
import re
import subprocess
import sys

GBENCH = [
    ("bench_wireguard_crypto", "Transport AEAD, bursts of 32 (IPsec-MB per ISA, libsodium)"),
    ("bench_replay", "Replay window"),
    ("bench_allowedips", "Allowed-IPs lookup (cryptokey routing)"),
    ("bench_acl", "ACL classify (bursts of 32) and compile"),
    ("bench_handshake", "Noise handshake per core"),
    ("bench_policy", "Policy build, verify, compile, apply and RCU swap"),
    ("bench_metering", "SSE relay, usage extraction, request parse"),
    ("bench_guardrails", "Hyperscan guardrail scan"),
    ("bench_identity", "Gateway identity lookup per request (policy scan vs PeerDirectory)"),
]
TEXT = [
    ("bench_crypto", "Bare IPsec-MB vs libsodium (median 32-op burst)"),
    ("bench_ring", "Data plane <-> control plane shared-memory ring"),
    ("bench_tcp_termination", "TCP termination behind the ring: kernel via TUN vs Debian's lwIP"),
    ("bench_dataplane", "Data plane end to end: net_pcap (infinite_rx) -> one worker core"),
    ("policy_swap", "Policy swaps while forwarding (bench_dataplane --swap-every-ms)"),
    ("wireguard_go", "Baseline: wireguard-go between two network namespaces (iperf3)"),
    ("gateway", "Gateway added latency and memory vs nginx (and Portkey where it installs)"),
    ("gateway_stream", "Gateway added latency vs nginx, streamed chat completion"),
]
SUMMARY_START = "<!-- summary -->"
SUMMARY_END = "<!-- /summary -->"


def read(raw, name):
    try:
        with open(os.path.join(raw, name + ".txt"), encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def si(value, unit):
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.1f} {unit}"


def gbench_table(text):
    try:
        data = json.loads(text[text.index("{"):])
    except ValueError:
        return None
    rows = ["| benchmark | time/iter | CPU/iter | items/s | bytes/s |", "|---|---|---|---|---|"]
    for b in data.get("benchmarks", []):
        if b.get("run_type") == "aggregate" or "error_occurred" in b:
            if "error_occurred" in b:
                rows.append(f"| {b['name']} | error: {b.get('error_message', '')} | | | |")
            continue
        unit = b.get("time_unit", "ns")
        items = b.get("items_per_second")
        nbytes = b.get("bytes_per_second")
        rows.append(
            f"| {b['name']} | {b['real_time']:.4g} {unit} | {b['cpu_time']:.4g} {unit} | "
            f"{si(items, '/s') if items else ''} | {si(nbytes, 'B/s') if nbytes else ''} |")
    return "\n".join(rows), data


def machine(build):
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                                  timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    cpu = sh("lscpu | sed -n 's/^Model name: *//p'") or platform.processor()
    flags = sh("grep -o -w -E 'avx512f|avx512vl|avx2|vaes|vpclmulqdq|sha_ni' /proc/cpuinfo"
               " | sort -u | tr '\\n' ' '")
    options = {}
    try:
        with open(os.path.join(build, "meson-info", "intro-buildoptions.json")) as f:
            options = {o["name"]: o["value"] for o in json.load(f)}
    except (OSError, ValueError):
        pass
    pkgs = sh("dpkg-query -W -f='${Package} ${Version}\\n' libdpdk-dev libipsec-mb-dev "
              "libhyperscan-dev libboost-dev nginx wireguard-go 2>/dev/null")
    mem_gib = sh("free -g | awk '/Mem:/ {print $2}'")
    compiler = sh("c++ --version | head -1")
    os_name = sh(". /etc/os-release; echo $PRETTY_NAME")
    return [
        f"- CPU: {cpu}; {os.cpu_count()} logical CPUs; features: {flags}",
        f"- Memory: {mem_gib} GiB; kernel {platform.release()}",
        f"- OS: {os_name}; compiler: {compiler}",
        f"- Build: buildtype={options.get('buildtype')} optimization={options.get('optimization')}"
        f" b_ndebug={options.get('b_ndebug')} werror={options.get('werror')}",
        "- Packages: " + "; ".join(pkgs.splitlines()),
    ]


DP_ROW = re.compile(r"^\s*(\d+)\s+(receive|forward|acl-drop)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+"
                    r"([\d.]+)\s+([\d.]+)%\s+([\d.]+)\s+([\d.]+)%")


def targets(raw, gdata):
    rows = ["| target | measured | verdict |", "|---|---|---|"]
    dp = {}
    for line in read(raw, "bench_dataplane").splitlines():
        m = DP_ROW.match(line)
        if m:
            dp[(int(m.group(1)), m.group(2))] = {
                "mpps": float(m.group(3)), "gbits": float(m.group(4)),
                "bare": float(m.group(7)), "bare_pmd": float(m.group(9))}

    def dp_target(size, mode, need, what):
        r = dp.get((size, mode))
        if not r:
            rows.append(f"| {what} | not measured | — |")
            return
        verdict = "met" if r["bare"] >= need else (
            f"missed; {r['bare_pmd']:.1f}% without net_pcap's per-packet copy"
            if r["bare_pmd"] >= need else "missed")
        rows.append(f"| {what} ≥ {need}% | {r['bare']:.1f}% ({r['mpps']:.2f} Mpps) | {verdict} |")

    dp_target(1420, "receive", 80, "receive vs bare decrypt, 1420 B")
    dp_target(64, "receive", 60, "receive vs bare decrypt, 64 B")
    dp_target(1420, "forward", 80, "hub forward vs bare decrypt+encrypt, 1420 B")

    wg = [float(x) for x in re.findall(r"([\d.]+) Gbit/s per receiving core", read(raw, "wireguard_go"))]
    ours = dp.get((1420, "receive"))
    if wg and ours and max(wg) > 0:
        ratio = ours["gbits"] / max(wg)
        rows.append(f"| ≥ 10× wireguard-go per core, 1420 B | {ours['gbits']:.2f} Gbit/s vs "
                    f"{max(wg):.2f} Gbit/s per core = {ratio:.1f}× | "
                    f"{'met' if ratio >= 10 else 'missed'} |")
    else:
        rows.append("| ≥ 10× wireguard-go per core, 1420 B | not measured | — |")

    gw = read(raw, "gateway")
    for stage, kind in (("gateway", ""), ("gateway_stream", ", streamed")):
        m = re.search(r"^\| gateway \| (\d+) \| (\d+) \| (-?\d+) \| (-?\d+) \| ([\d.]+) ",
                      read(raw, stage), re.M)
        if m:
            added, ratio = int(m.group(3)), float(m.group(5))
            rows.append(f"| gateway added latency{kind} < 100 µs median | {added} µs | "
                        f"{'met' if added < 100 else 'missed'} |")
            rows.append(f"| gateway added latency{kind} < 1.5× nginx's | {ratio:.2f}× | "
                        f"{'met' if ratio < 1.5 else 'missed'} |")
        else:
            rows.append(f"| gateway added latency{kind} | not measured | — |")
    pk = re.search(r"^\| portkey \| (\d+) \| (\d+) \| (-?\d+) \| (-?\d+) \| ([\d.]+) ", gw, re.M)
    if pk:
        rows.append(f"| (reference) Portkey added latency | {pk.group(3)} µs, {float(pk.group(5)):.2f}×"
                    " nginx's | — |")

    apply = None
    for b in (gdata.get("bench_policy") or {}).get("benchmarks", []):
        if b["name"].startswith("BM_Apply/peers:10000/rules:100000/new_peers:0"):
            scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b.get("time_unit", "ns")]
            apply = b["real_time"] * scale
    if apply is not None:
        rows.append(f"| policy of 10k peers / 100k rules built in < 1 s | {apply:.2f} s | "
                    f"{'met' if apply < 1 else 'missed'} |")
    else:
        rows.append("| policy of 10k peers / 100k rules built in < 1 s | not measured "
                    "(--quick runs 1k/10k only) | — |")
    swap_rows = re.findall(r"^\s*\d+ forward\s+(\d+)\s+(\d+)\s+(\d+)\s+\d+\s+\d+\s+[\d.]+\s+(\w+)",
                           read(raw, "policy_swap"), re.M)
    size = re.search(r"(\d+) peers / (\d+) rules each", read(raw, "policy_swap"))
    if swap_rows and size:
        exact = all(r[3] == "exact" for r in swap_rows)
        load_ms = max(int(r[1]) for r in swap_rows)
        rows.append(f"| policy swap under forwarding traffic ({size.group(1)} peers / "
                    f"{size.group(2)} rules), zero packets lost | counters "
                    f"{'exact' if exact else 'NOT exact'} in {len(swap_rows)} passes; load "
                    f"{load_ms} ms | {'met' if exact else 'missed'} (loss) |")
    else:
        rows.append("| policy swap under traffic, zero packets lost | not measured | — |")
    return "\n".join(rows)


def report(args):
    out = [f"# Airlock benchmarks, {args.date}", ""]
    out.append(f"Commit {args.commit}; `{args.command}`"
               + (" (quick: shorter runs, noisier figures)" if args.quick == "1" else "") + ".")
    out.append("")
    out += machine(args.build)
    out.append("")
    failed = args.failed.split()
    if failed:
        out += [f"**Stages that failed:** {', '.join(failed)} (their output is below).", ""]
    gdata, gtables = {}, {}
    for name, _ in GBENCH:
        parsed = gbench_table(read(args.raw, name))
        if parsed:
            gtables[name], gdata[name] = parsed
    out += [SUMMARY_START, "## Targets (ratios measured side by side in this run)", "",
            targets(args.raw, gdata), "", SUMMARY_END, ""]
    for name, title in TEXT:
        out += [f"## {title}", "", "```", read(args.raw, name).rstrip(), "```", ""]
        if name in ("gateway", "gateway_stream"):
            # The gateway script prints markdown tables already; keep them rendered too.
            tables = [l for l in read(args.raw, name).splitlines() if l.startswith("|")]
            if tables:
                out += tables + [""]
    for name, title in GBENCH:
        out += [f"## {title} (`{name}`)", ""]
        out += [gtables[name] if name in gtables else "```\n" + read(args.raw, name).rstrip()
                + "\n```", ""]
    sys.stdout.write("\n".join(out))


def summary(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    head = text.split("\n## ")[0].splitlines()
    start, end = text.find(SUMMARY_START), text.find(SUMMARY_END)
    body = text[start + len(SUMMARY_START):end].strip() if start >= 0 and end > start else ""
    rel = os.path.relpath(path, os.path.join(os.path.dirname(path), "..", ".."))
    sys.stdout.write("\n".join([
        "# Benchmarks", "",
        "The latest run of the local suite. Reproduce it on a built tree (as root) with",
        "", "```", "sudo bench/run", "```", "",
        f"which writes `bench/results/<date>.md` (every figure) and refreshes this file. Full "
        f"results of this run: [{rel}]({rel}). Two-host DUT runs with pktgen: bench/README.md.",
        "", *head[2:], "", body, "",
        "Where a target is missed, [bench/README.md](bench/README.md#missed-targets-what-limits-them) "
        "gives the profile and what limits it.", ""]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--raw")
    p.add_argument("--build")
    p.add_argument("--date")
    p.add_argument("--commit", default="unknown")
    p.add_argument("--quick", default="0")
    p.add_argument("--failed", default="")
    p.add_argument("--command", default="sudo bench/run")
    p.add_argument("--summary-of")
    args = p.parse_args()
    if args.summary_of:
        summary(args.summary_of)
    else:
        report(args)


if __name__ == "__main__":
    main()
